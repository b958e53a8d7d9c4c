//! `shanhai serve`: run the gateway.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use shanhai_gateway::{Config, Gateway};
use shanhai_runtime::CompileWorker;

/// Serve every module of the modules folder over HTTP.
///
/// Without a config file the embedded defaults apply: listen on
/// 127.0.0.1:8080, modules from ./modules, compiled code cached in
/// ./.shanhai/cache. Each NAME.wasm is served at /NAME and /NAME/*, and its
/// functions at POST /api/exec/NAME/FN.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// TOML config file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Modules folder (overrides the config).
    #[arg(long)]
    modules: Option<PathBuf>,
    /// Listen address (overrides the config); port 0 picks a free port.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Compile-cache folder (overrides the config).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Compile without reading or writing the compile cache.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
}

/// The config `serve` runs with: the file's (or the embedded defaults),
/// with the command line's overrides. Read before the async runtime
/// starts, whose thread count it sets.
pub(crate) fn config(args: Args) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(modules) = args.modules {
        config.server.modules_dir = modules;
    }
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(cache_dir) = args.cache_dir {
        config.server.cache_dir = cache_dir;
    }
    if args.no_cache {
        config.server.cache_dir = PathBuf::new();
    }
    config.runtime.compile_worker = this_executable_as_compile_worker();
    Ok(config)
}

pub(crate) async fn run(config: Config) -> anyhow::Result<()> {
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    tracing::info!("async runtime: {workers} worker threads (runtime.worker_threads)");
    let gateway = Gateway::start(config)
        .await
        .context("starting the gateway")?;
    // Scripts and tests read the addresses from these lines; the main one
    // comes last, so a reader can stop at it.
    if let Some(admin) = gateway.admin_addr() {
        println!("admin listening on http://{admin}");
    }
    for (name, addr) in gateway.tcp_addrs() {
        println!("tcp {name} listening on {addr}");
    }
    if let Some((v4, v5)) = gateway.mqtt_addrs() {
        println!("mqtt listening on {v4}");
        println!("mqtt v5 listening on {v5}");
    }
    println!("listening on http://{}", gateway.addr());
    let mut signals = Signals::new()?;
    let signal = signals.next().await;
    tracing::info!(
        signal,
        "shutting down: no new connections; draining requests in flight"
    );
    // A second signal while draining means "now".
    tokio::select! {
        _ = gateway.stop() => {}
        signal = signals.next() => {
            tracing::warn!(signal, "second signal: exiting without waiting");
            std::process::exit(1);
        }
    }
    Ok(())
}

/// SIGINT and SIGTERM as one stream.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// The running executable's compile-worker mode, started through a file
/// descriptor held open for the life of the process: after a package
/// upgrade has replaced the file, the worker is still this very binary, so
/// its code fits this gateway's engine. If it cannot be started at all
/// (qemu-user without binfmt can't start another guest binary), the
/// runtime says so once and compiles in its own process.
fn this_executable_as_compile_worker() -> Option<CompileWorker> {
    use std::os::fd::IntoRawFd;
    let executable = std::fs::File::open(std::env::current_exe().ok()?).ok()?;
    // Never closed: the worker's program for as long as the gateway runs.
    let fd = executable.into_raw_fd();
    Some(CompileWorker {
        program: PathBuf::from(format!("/proc/self/fd/{fd}")),
        args: vec!["compile-worker".into()],
    })
}
