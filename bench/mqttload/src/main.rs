//! `bench-mqttload`: the load generator behind `scripts/bench-mqtt.sh`,
//! whose figures are in `docs/benchmarks.md` ("MQTT (issue 5)"). Each
//! subcommand prints one JSON line:
//!
//! ```text
//! bench-mqttload mqtt   --broker 127.0.0.1:1883 --publish 'sensors/{seq}/raw' --receive 'sensors/+/json' --qos 1 --messages 20000 --window 32
//! bench-mqttload modbus --addr 127.0.0.1:5020 --connections 4 --seconds 5
//! ```
//!
//! `mqtt` publishes a 13-byte sensor reading (mqtt-transform's binary
//! format) to a topic whose second level is the message's sequence number,
//! and subscribes to where the results appear; the second level of a
//! received topic names the message, so the same client measures a plain
//! broker pass-through (`--publish 'bench/{seq}' --receive 'bench/+'`) and
//! a trip through a gateway module. At most `--window` messages are in
//! flight (closed loop); latency is publish → receipt. `--topics N` sends
//! to N topics only (`{seq}` modulo N), to measure one hot topic against
//! many.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

#[derive(Parser)]
#[command(
    name = "bench-mqttload",
    about = "MQTT and Modbus/TCP load generator for scripts/bench-mqtt.sh"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Windowed publish → receive round trips through a broker.
    Mqtt(MqttArgs),
    /// Closed-loop Modbus/TCP read requests (function 3).
    Modbus(ModbusArgs),
}

#[derive(clap::Args)]
struct MqttArgs {
    /// The broker (MQTT 5).
    #[arg(long)]
    broker: SocketAddr,
    /// Topic to publish to; `{seq}` is the message's sequence number.
    #[arg(long)]
    publish: String,
    /// Filter of the topics the results arrive on; their second level is
    /// the sequence number.
    #[arg(long)]
    receive: String,
    /// QoS of the publications and the subscription.
    #[arg(long, default_value_t = 0)]
    qos: u8,
    /// Measured messages.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Unmeasured messages before them.
    #[arg(long, default_value_t = 2_000)]
    warmup: usize,
    /// Messages in flight at most.
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// Spread the messages over this many topics: `{seq}` becomes the
    /// sequence number modulo N, and a result is matched with the oldest
    /// message in flight on its topic (exact when the gateway keeps the
    /// order per topic). Default: one topic per message.
    #[arg(long)]
    topics: Option<usize>,
    /// Give up when nothing arrives for this many seconds.
    #[arg(long, default_value_t = 10)]
    stall_s: u64,
}

#[derive(clap::Args)]
struct ModbusArgs {
    /// The gateway's Modbus/TCP listener.
    #[arg(long)]
    addr: SocketAddr,
    /// Connections, each one request at a time.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Unmeasured seconds before.
    #[arg(long, default_value_t = 1)]
    warmup_s: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // One thread: the machine's other core is the server's.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        match cli.command {
            Command::Mqtt(args) => mqtt(args).await,
            Command::Modbus(args) => modbus(args).await,
        }
    })?;
    println!("{report}");
    std::process::exit(0);
}

/// mqtt-transform's binary reading (see examples/mqtt-transform/README.md).
const READING: [u8; 13] = [
    0x01, 0x01, 0x02, 0x67, 0x74, 0x85, 0x80, 0x08, 0x66, 0x11, 0xad, 0x0c, 0xe4,
];

fn qos(n: u8) -> QoS {
    if n == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    }
}

fn options(id: &str, broker: SocketAddr) -> MqttOptions {
    let mut options = MqttOptions::new(id, broker.ip().to_string(), broker.port());
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(Some(1 << 20));
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    options
}

