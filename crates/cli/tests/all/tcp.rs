//! The TCP stream trigger against a real gateway: real sockets on
//! 127.0.0.1, the `modbus` example with Modbus/TCP framing, and the
//! `tcpprobe` fixture with length and delimiter framing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::admin::counter;
use crate::util::{Gateway, fixture, modules_with};

fn tcpprobe() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| fixture("tcpprobe", "tcpprobe", ""))
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads exactly `n` bytes, or panics after 10 s.
async fn read_exactly(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut buf))
        .await
        .expect("no answer in time")
        .expect("the connection closed");
    buf
}

/// Whether the gateway closes the connection within 10 s (reading
/// anything else first is a failure).
async fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// A Modbus/TCP request ADU.
fn adu(transaction: u16, unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut out = transaction.to_be_bytes().to_vec();
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&((pdu.len() + 1) as u16).to_be_bytes());
    out.push(unit);
    out.extend_from_slice(pdu);
    out
}

/// Sends one ADU and reads the response ADU.
async fn modbus(stream: &mut TcpStream, request: &[u8]) -> Vec<u8> {
    stream.write_all(request).await.unwrap();
    let header = read_exactly(stream, 7).await;
    let length = u16::from_be_bytes([header[4], header[5]]) as usize;
    let mut response = header;
    response.extend(read_exactly(stream, length - 1).await);
    response
}

const MODBUS_CONFIG: &str = r#"
[tcp.plc]
listen = "127.0.0.1:0"
module = "modbus"
framing = "modbus"

[modules.modbus]
max_instances = 1

