//! `fanout`: one message broadcast to a room of every connection; how long
//! until the last one has it.
//!
//! The endpoint must put every connection in one room when it opens and,
//! for a text message `fanout:<payload>`, broadcast `<payload>` to the room,
//! sender included (`bench/ws-fanout`, and `bench-reference-ws --fanout`).
//! One connection sends `fanout:<t>`, `t` being the send time in
//! nanoseconds since the start, which also tells the rounds apart. The
//! time is taken when the last connection's task has decoded the message,
//! so it includes the client's own work of receiving N messages on one
//! thread; the reference, measured the same way, shows that part.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::sync::{Notify, mpsc};

use crate::client::{self, Drive, Target};

/// `bench-wsload fanout`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// `ws://HOST:PORT/PATH` of a fan-out endpoint.
    #[arg(long)]
    url: String,
    /// Connections in the room.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Broadcasts measured (after one that is not).
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Pause between broadcasts, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pause_ms: u64,
    /// How long to wait for a broadcast to reach everyone, in seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The server's process id: its CPU time per broadcast is reported
    /// beside the client's own.
    #[arg(long)]
    pid: Option<u32>,
}

/// The broadcast in flight.
struct Round {
    started: Instant,
    /// The payload expected, `0` between rounds.
    token: AtomicU64,
    remaining: AtomicUsize,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
    done: Notify,
    /// Messages that were not the current round's.
    stray: AtomicU64,
}

impl Round {
    fn on_message(&self, payload: &[u8]) {
        let now = self.started.elapsed().as_nanos() as u64;
        let token = std::str::from_utf8(payload)
            .ok()
            .and_then(|t| t.parse::<u64>().ok());
        let current = self.token.load(Ordering::Acquire);
        if current == 0 || token != Some(current) {
            self.stray.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let left = self
            .remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if left.is_err() {
            self.stray.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.first_ns.fetch_min(now, Ordering::AcqRel);
        if left == Ok(1) {
            self.last_ns.store(now, Ordering::Release);
            self.done.notify_one();
        }
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<serde_json::Value> {
    let target = Target::resolve(&args.url).await?;
    let opened = client::open_all(&target, args.connections, args.concurrency).await;
    let n = opened.streams.len();
    if n == 0 {
        bail!(
            "no connection opened: {}",
            opened.first_error.unwrap_or_default()
        );
    }
    let round = Arc::new(Round {
        started: Instant::now(),
        token: AtomicU64::new(0),
        remaining: AtomicUsize::new(0),
        first_ns: AtomicU64::new(u64::MAX),
        last_ns: AtomicU64::new(0),
        done: Notify::new(),
        stray: AtomicU64::new(0),
    });
    let dropped = Arc::new(AtomicUsize::new(0));
    let (sender, outgoing) = mpsc::unbounded_channel::<Vec<u8>>();
    let mut outgoing = Some(outgoing);
    for (i, (stream, buf)) in opened.streams.into_iter().enumerate() {
        let how = Drive {
            seed: i as u64,
            answer_pings: true,
            outgoing: if i == 0 { outgoing.take() } else { None },
        };
        let round = round.clone();
        let dropped = dropped.clone();
        tokio::spawn(async move {
            let _ = client::drive(stream, buf, how, |m| round.on_message(&m.payload)).await;
            dropped.fetch_add(1, Ordering::Relaxed);
        });
    }
    // Servers that register a connection after its 101 (the reference
    // does) need a moment before the room is complete.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let timeout = Duration::from_secs_f64(args.timeout);
    let mut last_ms = Vec::new();
    let mut first_ms = Vec::new();
    let mut missing = Vec::new();
    let server_pid = args.pid.map(|pid| pid.to_string());
    let mut cpu_start = (None, None);
    for r in 0..=args.rounds {
        if r == 1 {
            cpu_start = (cpu_ticks("self"), server_pid.as_deref().and_then(cpu_ticks));
        }
        round.remaining.store(n, Ordering::Release);
        round.first_ns.store(u64::MAX, Ordering::Release);
        let token = round.started.elapsed().as_nanos() as u64;
        round.token.store(token, Ordering::Release);
        sender.send(format!("fanout:{token}").into_bytes())?;
        let everyone = async {
            // A wake-up left over from a round that timed out is skipped.
            while round.remaining.load(Ordering::Acquire) > 0 {
                round.done.notified().await;
            }
        };
        let reached = tokio::time::timeout(timeout, everyone).await.is_ok();
        round.token.store(0, Ordering::Release);
        let ms = |ns: u64| ((ns.saturating_sub(token)) as f64 / 1e4).round() / 100.0;
        // Round 0 warms up; it is not reported.
        if r > 0 {
            if reached {
                last_ms.push(ms(round.last_ns.load(Ordering::Acquire)));
                missing.push(0);
            } else {
                missing.push(round.remaining.load(Ordering::Acquire));
            }
            let first = round.first_ns.load(Ordering::Acquire);
            first_ms.push(if first == u64::MAX {
                None
            } else {
                Some(ms(first))
            });
        }
        tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
    }

    // Per measured round, pauses included (idle, so they add next to nothing).
    let cpu_ms = |start: Option<u64>, end: Option<u64>| match (start, end) {
        (Some(start), Some(end)) if args.rounds > 0 => {
            Some(end.saturating_sub(start) as f64 * 10.0 / args.rounds as f64)
        }
        _ => None,
    };
    let client_cpu_ms = cpu_ms(cpu_start.0, cpu_ticks("self"));
    let server_cpu_ms = cpu_ms(cpu_start.1, server_pid.as_deref().and_then(cpu_ticks));
    let mut sorted = last_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let median = match sorted.len() {
        0 => None,
        len if len % 2 == 1 => Some(sorted[len / 2]),
        len => Some(((sorted[len / 2 - 1] + sorted[len / 2]) / 2.0 * 100.0).round() / 100.0),
    };
    Ok(serde_json::json!({
        "mode": "fanout",
        "url": args.url,
        "connections": args.connections,
        "opened": n,
        "failed": opened.failed,
        "first_error": opened.first_error,
        "open_seconds": (opened.seconds * 100.0).round() / 100.0,
        "rounds": args.rounds,
        "completed": last_ms.len(),
        "last_ms": last_ms,
        "first_ms": first_ms,
        "median_ms": median,
        "min_ms": sorted.first(),
        "max_ms": sorted.last(),
        "missing": missing,
        "client_cpu_ms_per_round": client_cpu_ms,
        "server_cpu_ms_per_round": server_cpu_ms,
        "stray": round.stray.load(Ordering::Relaxed),
        "dropped_connections": dropped.load(Ordering::Relaxed),
    }))
}

/// User plus system CPU time of process `pid` (or `self`) from
/// `/proc/PID/stat`, in clock ticks (USER_HZ, 100 per second on Linux).
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14 and stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}
