//! `echo`: paced round trips through an echo endpoint.
//!
//! Open loop: message `i` is due at `t0 + i / rate` and goes to connection
//! `i % connections`, whatever happened to earlier messages. Its latency is
//! measured from that due time, so a stall in the server shows up in full
//! in the percentiles instead of pausing the sender (coordinated omission).
//!
//! The pacing runs on its own thread, sleeping with `nanosleep` (timer
//! slack lowered to 1 ns where `/proc/self/timerslack_ns` allows) and writing
//! to duplicates of the sockets' file descriptors: tokio's timer has a
//! 1 ms granularity, which on loopback would be most of the latency. How
//! late the pacer itself was is reported as `send_lag_us`, and the latency
//! from the actual send as `service_latency_us`.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use hdrhistogram::Histogram;

use crate::client::{self, Drive, Masks, Target, opcode};
use crate::{histogram, percentiles_us};

/// Digits of the message number at the start of each payload.
const ID_DIGITS: usize = 12;

/// How long to wait for the last echoes after the last send.
const DRAIN: Duration = Duration::from_secs(3);

/// `bench-wsload echo`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// `ws://HOST:PORT/PATH` of an endpoint that echoes text messages.
    #[arg(long)]
    url: String,
    /// Connections the messages are spread over, round robin.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Messages per second, all connections together.
    #[arg(long)]
    rate: u64,
    /// Seconds of measured sending.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of sending at the same rate before, not measured.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Payload bytes per message (text; at least 12).
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

/// The schedule.
#[derive(Clone, Copy)]
struct Plan {
    t0: Instant,
    rate: u64,
    /// Messages in all, warm-up included.
    total: u64,
    /// The first `warm` messages are not measured.
    warm: u64,
    size: usize,
}

impl Plan {
    /// When message `id` is due, in nanoseconds after `t0`.
    fn due_ns(&self, id: u64) -> u64 {
        (u128::from(id) * 1_000_000_000 / u128::from(self.rate)) as u64
    }
}

/// What the readers record.
struct Received {
    from_due: Histogram<u64>,
    from_send: Histogram<u64>,
    measured: u64,
    warm: u64,
    /// Messages that are not an echo of ours (an error from the server).
    stray: u64,
    first_stray: Option<String>,
}

struct Shared {
    plan: Plan,
    /// When each message was written, in nanoseconds after `t0`.
    sent_at: Vec<AtomicU64>,
    received: Mutex<Received>,
    /// Connections that ended before the run did.
    dropped: AtomicUsize,
}

/// What the pacing thread reports.
struct Paced {
    lag: Histogram<u64>,
    sent: u64,
    warm_sent: u64,
    errors: u64,
    first_error: Option<String>,
    /// Writes that found the socket buffer full.
    blocked: u64,
    first_measured_ns: u64,
    last_ns: u64,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<serde_json::Value> {
    if args.size < ID_DIGITS {
        bail!("--size must be at least {ID_DIGITS}");
    }
    if args.rate == 0 || args.connections == 0 {
        bail!("--rate and --connections must be positive");
    }
    let target = Target::resolve(&args.url).await?;
    let opened = client::open_all(&target, args.connections, args.concurrency).await;
    let n = opened.streams.len();
    if n == 0 {
        bail!(
            "no connection opened: {}",
            opened.first_error.unwrap_or_default()
        );
    }
    let warm = (args.warmup * args.rate as f64) as u64;
    let total = warm + (args.duration * args.rate as f64) as u64;
    let plan = Plan {
        t0: Instant::now() + Duration::from_millis(200),
        rate: args.rate,
        total,
        warm,
        size: args.size,
    };
    let shared = Arc::new(Shared {
        plan,
        sent_at: (0..total).map(|_| AtomicU64::new(0)).collect(),
        received: Mutex::new(Received {
            from_due: histogram(),
            from_send: histogram(),
            measured: 0,
            warm: 0,
            stray: 0,
            first_stray: None,
        }),
        dropped: AtomicUsize::new(0),
    });

    let mut writers = Vec::with_capacity(n);
    for (i, (stream, buf)) in opened.streams.into_iter().enumerate() {
        // A second descriptor of the same socket for the pacing thread;
        // the tokio stream keeps reading.
        let std = stream.into_std()?;
        writers.push(std.try_clone()?);
        let stream = tokio::net::TcpStream::from_std(std)?;
        let shared = shared.clone();
        let how = Drive {
            seed: i as u64,
            answer_pings: false,
            outgoing: None,
        };
        tokio::spawn(async move {
            let on_data = |message: client::Message| on_echo(&shared, &message.payload);
            let _ = client::drive(stream, buf, how, on_data).await;
            shared.dropped.fetch_add(1, Ordering::Relaxed);
        });
    }

    // Linux lets a sleeping thread wake up to 50 µs late by default (its
    // timer slack), which would be most of a loopback round trip. The
    // pacing thread inherits the slack of the thread that creates it.
    let slack = std::fs::write("/proc/self/timerslack_ns", "1").is_ok();
    let pacer = shared.clone();
    let (done, paced) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = done.send(pace(&writers, &pacer));
    });
    let paced = paced.await?;

    let expected = paced.sent + paced.warm_sent;
    let deadline = Instant::now() + DRAIN;
    loop {
        let got = {
            let received = shared.received.lock().unwrap();
            received.measured + received.warm
        };
        if got >= expected || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let received = shared.received.lock().unwrap();
    let dropped = shared.dropped.load(Ordering::Relaxed);
    let sending_ns = paced.last_ns.saturating_sub(paced.first_measured_ns);
    let achieved = if sending_ns > 0 {
        (paced.sent.saturating_sub(1)) as f64 * 1e9 / sending_ns as f64
    } else {
        0.0
    };
    Ok(serde_json::json!({
        "mode": "echo",
        "url": args.url,
        "connections": args.connections,
        "opened": n,
        "failed": opened.failed,
        "rate": args.rate,
        "achieved_rate": achieved.round(),
        "duration": args.duration,
        "warmup": args.warmup,
        "size": args.size,
        "sent": paced.sent,
        "received": received.measured,
        "missing": paced.sent.saturating_sub(received.measured),
        "errors": paced.errors + received.stray + dropped as u64,
        "send_errors": paced.errors,
        "first_send_error": paced.first_error,
        "stray": received.stray,
        "first_stray": received.first_stray,
        "dropped_connections": dropped,
        "blocked_writes": paced.blocked,
        "timer_slack_1ns": slack,
        "latency_us": percentiles_us(&received.from_due),
        "service_latency_us": percentiles_us(&received.from_send),
        "send_lag_us": percentiles_us(&paced.lag),
    }))
}

