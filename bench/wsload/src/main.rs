//! `bench-wsload`: the WebSocket load generator behind `scripts/bench-ws.sh`,
//! whose figures are in `docs/benchmarks.md`.
//!
//! A minimal client of its own (handshake and masked frames over tokio's
//! `TcpStream`, see [`client`]) so that 20,000 connections fit in one
//! process on a small machine. Each subcommand prints one JSON line:
//!
//! ```text
//! bench-wsload idle   --url ws://127.0.0.1:8080/ws-echo/ws --connections 19000 --pid 1234
//! bench-wsload echo   --url ws://127.0.0.1:8080/ws-echo/ws --connections 1000 --rate 10000 --duration 10 --size 32
//! bench-wsload fanout --url ws://127.0.0.1:8080/ws-fanout/ws --connections 10000 --rounds 10
//! ```
//!
//! It runs on one thread (a current-thread runtime), plus the pacing thread
//! of `echo`, to leave the machine's other core to the server.

mod client;
mod echo;
mod fanout;
mod idle;

use std::path::Path;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bench-wsload",
    about = "WebSocket load generator for scripts/bench-ws.sh"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Hold many idle connections and report the server's RSS per connection.
    Idle(idle::Args),
    /// Paced (open-loop) round trips; latency from each message's scheduled send time.
    Echo(echo::Args),
    /// One message broadcast to every connection; time until the last receives it.
    Fanout(fanout::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        match cli.command {
            Command::Idle(args) => idle::run(args).await,
            Command::Echo(args) => echo::run(args).await,
            Command::Fanout(args) => fanout::run(args).await,
        }
    })?;
    println!("{report}");
    // Connections still open are reset by the exit (zero linger), which is
    // faster than dropping tens of thousands of tasks one by one.
    std::process::exit(0);
}

/// Memory of a process from `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy)]
struct Rss {
    total: u64,
    anon: u64,
    file: u64,
}

impl Rss {
    fn of(pid: u32) -> anyhow::Result<Self> {
        let path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(Path::new(&path))
            .map_err(|err| anyhow::anyhow!("reading {path}: {err}"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kb| kb.parse().ok())
                .unwrap_or(0)
        };
        Ok(Self {
            total: field("VmRSS:"),
            anon: field("RssAnon:"),
            file: field("RssFile:"),
        })
    }
}

/// A latency histogram in nanoseconds, up to a minute, 3 significant digits.
fn histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

/// The usual percentiles of `h`, in microseconds.
fn percentiles_us(h: &hdrhistogram::Histogram<u64>) -> serde_json::Value {
    let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
    if h.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::json!({
        "p50": us(h.value_at_quantile(0.50)),
        "p90": us(h.value_at_quantile(0.90)),
        "p99": us(h.value_at_quantile(0.99)),
        "p999": us(h.value_at_quantile(0.999)),
        "max": us(h.max()),
        "mean": (h.mean() / 100.0).round() / 10.0,
        "count": h.len(),
    })
}