async fn mqtt(args: MqttArgs) -> anyhow::Result<serde_json::Value> {
    let total = args.warmup + args.messages;
    let origin = Instant::now();
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let window = Arc::new(Semaphore::new(args.window));
    let received = Arc::new(AtomicUsize::new(0));
    let last_receipt = Arc::new(AtomicU64::new(0));
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let first_measured = Arc::new(AtomicU64::new(0));
    let pid = std::process::id();
    // With --topics: per topic, the messages in flight, oldest first.
    let in_flight: Arc<Mutex<Vec<VecDeque<usize>>>> =
        Arc::new(Mutex::new(vec![VecDeque::new(); args.topics.unwrap_or(0)]));
    let topic_of = |seq: usize| args.topics.map_or(seq, |n| seq % n);

    let (sub, mut sub_loop) =
        AsyncClient::new(options(&format!("load-sub-{pid}"), args.broker), 64);
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    {
        let (sent_at, window, received, last_receipt, histogram, in_flight) = (
            sent_at.clone(),
            window.clone(),
            received.clone(),
            last_receipt.clone(),
            histogram.clone(),
            in_flight.clone(),
        );
        let shared_topics = args.topics.is_some();
        let warmup = args.warmup;
        let mut subscribed_tx = Some(subscribed_tx);
        tokio::spawn(async move {
            loop {
                match sub_loop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let now = origin.elapsed().as_nanos() as u64;
                        let Some(level) = std::str::from_utf8(&p.topic)
                            .ok()
                            .and_then(|t| t.split('/').nth(1))
                            .and_then(|s| s.parse::<usize>().ok())
                        else {
                            continue;
                        };
                        let seq = if shared_topics {
                            in_flight
                                .lock()
                                .unwrap()
                                .get_mut(level)
                                .and_then(VecDeque::pop_front)
                        } else {
                            Some(level)
                        };
                        let Some(seq) = seq.filter(|&s| s < sent_at.len()) else {
                            continue;
                        };
                        let sent = sent_at[seq].load(Ordering::Acquire);
                        if seq >= warmup {
                            let micros = now.saturating_sub(sent) / 1_000;
                            histogram.lock().unwrap().saturating_record(micros.max(1));
                        }
                        last_receipt.store(now, Ordering::Release);
                        received.fetch_add(1, Ordering::AcqRel);
                        window.add_permits(1);
                    }
                    Ok(_) => {}
                    Err(err) => {
                        eprintln!("subscriber: {err}");
                        std::process::exit(1);
                    }
                }
            }
        });
    }
    sub.subscribe(&args.receive, qos(args.qos)).await?;
    tokio::time::timeout(Duration::from_secs(10), subscribed).await??;

    let (publisher, mut pub_loop) = AsyncClient::new(
        options(&format!("load-pub-{pid}"), args.broker),
        args.window * 2,
    );
    tokio::spawn(async move {
        loop {
            if let Err(err) = pub_loop.poll().await {
                eprintln!("publisher: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let stall = Duration::from_secs(args.stall_s);
    let mut lost = 0;
    for seq in 0..total {
        match tokio::time::timeout(stall, window.acquire()).await {
            Ok(permit) => permit?.forget(),
            Err(_) => {
                lost = seq - received.load(Ordering::Acquire);
                break;
            }
        }
        let now = origin.elapsed().as_nanos() as u64;
        if seq == args.warmup {
            first_measured.store(now, Ordering::Release);
        }
        sent_at[seq].store(now, Ordering::Release);
        if args.topics.is_some() {
            in_flight.lock().unwrap()[topic_of(seq)].push_back(seq);
        }
        let topic = args.publish.replace("{seq}", &topic_of(seq).to_string());
        publisher
            .publish(topic, qos(args.qos), false, READING.to_vec())
            .await?;
    }
    let deadline = Instant::now() + stall;
    while received.load(Ordering::Acquire) < total - lost && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = received.load(Ordering::Acquire);
    let seconds = (last_receipt.load(Ordering::Acquire) as f64
        - first_measured.load(Ordering::Acquire) as f64)
        / 1e9;
    let measured = got.saturating_sub(args.warmup);
    let h = histogram.lock().unwrap();
    Ok(json!({
        "bench": "mqtt",
        "publish": args.publish,
        "topics": args.topics,
        "qos": args.qos,
        "window": args.window,
        "messages": measured,
        // Sent before the measured ones: a whole run's CPU time covers them too.
        "warmup": args.warmup,
        "lost": total - got,
        "seconds": seconds,
        "msgs_per_s": measured as f64 / seconds,
        "p50_us": h.value_at_quantile(0.5),
        "p99_us": h.value_at_quantile(0.99),
        "max_us": h.max(),
    }))
}

async fn modbus(args: ModbusArgs) -> anyhow::Result<serde_json::Value> {
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..args.connections {
        let mut stream = tokio::net::TcpStream::connect(args.addr).await?;
        stream.set_nodelay(true)?;
        let (measuring, stop, count, histogram) = (
            measuring.clone(),
            stop.clone(),
            count.clone(),
            histogram.clone(),
        );
        tasks.spawn(async move {
            let mut transaction = (c as u16) << 12;
            let mut reply = [0u8; 13];
            while !stop.load(Ordering::Relaxed) {
                transaction = transaction.wrapping_add(1);
                let t = transaction.to_be_bytes();
                // FC 3: read two holding registers at 0, unit 1.
                let request = [t[0], t[1], 0, 0, 0, 6, 1, 3, 0, 0, 0, 2];
                let started = Instant::now();
                stream.write_all(&request).await?;
                stream.read_exact(&mut reply).await?;
                anyhow::ensure!(reply[..2] == t, "reply for another transaction");
                if measuring.load(Ordering::Relaxed) {
                    count.fetch_add(1, Ordering::Relaxed);
                    let micros = started.elapsed().as_micros() as u64;
                    histogram.lock().unwrap().saturating_record(micros.max(1));
                }
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    tokio::time::sleep(Duration::from_secs(args.warmup_s)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    let n = count.load(Ordering::Relaxed);
    let h = histogram.lock().unwrap();
    Ok(json!({
        "bench": "modbus",
        "connections": args.connections,
        "frames": n,
        "seconds": seconds,
        "frames_per_s": n as f64 / seconds,
        "p50_us": h.value_at_quantile(0.5),
        "p99_us": h.value_at_quantile(0.99),
    }))
}
