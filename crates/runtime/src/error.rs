//! Errors of loading and invoking modules.

use std::time::Duration;

/// Why a module could not be loaded. Nothing is replaced when loading fails.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a valid WebAssembly module, or compiling failed.
    #[error("invalid module: {0}")]
    Compile(String),
    /// The module imports something Shanhai does not provide.
    #[error("module imports `{module}::{name}`, which Shanhai does not provide ({hint})")]
    UnknownImport {
        /// Import module name.
        module: String,
        /// Import field name.
        name: String,
        /// What is available instead.
        hint: &'static str,
    },
    /// An export has the wrong type, or the ABI version is unsupported.
    #[error("module does not follow the Shanhai ABI: {0}")]
    Abi(String),
    /// Instantiating or initialising the first instance failed.
    #[error("module failed to initialise: {0}")]
    Init(String),
    /// Reading the module or the compile cache failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Why an invocation failed. Each variant has a stable [`kind`](Self::kind)
/// used in error responses, logs and metrics.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The guest trapped (a bug in the guest); the instance was discarded.
    #[error("{0}")]
    Trap(String),
    /// The guest overflowed its call stack.
    #[error("guest overflowed its call stack")]
    StackOverflow,
    /// The event ran past the module's deadline.
    #[error("event exceeded the module's {0:?} deadline")]
    Timeout(Duration),
    /// The guest tried to grow its memory past the module's cap.
    #[error("guest exceeded its memory cap of {0} bytes")]
    MemoryLimit(usize),
    /// The guest used up its fuel.
    #[error("guest ran out of fuel")]
    FuelExhausted,
    /// No instance became free in time and the wait queue is full.
    #[error("module is at capacity ({0} instances busy, queue full)")]
    QueueFull(usize),
    /// No instance became free within the queue timeout.
    #[error("no instance became free within {0:?}")]
    QueueTimeout(Duration),
    /// A new instance could not be created.
    #[error("could not create an instance: {0}")]
    Unavailable(String),
    /// The guest reported an error (event status `error`).
    #[error("{0}")]
    Guest(String),
    /// A command module exited with a non-zero code.
    #[error("guest exited with code {code}{stderr}")]
    Exit {
        /// The exit code.
        code: i32,
        /// The tail of its stderr, prefixed with `: ` when not empty.
        stderr: String,
    },
    /// The guest does not have the named function (event status `not_found`).
    #[error("{0}")]
    NotFound(String),
    /// The guest has no handler for this kind of event.
    #[error("module has no {0} handler")]
    NoHandler(&'static str),
    /// The guest produced output that breaks the ABI.
    #[error("guest broke the ABI: {0}")]
    BadOutput(String),
    /// The guest's output exceeded the module's response cap.
    #[error("guest output exceeded the {0}-byte response cap")]
    OutputTooLarge(usize),
    /// The arguments do not fit the export's signature.
    #[error("{0}")]
    BadArguments(String),
}

impl InvokeError {
    /// A stable snake-case name for this kind of failure.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Trap(_) => "trap",
            Self::StackOverflow => "stack_overflow",
            Self::Timeout(_) => "timeout",
            Self::MemoryLimit(_) => "memory_limit",
            Self::FuelExhausted => "fuel_exhausted",
            Self::QueueFull(_) => "queue_full",
            Self::QueueTimeout(_) => "queue_timeout",
            Self::Unavailable(_) => "unavailable",
            Self::Guest(_) | Self::Exit { .. } => "guest_error",
            Self::NotFound(_) => "unknown_function",
            Self::NoHandler(_) => "no_handler",
            Self::BadOutput(_) => "bad_output",
            Self::OutputTooLarge(_) => "response_too_large",
            Self::BadArguments(_) => "bad_arguments",
        }
    }

    /// Whether the failure discarded the instance (it trapped or hit a limit).
    pub fn discards_instance(&self) -> bool {
        // An exit is final for a reactor too: its runtime (Go's) is gone.
        matches!(
            self,
            Self::Trap(_)
                | Self::Exit { .. }
                | Self::StackOverflow
                | Self::Timeout(_)
                | Self::MemoryLimit(_)
                | Self::FuelExhausted
                | Self::BadOutput(_)
                | Self::OutputTooLarge(_)
        )
    }
}

/// Why code compiled elsewhere was not imported
/// ([`crate::Runtime::import_compiled`]).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// There is no compile cache to put it in.
    #[error(
        "the compile cache is off (server.cache_dir = \"\" or --no-cache), so compiled code has nowhere to go"
    )]
    NoCache,
    /// wasmtime refused it for this engine: another architecture, CPU
    /// features, memory layout or wasmtime version, or not its output.
    #[error("it does not fit this gateway's engine: {0}")]
    Incompatible(String),
    /// Writing the cache entry failed.
    #[error("{0}")]
    Io(String),
}
