//! `shanhai`: run WebAssembly edge functions on HTTP requests.
//!
//! Each subcommand lives in its own file under `commands/`; this file only
//! parses the command line and sets up logging.

mod admin_client;
mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The allocator of a build with `--features mimalloc`; the default build
/// keeps the C library's (docs/benchmarks.md, "The allocator").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Shanhai: an edge-function gateway running sandboxed WebAssembly modules.
#[derive(Parser)]
#[command(name = "shanhai", version, propagate_version = true)]
struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "SHANHAI_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand)]
enum Command {
    Serve(commands::serve::Args),
    Run(commands::run::Args),
    New(commands::new::Args),
    Compile(commands::compile::Args),
    Deploy(commands::deploy::Args),
    Canary(commands::canary::Args),
    Status(commands::status::Args),
    Keygen(commands::keygen::Args),
    Sign(commands::sign::Args),
    /// Print version information.
    Version,
    /// Compile one module for a gateway (`runtime.compile_in_child`): the
    /// gateway starts this, with settings that match its engine.
    #[command(hide = true)]
    CompileWorker {
        /// KEY=VALUE settings from the gateway.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        settings: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, matches!(cli.command, Command::Serve(_)));
    let result = match cli.command {
        Command::Serve(args) => commands::serve::config(args).and_then(|config| {
            let runtime = runtime_with(config.runtime.worker_threads);
            let result = runtime.block_on(commands::serve::run(config));
            // Dropping a runtime waits for every blocking task, and a host
            // call abandoned at its deadline (a GPIO read that never
            // returns) may still hold one: requests are drained by now, so
            // give such tasks a moment and then exit regardless.
            runtime.shutdown_timeout(BLOCKING_TASKS_GRACE);
            result
        }),
        Command::Run(args) => runtime().block_on(commands::run::run(args)),
        Command::New(args) => commands::new::run(args),
        Command::Compile(args) => runtime().block_on(commands::compile::run(args)),
        Command::Deploy(args) => runtime().block_on(commands::deploy::run(args)),
        Command::Canary(args) => runtime().block_on(commands::canary::run(args)),
        Command::Status(args) => runtime().block_on(commands::status::run(args)),
        Command::Keygen(args) => commands::keygen::run(args),
        Command::Sign(args) => commands::sign::run(args),
        Command::CompileWorker { settings } => shanhai_runtime::run_compile_worker(&settings),
        Command::Version => {
            // A build with another allocator says so: benchmarks check it.
            let allocator = if cfg!(feature = "mimalloc") {
                ", mimalloc"
            } else {
                ""
            };
            println!(
                "shanhai {} (wasmtime 48, guest ABI v{}{allocator})",
                env!("CARGO_PKG_VERSION"),
                shanhai_abi::ABI_VERSION
            );
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// How long `serve` waits at exit for blocking tasks still running.
const BLOCKING_TASKS_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

fn runtime() -> tokio::runtime::Runtime {
    runtime_with(0)
}

/// The async runtime, with `worker_threads` threads (0: one per core).
fn runtime_with(worker_threads: usize) -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if worker_threads > 0 {
        builder.worker_threads(worker_threads);
    }
    builder
        .enable_all()
        .build()
        .expect("building the async runtime")
}

fn init_logging(format: LogFormat, serving: bool) {
    use tracing_subscriber::EnvFilter;
    // `serve` reports module loads at info; one-shot commands stay quiet
    // unless asked, so their stdout/stderr is the module's.
    let default = if serving {
        "info"
    } else {
        "warn,shanhai::guest=info"
    };
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_env("SHANHAI_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // The dashboard's live tail sees what passes the filter, as the log does.
    let tail = serving.then_some(shanhai_gateway::LogTailLayer);
    let registry = tracing_subscriber::registry().with(filter).with(tail);
    match format {
        LogFormat::Text => registry.with(fmt).init(),
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).init(),
    }
}
