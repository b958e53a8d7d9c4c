//! Shanhai's module runtime.
//!
//! One [`Runtime`] per process owns the wasmtime engine (Cranelift, or the
//! Pulley interpreter where Cranelift has no backend; epoch interruption,
//! the pooling allocator), the linker with every host function
//! and the on-disk compile cache. [`Runtime::load`] turns module bytes into
//! a [`LoadedModule`]: compiled (or loaded from the cache), validated, its
//! kind detected and one instance initialised. A loaded module keeps a pool
//! of initialised instances and runs events on them within its
//! [`ModuleLimits`]; an instance that traps or hits a limit is discarded.
//!
//! The runtime knows nothing about triggers: the gateway turns requests into
//! ABI envelopes ([`shanhai_abi::wire`]) and calls
//! [`LoadedModule::invoke_event`], [`LoadedModule::call_numeric`] or
//! [`LoadedModule::run_command`].

mod cache;
mod compile_worker;
mod engine;
mod error;
mod host;
mod limits;
pub mod memory_plan;
mod module;
mod pool;
mod residency;
pub mod secret_file;
mod stdio;
mod target;
mod ticker;

pub use cache::{CacheError, CompileCache};
pub use compile_worker::{CompileWorker, run_compile_worker};
pub use engine::{AfterLoad, CodegenSetting, Compiler, Runtime, RuntimeConfig, module_version};
pub use error::{ImportError, InvokeError, LoadError};
pub use host::http::OutboundHttpSettings;
pub use host::mqtt::{MqttHost, MqttPublication};
pub use host::sql::SqlServices;
pub use host::ws::{WebSocketHost, WsMessage};
pub use limits::{ModuleLimits, ModuleSettings};
pub use memory_plan::{AddressSpace, MemoryPlan, MemoryStrategy};
pub use module::{CommandOutput, LoadedModule, ModuleKind, NumType, NumValue, NumericSignature};
pub use pool::PoolStats;
pub use shanhai_abi::grant::{Grants, http_grant_error, invalid_topic, topic_matches};
pub use target::{CodeTarget, CrossCompiler, code_isa};