[modules.modbus.vars]
holding = "0=100,1=200,7=42"
input = "0=1,1=2"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn modbus_requests_from_a_real_socket() {
    let modules = modules_with(&["modbus"]);
    let gw = Gateway::start(modules.path(), Some(MODBUS_CONFIG));
    let addr = gw.tcp["plc"];
    let mut plc = connect(addr).await;

    // FC 3: read holding registers 0..3 → 100, 200, 0.
    let response = modbus(&mut plc, &adu(1, 1, &[3, 0, 0, 0, 3])).await;
    assert_eq!(response, adu(1, 1, &[3, 6, 0, 100, 0, 200, 0, 0]));
    // FC 4: input registers.
    let response = modbus(&mut plc, &adu(2, 1, &[4, 0, 0, 0, 2])).await;
    assert_eq!(response, adu(2, 1, &[4, 4, 0, 1, 0, 2]));
    // FC 6 then FC 3 reads the write back.
    let write = adu(3, 1, &[6, 0, 7, 0x12, 0x34]);
    assert_eq!(modbus(&mut plc, &write).await, write);
    let response = modbus(&mut plc, &adu(4, 1, &[3, 0, 7, 0, 1])).await;
    assert_eq!(response, adu(4, 1, &[3, 2, 0x12, 0x34]));
    // FC 16: write two registers.
    let response = modbus(&mut plc, &adu(5, 1, &[16, 0, 10, 0, 2, 4, 0, 1, 0, 2])).await;
    assert_eq!(response, adu(5, 1, &[16, 0, 10, 0, 2]));
    // An unknown function is an exception, not a closed connection.
    let response = modbus(&mut plc, &adu(6, 1, &[0x2b, 0])).await;
    assert_eq!(response, adu(6, 1, &[0x2b | 0x80, 1]));

    // A request split across reads, byte by byte, is one frame.
    let request = adu(7, 1, &[3, 0, 1, 0, 1]);
    for byte in &request {
        plc.write_all(&[*byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let header = read_exactly(&mut plc, 7).await;
    assert_eq!(&header[..2], &[0, 7]);
    assert_eq!(read_exactly(&mut plc, 4).await, vec![3, 2, 0, 200]);
    // Two requests in one write are two frames, answered in order.
    let mut both = adu(8, 1, &[3, 0, 0, 0, 1]);
    both.extend(adu(9, 1, &[3, 0, 1, 0, 1]));
    plc.write_all(&both).await.unwrap();
    assert_eq!(read_exactly(&mut plc, 11).await, adu(8, 1, &[3, 2, 0, 100]));
    assert_eq!(read_exactly(&mut plc, 11).await, adu(9, 1, &[3, 2, 0, 200]));

    // Garbage (a protocol id other than 0) closes that connection only.
    let mut bad = connect(addr).await;
    bad.write_all(&[0, 1, 0, 9, 0, 6, 1, 3, 0, 0, 0, 1])
        .await
        .unwrap();
    assert!(closed(&mut bad).await, "a bad MBAP header was not closed");
    // An oversized length too.
    let mut big = connect(addr).await;
    big.write_all(&[0, 1, 0, 0, 1, 0, 1]).await.unwrap();
    assert!(
        closed(&mut big).await,
        "a 256-byte Modbus length was not closed"
    );
    // The first client carries on.
    let response = modbus(&mut plc, &adu(10, 1, &[3, 0, 0, 0, 1])).await;
    assert_eq!(response, adu(10, 1, &[3, 2, 0, 100]));
    let logs = gw.logs();
    assert!(logs.contains("Modbus protocol id 9"), "{logs}");
    assert!(logs.contains("Modbus length 256"), "{logs}");
}

const PROBE_CONFIG: &str = r#"
[tcp.lines]
listen = "127.0.0.1:0"
module = "probe"
framing = "delimiter"
delimiter = "\r\n"
max_frame_bytes = 64

[tcp.sized]
listen = "127.0.0.1:0"
module = "probe"
framing = "length"
length_bytes = 2
max_frame_bytes = 1024
idle_timeout_ms = 500

[tcp.small]
listen = "127.0.0.1:0"
module = "probe"
framing = "length"
length_bytes = 2
max_connections = 1

[tcp.bulk]
listen = "127.0.0.1:0"
module = "probe"
framing = "length"
length_bytes = 4
max_frame_bytes = 262144
write_timeout_ms = 1000
"#;

fn probe_folder() -> tempfile::TempDir {
    let modules = tempfile::tempdir().unwrap();
    std::fs::copy(tcpprobe(), modules.path().join("probe.wasm")).unwrap();
    modules
}

#[tokio::test(flavor = "multi_thread")]
async fn delimiter_framing_oversize_and_failures() {
    let modules = probe_folder();
    let gw = Gateway::start(modules.path(), Some(PROBE_CONFIG));
    let mut c = connect(gw.tcp["lines"]).await;
    assert_eq!(read_exactly(&mut c, 13).await, b"hello lines\r\n");
    c.write_all(b"abc\r\nde").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.write_all(b"f\r\nquiet\r\nghi\r\n").await.unwrap();
    assert_eq!(read_exactly(&mut c, 15).await, b"ABC\r\nDEF\r\nGHI\r\n");
    // A line longer than max_frame_bytes (64) closes the connection.
    let mut long = connect(gw.tcp["lines"]).await;
    let _ = read_exactly(&mut long, 13).await;
    long.write_all(&[b'x'; 100]).await.unwrap();
    assert!(closed(&mut long).await);
    // A failing event closes its connection, with a log line.
    c.write_all(b"fail\r\n").await.unwrap();
    assert!(closed(&mut c).await);
    let logs = gw.logs();
    assert!(
        logs.lines().any(|l| l.contains("the module failed")
            && l.contains("asked to fail")
            && l.contains("\"listener\":\"lines\"")),
        "{logs}"
    );
    assert!(
        logs.contains("no delimiter within max_frame_bytes (64)"),
        "{logs}"
    );
    // Counted: two opens and four lines answered, one line failed (closes
    // are not requests).
    let metrics = gw.metrics().await;
    for (status, events) in [("ok", 6.0), ("guest_error", 1.0)] {
        let labels = [("trigger", "tcp"), ("status", status)];
        assert_eq!(
            counter(&metrics, "shanhai_requests_total", &labels),
            events,
            "{status}: {metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn length_framing_idle_timeout_and_connection_limit() {
    let modules = probe_folder();
    let gw = Gateway::start(modules.path(), Some(PROBE_CONFIG));
    let mut c = connect(gw.tcp["sized"]).await;
    let greeting = read_exactly(&mut c, 2 + 11).await;
    assert_eq!(greeting, b"\x00\x0bhello sized");
    // A frame split inside its length prefix.
    c.write_all(&[0]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    c.write_all(&[5, b'h', b'e']).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    c.write_all(b"llo").await.unwrap();
    assert_eq!(read_exactly(&mut c, 7).await, b"\x00\x05HELLO");
    // Silent for longer than idle_timeout_ms (500): closed.
    let started = std::time::Instant::now();
    assert!(closed(&mut c).await);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );

    // max_connections = 1: a second connection is closed at once.
    let mut first = connect(gw.tcp["small"]).await;
    let _ = read_exactly(&mut first, 2 + 11).await;
    let mut second = connect(gw.tcp["small"]).await;
    assert!(closed(&mut second).await);
    first.write_all(b"\x00\x02ok").await.unwrap();
    assert_eq!(read_exactly(&mut first, 4).await, b"\x00\x02OK");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frame_trickled_byte_by_byte_does_not_reset_the_idle_timeout() {
    let modules = probe_folder();
    let gw = Gateway::start(modules.path(), Some(PROBE_CONFIG));
    let mut c = connect(gw.tcp["sized"]).await;
    let _ = read_exactly(&mut c, 2 + 11).await;
    let started = std::time::Instant::now();
    // A 1000-byte frame, one byte every 100 ms: the connection is never
    // silent for the idle timeout (500 ms), but completes no frame in it.
    let (mut reader, mut writer) = c.into_split();
    let trickle = tokio::spawn(async move {
        writer.write_all(&[0x03, 0xe8]).await?;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            writer.write_all(b"x").await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    });
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "still open while trickling after {:?}",
        started.elapsed()
    );
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(400),
        "closed after {after:?}"
    );
    trickle.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_reads_is_closed_after_the_write_timeout() {
    let modules = probe_folder();
    let gw = Gateway::start(modules.path(), Some(PROBE_CONFIG));
    let addr = gw.tcp["bulk"];
    // A small receive buffer, and 64 frames of 256 KiB whose upper-case
    // replies it never reads: the gateway's writes stall.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stalled = socket.connect(addr).await.unwrap();
    let remote = stalled.local_addr().unwrap().to_string();
    let (mut reader, mut writer) = stalled.into_split();
    let flood = tokio::spawn(async move {
        let mut frame = (262144u32).to_be_bytes().to_vec();
        frame.extend(std::iter::repeat_n(b'a', 262144));
        for _ in 0..64 {
            if writer.write_all(&frame).await.is_err() {
                break;
            }
        }
        writer
    });
    // The gateway gives up on it, and says so with the module and peer.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let line = loop {
        let logs = gw.logs();
        if let Some(line) = logs.lines().find(|l| l.contains("write_timeout_ms")) {
            break line.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no write timeout in 30 s:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        line.contains("\"listener\":\"bulk\"")
            && line.contains("\"module\":\"probe\"")
            && line.contains(&remote),
        "{line}"
    );
    // Its connection ends: what was sent before is still readable, then
    // EOF (or a reset).
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        let mut chunk = vec![0u8; 1 << 16];
        while let Ok(n) = reader.read(&mut chunk).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the stalled connection was not closed");
    flood.abort();
    // Other clients are served throughout.
    let mut other = connect(addr).await;
    assert_eq!(
        read_exactly(&mut other, 4 + 10).await,
        b"\x00\x00\x00\x0ahello bulk"
    );
    other.write_all(b"\x00\x00\x00\x02ok").await.unwrap();
    assert_eq!(read_exactly(&mut other, 6).await, b"\x00\x00\x00\x02OK");
}
