//! Write [Shanhai](https://github.com/shanhai-edge/shanhai) edge functions
//! in Rust: register an HTTP handler, named byte functions, WebSocket
//! handlers, a timer handler, TCP handlers and an MQTT handler, build a
//! `wasm32-wasip1` cdylib, and the gateway runs it.
//!
//! A complete module (`src/lib.rs` of a crate with
//! `crate-type = ["cdylib"]`):
//!
//! ```
//! use shanhai_sdk::http::{Request, Response};
//! use shanhai_sdk::{Handlers, HostError};
//!
//! /// Everything this module handles; the SDK builds it once per instance.
//! fn handlers() -> Handlers {
//!     Handlers::new()
//!         .http(hello)
//!         .function("upper", |input: &[u8]| input.to_ascii_uppercase())
//! }
//!
//! // Defines the module's exports around `handlers` (once per module).
//! shanhai_sdk::export!(handlers);
//!
//! fn hello(request: Request<Vec<u8>>) -> Result<Response<String>, HostError> {
//!     let greeting = shanhai_sdk::config("greeting")?.unwrap_or_else(|| "Hello".to_owned());
//!     shanhai_sdk::info!("{} {}", request.method(), request.uri());
//!     Ok(Response::new(format!("{greeting} from Rust\n")))
//! }
//! #
//! # let mut host = shanhai_sdk::mock::MockHost::new(handlers());
//! # let response = host.http(Request::get("/").body("").unwrap()).unwrap();
//! # assert_eq!(response.body(), b"Hello from Rust\n");
//! # assert_eq!(host.call("upper", b"abc").unwrap(), b"ABC");
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip1`; the
//! `.wasm` lands in `target/wasm32-wasip1/release/`.
//!
//! # How it maps onto the ABI
//!
//! `docs/abi.md` is the specification; [`shanhai_abi`] holds its names,
//! codes and envelopes, which this crate reuses.
//!
//! - The SDK defines the guest exports `shanhai_abi_version`,
//!   `shanhai_alloc` and `shanhai_event` (on wasm32 only). [`export!`]
//!   connects them to your [`Handlers`]; the table is built on the first
//!   call into the instance (the host's ABI version check), before any
//!   event.
//! - An HTTP event becomes an [`http::Request`] with the full path the
//!   gateway received (mount point included) and the [`RequestId`] and
//!   [`RemoteAddr`] in its extensions; your [`http::Response`] is encoded
//!   and written with one `output_write`. Handlers may return a `Result`
//!   ([`IntoHttpResponse`]); an `Err` answers
//!   [`EventStatus::Error`] with the error's text, which the gateway turns
//!   into a 500.
//! - A byte-function call runs the function registered under its name
//!   ([`IntoCallOutput`]); an unknown name answers
//!   [`EventStatus::NotFound`], an `Err` [`EventStatus::Error`].
//! - A WebSocket event goes to the [`WebSocketHandler`] set with
//!   [`Handlers::websocket`]: an open (which the handler may refuse with
//!   an `Err`), a message ([`WsMessage`]) or the end of a connection. The
//!   handler sees the connection as a [`WsConn`]; a reply it returns
//!   ([`IntoWsReply`]) is sent to the connection. During any event the
//!   module may send to ([`WsConn::send_text`], [`ws_send`]), close and
//!   group ([`WsConn::join`], [`broadcast`]) any of its connections.
//! - A timer run goes to the handler set with [`Handlers::timer`], which
//!   gets the [`Timer`] (its name, when it was due, its run number, the
//!   runs skipped, the payload); an `Err` ([`IntoTimerResult`]) fails the
//!   run, which the gateway logs and counts.
//! - A TCP stream event goes to the [`TcpHandler`] set with
//!   [`Handlers::tcp`]: a client connected (which the handler may refuse
//!   with an `Err`), a frame cut from the stream by the listener's framing,
//!   or the end of a connection. The handler sees the connection as a
//!   [`TcpConn`]; a non-empty reply ([`IntoTcpReply`]) is written back as
//!   one frame, and an `Err` makes the gateway close the connection.
//! - An MQTT message that a trigger (`[mqtt.triggers.NAME]`) delivers
//!   goes to the handler set with [`Handlers::mqtt`], which gets the
//!   [`mqtt::Message`] and returns the messages to publish
//!   ([`mqtt::Publish`], [`mqtt::IntoMqttOutput`]); an `Err` fails the
//!   event (the gateway retries a QoS 1 message). During any event the
//!   module may publish with [`mqtt::publish`], within its grant.
//! - An event kind the module has no handler for answers
//!   [`EventStatus::Unsupported`].
//! - The host's stores and devices are capabilities, usable during any
//!   event once granted in the module's `[modules.NAME.grants]` (see
//!   [State and devices](#state-and-devices)): KV stores ([`kv::Store`]),
//!   SQLite databases ([`sql::Database`]), outbound HTTP ([`fetch()`]) and
//!   GPIO pins ([`gpio`]).
//! - Host functions return [`HostError`] instead of trapping: see
//!   [`config`], the [`log`] module and the WebSocket functions. Those
//!   that may explain a failure return an [`Error`], which carries the
//!   host's message (for example, which grant is missing).
//!
//! Rust's `wasm32-wasip1` cdylibs export no `_initialize` (the host treats
//! it as optional); besides the exports above, a module built with this
//! SDK exports `memory` and the SDK's internal hook
//! `__shanhai_sdk_register_v1` (`() -> ()`, harmless to call). It imports
//! only from `shanhai` and `wasi_snapshot_preview1`. If the host refuses a
//! module for importing `env.__shanhai_sdk_register_v1`, the module forgot
//! [`export!`].
//!
//! # State and devices
//!
//! Each capability needs a grant; without one a call fails with
//! [`HostError::Denied`] (never a trap), and the [`Error`]'s message says
//! which grant is missing:
//!
//! ```toml
//! [modules.shop.grants]
//! kv = true                          # kv::Store::own()
//! kv_stores = ["sessions"]           # kv::Store::shared("sessions")
//! sqlite = true                      # sql::Database::own()
//! sqlite_databases = ["catalog"]     # sql::Database::shared("catalog")
//! http = ["api.example.com", "127.0.0.1:8081", "*.internal.example"]
//! gpio_in = [17]                     # gpio::read(17)
//! gpio_out = [18]                    # gpio::write(18, ..) and gpio::read(18)
//! ```
//!
//! - **KV** ([`kv`]): [`get`](kv::Store::get) (`None` when absent),
//!   [`set`](kv::Store::set) with an optional TTL,
//!   [`delete`](kv::Store::delete), [`list`](kv::Store::list) and
//!   [`keys`](kv::Store::keys) by prefix,
//!   [`compare_and_swap`](kv::Store::compare_and_swap) and
//!   [`increment`](kv::Store::increment), both atomic on the host. The
//!   module's own store is its own namespace; a shared store is shared by
//!   every module granted it.
//! - **SQL** ([`sql`]): [`execute`](sql::Database::execute) and
//!   [`query`](sql::Database::query) run one statement with
//!   [`sql::Value`] parameters bound to `?1`, `?2`, ...; bad SQL is
//!   [`HostError::InvalidArgument`] with SQLite's message.
//! - **Outbound HTTP** ([`fetch()`]): an [`http::Request`] with an
//!   absolute URI to a granted host (`host`, `host:port` or `*.domain`),
//!   answered with an [`http::Response`].
//! - **GPIO** ([`gpio`]): [`read`](gpio::read) the pins of `gpio_in` (and
//!   `gpio_out`), [`write`](gpio::write) those of `gpio_out`.
//!
//! ```
//! use std::time::Duration;
//! use shanhai_sdk::http::{Request, Response};
//! use shanhai_sdk::{Error, kv::Store, sql::Database};
//!
//! fn visit(_request: Request<Vec<u8>>) -> Result<Response<String>, Error> {
//!     let n = Store::own().increment("visits", 1)?;
//!     Store::shared("sessions").set("last", n.to_string(), Some(Duration::from_secs(60)))?;
//!     Database::own().execute("INSERT INTO visits (n) VALUES (?1)", &[n.into()])?;
//!     Ok(Response::new(format!("visit {n}\n")))
//! }
//! #
//! # let mut host = shanhai_sdk::mock::MockHost::new(shanhai_sdk::Handlers::new().http(visit))
//! #     .with_kv_grant("")
//! #     .with_kv_grant("sessions")
//! #     .with_sqlite_grant("")
//! #     .with_sql_handler(|_, _, _| Ok(shanhai_sdk::mock::SqlReply::changed(1, 1)));
//! # let response = host.http(Request::get("/").body("").unwrap()).unwrap();
//! # assert_eq!(response.body(), b"visit 1\n");
//! # assert_eq!(host.kv_value("sessions", "last"), Some(&b"1"[..]));
//! ```
//!
//! # Panics and state
//!
//! On wasm32 a panic aborts: the SDK logs the panic message at error level,
//! then the instance traps, the host discards it and answers 500. Prefer
//! returning `Err`.
//!
//! An instance is single-threaded and handles one event at a time; the host
//! reuses it for many events, so statics persist between them, but it runs
//! several instances side by side and may discard any of them at any time.
//! Keep shared or durable state in the host's stores, not in statics.
//!
//! # Testing
//!
//! Natively (`cargo test`), the host functions are served by
//! [`mock::MockHost`], which drives your [`Handlers`] through the same
//! envelopes and dispatch code as the real exports.

