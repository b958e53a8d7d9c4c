//! Shanhai's gateway: the configuration, the module registry and the HTTP
//! trigger around the [`shanhai_runtime`].
//!
//! [`Gateway::start`] builds the runtime from a [`Config`], loads every
//! module of the modules folder and the config, and serves them over HTTP.
//! Only this crate and the CLI know the config format.

mod admin;
pub mod canary;
pub mod compiled;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod listener;
pub mod metered;
mod mqtt;
mod names;
mod registry;
mod server;
pub mod signing;
mod state;
mod tcp;
mod timer;
mod watch;
mod ws;

pub use admin::logtail::LogTailLayer;
pub use config::{Config, ConfigError};
pub use http::{HttpTrigger, RequestBody};
pub use registry::{CanaryError, CanaryStart, ModuleRegistry, ReloadOutcome, RouteMatch, Selected};
pub use server::Gateway;
pub use tcp::Framing;
pub use watch::ModuleWatcher;

/// The size of the future `f` returns, without calling it: tests that hold
/// a hot future to the size its docs promise.
#[cfg(test)]
fn future_size<A, B, C, F: FnOnce(A, B, C) -> R, R>(_: &F) -> usize {
    std::mem::size_of::<R>()
}