/// Records one message from the server.
fn on_echo(shared: &Shared, payload: &[u8]) {
    let now = Instant::now()
        .saturating_duration_since(shared.plan.t0)
        .as_nanos() as u64;
    let id = payload
        .get(..ID_DIGITS)
        .and_then(|digits| std::str::from_utf8(digits).ok())
        .and_then(|digits| digits.parse::<u64>().ok())
        .filter(|id| *id < shared.plan.total && payload.len() == shared.plan.size);
    let mut received = shared.received.lock().unwrap();
    let Some(id) = id else {
        received.stray += 1;
        if received.first_stray.is_none() {
            let text = String::from_utf8_lossy(&payload[..payload.len().min(300)]);
            received.first_stray = Some(text.into_owned());
        }
        return;
    };
    if id < shared.plan.warm {
        received.warm += 1;
        return;
    }
    received.measured += 1;
    let due = shared.plan.due_ns(id);
    let sent = shared.sent_at[id as usize].load(Ordering::Acquire);
    received
        .from_due
        .saturating_record(now.saturating_sub(due).max(1));
    received
        .from_send
        .saturating_record(now.saturating_sub(sent).max(1));
}

/// Sends every message of the plan at its due time (or at once, when
/// behind). Runs on its own thread.
fn pace(writers: &[std::net::TcpStream], shared: &Shared) -> Paced {
    let plan = &shared.plan;
    let mut paced = Paced {
        lag: histogram(),
        sent: 0,
        warm_sent: 0,
        errors: 0,
        first_error: None,
        blocked: 0,
        first_measured_ns: 0,
        last_ns: 0,
    };
    let mut dead = vec![false; writers.len()];
    let mut masks = Masks::new(0x5eed);
    let mut payload = vec![b'x'; plan.size];
    let mut frame = Vec::with_capacity(plan.size + 14);
    for id in 0..plan.total {
        let due = plan.due_ns(id);
        let now = plan.t0.elapsed().as_nanos() as u64;
        if due > now {
            std::thread::sleep(Duration::from_nanos(due - now));
        }
        let conn = (id % writers.len() as u64) as usize;
        if dead[conn] {
            paced.errors += 1;
            continue;
        }
        write!(&mut payload[..ID_DIGITS], "{id:0ID_DIGITS$}").expect("12 digits fit");
        frame.clear();
        client::encode_frame(opcode::TEXT, &payload, masks.next_key(), &mut frame);
        let sent = plan.t0.elapsed().as_nanos() as u64;
        shared.sent_at[id as usize].store(sent, Ordering::Release);
        if let Err(err) = write_all(&writers[conn], &frame, &mut paced.blocked) {
            dead[conn] = true;
            paced.errors += 1;
            paced.first_error.get_or_insert_with(|| err.to_string());
            continue;
        }
        paced.last_ns = sent;
        if id < plan.warm {
            paced.warm_sent += 1;
        } else {
            if paced.sent == 0 {
                paced.first_measured_ns = sent;
            }
            paced.sent += 1;
            paced.lag.saturating_record(sent.saturating_sub(due).max(1));
        }
    }
    paced
}

/// Writes all of `bytes` to a non-blocking socket, waiting briefly while
/// its buffer is full.
fn write_all(
    mut socket: &std::net::TcpStream,
    mut bytes: &[u8],
    blocked: &mut u64,
) -> std::io::Result<()> {
    use std::io::ErrorKind;
    while !bytes.is_empty() {
        match socket.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(written) => bytes = &bytes[written..],
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                *blocked += 1;
                std::thread::sleep(Duration::from_micros(50));
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}
