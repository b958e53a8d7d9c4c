//! `idle`: opens many connections, holds them idle, and reports how much
//! the server's resident memory grew per connection.
//!
//! A warm-up batch is opened first and kept open, at the same concurrency,
//! so that one-time costs (a module's instance pool growing to serve the
//! open events, the runtime's first allocations) land before the baseline
//! is read, not in the per-connection figure.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::Rss;
use crate::client::{self, Drive, Target};

/// `bench-wsload idle`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// `ws://HOST:PORT/PATH` of an echo endpoint.
    #[arg(long)]
    url: String,
    /// Connections to open after the warm-up and hold.
    #[arg(long)]
    connections: usize,
    /// The server's process id, whose `/proc/PID/status` is read before and
    /// after.
    #[arg(long)]
    pid: Option<u32>,
    /// Connections opened (and kept) before the baseline is read.
    #[arg(long, default_value_t = 256)]
    warmup: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds to wait, idle, after the last connection opened.
    #[arg(long, default_value_t = 5.0)]
    hold: f64,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<serde_json::Value> {
    let target = Target::resolve(&args.url).await?;
    let live = Arc::new(AtomicUsize::new(0));
    let rss = |pid: Option<u32>| pid.map(Rss::of).transpose();

    let warm = client::open_all(&target, args.warmup, args.concurrency).await;
    let warm_opened = warm.streams.len();
    hold_all(warm.streams, 0, &live);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss(args.pid)?;

    let opened = client::open_all(&target, args.connections, args.concurrency).await;
    let n = opened.streams.len();
    hold_all(opened.streams, warm_opened as u64, &live);
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let after = rss(args.pid)?;
    let still_open = live.load(Ordering::Relaxed);

    let per_connection = |pick: fn(&Rss) -> u64| match (before, after) {
        (Some(b), Some(a)) if n > 0 => {
            let grown = pick(&a) as f64 - pick(&b) as f64;
            serde_json::json!((grown * 1024.0 / n as f64).round())
        }
        _ => serde_json::Value::Null,
    };
    let kb = |rss: Option<Rss>, pick: fn(&Rss) -> u64| rss.map(|r| pick(&r));
    Ok(serde_json::json!({
        "mode": "idle",
        "url": args.url,
        "warmup": warm_opened,
        "connections": args.connections,
        "opened": n,
        "failed": opened.failed + (args.warmup - warm_opened),
        "first_error": opened.first_error.or(warm.first_error),
        "still_open": still_open,
        "open_seconds": (opened.seconds * 100.0).round() / 100.0,
        "hold_seconds": args.hold,
        "rss_before_kb": kb(before, |r| r.total),
        "rss_after_kb": kb(after, |r| r.total),
        "anon_before_kb": kb(before, |r| r.anon),
        "anon_after_kb": kb(after, |r| r.anon),
        "file_before_kb": kb(before, |r| r.file),
        "file_after_kb": kb(after, |r| r.file),
        "bytes_per_connection": per_connection(|r| r.total),
        "anon_bytes_per_connection": per_connection(|r| r.anon),
    }))
}

/// Keeps each connection open in its own task, answering pings; `live`
/// counts those still open.
fn hold_all(
    streams: Vec<(tokio::net::TcpStream, bytes::BytesMut)>,
    first_seed: u64,
    live: &Arc<AtomicUsize>,
) {
    for (i, (stream, buf)) in streams.into_iter().enumerate() {
        let live = live.clone();
        live.fetch_add(1, Ordering::Relaxed);
        let how = Drive {
            seed: first_seed + i as u64,
            answer_pings: true,
            outgoing: None,
        };
        tokio::spawn(async move {
            let _ = client::drive(stream, buf, how, |_| {}).await;
            live.fetch_sub(1, Ordering::Relaxed);
        });
    }
}