mod config;
mod dispatch;
mod error;
mod fetch;
mod handlers;
mod host;
#[cfg(any(target_arch = "wasm32", test))]
mod input;
#[cfg(any(target_arch = "wasm32", test))]
mod registry;
mod tcp;
mod timer;
mod ws;

#[cfg(target_arch = "wasm32")]
mod ffi;

pub mod gpio;
pub mod kv;
pub mod log;
#[cfg(not(target_arch = "wasm32"))]
pub mod mock;
pub mod mqtt;
pub mod sql;

pub use http;
pub use shanhai_abi::{EventKind, EventStatus, HostStatus, LogLevel};

pub use crate::config::config;
pub use crate::error::{Error, HostError};
pub use crate::fetch::fetch;
pub use crate::handlers::{
    Handlers, IntoCallOutput, IntoHttpResponse, IntoTcpReply, IntoTimerResult, IntoWsReply,
    RemoteAddr, RequestId, TcpHandler, WebSocketHandler,
};
pub use crate::tcp::TcpConn;
pub use crate::timer::Timer;
pub use crate::ws::{WsConn, WsMessage, broadcast, ws_send};

/// Makes this module's [`Handlers`] the ones the host's events reach.
///
/// Give it the path of a `fn() -> Handlers`; invoke it exactly once per
/// module, at any item position (the crate root is customary). On wasm32
/// it defines the symbol through which the SDK's exports find the table
/// (a second invocation is a duplicate-symbol link error); elsewhere it
/// only checks the function's type, and tests pass the table to
/// [`mock::MockHost`] themselves.
///
/// ```
/// fn handlers() -> shanhai_sdk::Handlers {
///     shanhai_sdk::Handlers::new().function("ping", |_: &[u8]| b"pong".to_vec())
/// }
/// shanhai_sdk::export!(handlers);
/// ```
#[macro_export]
macro_rules! export {
    ($handlers:path $(,)?) => {
        const _: fn() -> $crate::Handlers = $handlers;

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[unsafe(no_mangle)]
            extern "Rust" fn __shanhai_sdk_register_v1() {
                $crate::__private::install($handlers);
            }
        };
    };
}

/// Support for [`export!`]; not public API.
#[doc(hidden)]
pub mod __private {
    /// Installs the table `build` returns, once per instance.
    #[cfg(target_arch = "wasm32")]
    pub fn install(build: fn() -> crate::Handlers) {
        crate::registry::install(build);
    }
}
