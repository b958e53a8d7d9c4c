//! Connection exhaustion and slow clients against a real gateway: stalled
//! half-requests from real sockets (from several loopback addresses, so
//! that the per-address caps can be told apart), under a lowered
//! `ulimit -n`, on the HTTP and the admin listener.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::util::{Gateway, Launch, modules_with};
use crate::ws::{open, probe_folder};

/// The head of a request, cut before its blank line.
const HALF_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\n";

/// A connection to `addr` from loopback address `from` (every 127.x.y.z
/// is the loopback interface on Linux).
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    socket.connect(addr).await.unwrap()
}

/// A connection from `from` that sent half a request head and stalls.
async fn stall(from: &str, addr: SocketAddr) -> TcpStream {
    let mut stream = connect_from(from, addr).await;
    // The gateway may already have refused it: that shows when it is read.
    let _ = stream.write_all(HALF_REQUEST).await;
    stream
}

/// How a connection ended: `Some(bytes)` once the gateway closed it (what
/// it sent first), `None` if it was still open after `wait`.
async fn ended_within(mut stream: TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(wait, read).await.ok().map(|()| got)
}

/// Waits for each connection (at once, in parallel) for up to `wait`;
/// returns what the closed ones got and how many stayed open.
async fn outcomes(streams: Vec<TcpStream>, wait: Duration) -> (Vec<Vec<u8>>, usize) {
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|stream| tokio::spawn(ended_within(stream, wait)))
        .collect();
    let mut closed = Vec::new();
    let mut open = 0;
    for task in tasks {
        match task.await.unwrap() {
            Some(bytes) => closed.push(bytes),
            None => open += 1,
        }
    }
    (closed, open)
}

/// A whole request from `from`, with `Connection: close`: the status and
/// the rest of the response. Panics after 20 s.
async fn request_from(from: &str, addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = connect_from(from, addr).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let got = ended_within(stream, Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("GET {path} from {from}: no answer in 20 s"));
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("GET {path} from {from}: not a response: {text:?}"));
    (status, text)
}

/// The JSON body of a raw response.
fn json_body(response: &str) -> serde_json::Value {
    let (_, body) = response.split_once("\r\n\r\n").expect("a response head");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {response}"))
}

/// Whether a raw response is the 503 a connection over a cap gets.
fn is_refusal(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    text.starts_with("HTTP/1.1 503") && json_body(&text)["error"] == "too_many_connections"
}

/// The `connection limits` line the gateway logs at start.
fn limits_line(gw: &Gateway) -> serde_json::Value {
    gw.logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "connection limits")
        .unwrap_or_else(|| panic!("no `connection limits` line:\n{}", gw.logs()))
}

/// The timeouts are long here: what holds connections open is the test.
const FLOOD_CONFIG: &str = r#"
[server]
header_timeout_ms = 120000

[admin]
listen = "127.0.0.1:0"
socket = ""
token_file = ""
header_timeout_ms = 120000
max_connections_per_ip = 4
"#;

#[tokio::test(flavor = "multi_thread")]
async fn stalled_requests_past_the_per_ip_cap_leave_healthz_reachable() {
    let modules = tempfile::tempdir().unwrap();
    let gw = Gateway::launch(Launch {
        ulimit_n: Some(256),
        ..Launch::new(modules.path(), Some(FLOOD_CONFIG))
    });
    let admin = gw.admin.unwrap();
    // The caps are derived from the 256 descriptors: half for HTTP, a
    // quarter of that per address.
    let limits = limits_line(&gw);
    assert_eq!(limits["nofile"], 256, "{limits}");
    assert_eq!(limits["http_max_connections"], 128, "{limits}");
    assert_eq!(limits["http_max_connections_per_ip"], 32, "{limits}");

    // 300 stalled half-requests from one address: more than the process
    // has descriptors.
    let mut stalled = Vec::new();
    for _ in 0..300 {
        stalled.push(stall("127.0.0.2", gw.addr).await);
    }
    // Another address is served, on both listeners.
    let (status, body) = request_from("127.0.0.1", gw.addr, "/healthz").await;
    assert_eq!((status, body.ends_with("ok\n")), (200, true), "{body}");
    let (status, _) = request_from("127.0.0.1", admin, "/healthz").await;
    assert_eq!(status, 200);
    // The flooder keeps 32 connections; the rest got 503 and were closed.
    let (closed, open) = outcomes(stalled, Duration::from_secs(5)).await;
    assert_eq!((closed.len(), open), (268, 32));
    let refused = closed.iter().filter(|bytes| is_refusal(bytes)).count();
    assert!(refused > 0, "no 503 among the refused connections");

    // The admin listener's own cap: 4 from one address.
    let mut stalled = Vec::new();
    for _ in 0..10 {
        stalled.push(stall("127.0.0.2", admin).await);
    }
    let (status, _) = request_from("127.0.0.1", admin, "/healthz").await;
    assert_eq!(status, 200);
    let (closed, open) = outcomes(stalled, Duration::from_secs(5)).await;
    assert_eq!((closed.len(), open), (6, 4));

    let logs = gw.logs();
    assert!(
        logs.contains("refusing connections over the cap")
            && logs.contains("max_connections_per_ip"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_listener_leaves_descriptors_for_the_rest_and_recovers() {
    let modules = tempfile::tempdir().unwrap();
    let gw = Gateway::launch(Launch {
        ulimit_n: Some(256),
        ..Launch::new(modules.path(), Some(FLOOD_CONFIG))
    });
    let admin = gw.admin.unwrap();
    // 300 stalled half-requests from 10 addresses, 30 each: within the
    // per-address cap (32), past the total one (128).
    let mut stalled = Vec::new();
    for i in 0..300 {
        let from = format!("127.0.0.{}", 10 + i % 10);
        stalled.push(stall(&from, gw.addr).await);
    }
    // The HTTP listener is full and says so, at once...
    let (status, response) = request_from("127.0.0.1", gw.addr, "/healthz").await;
    assert_eq!(status, 503, "{response}");
    assert_eq!(json_body(&response)["error"], "too_many_connections");
    // ...while the process still has descriptors: the admin API serves.
    let (status, response) = request_from("127.0.0.1", admin, "/admin/modules").await;
    assert_eq!(status, 200, "{response}");
    // When the flood ends, its places are free again.
    let (closed, open) = outcomes(stalled, Duration::from_secs(3)).await;
    assert_eq!((closed.len(), open), (172, 128));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = request_from("127.0.0.1", gw.addr, "/healthz").await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still {status} after the flood");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long the gateway takes to close `stream`; panics past 20 s.
async fn closed_after(stream: TcpStream) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let got = ended_within(stream, Duration::from_secs(20))
        .await
        .expect("the connection was not closed within 20 s");
    (started.elapsed(), got)
}

/// Asserts that the gateway closes `stream` without an answer, no sooner
/// than a header timeout of 1 s allows.
async fn closed_by_the_header_timeout(stream: TcpStream) {
    let (after, got) = closed_after(stream).await;
    assert!(
        after >= Duration::from_millis(800),
        "closed after {after:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&got),
        "",
        "closed without an answer"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_heads_are_closed_after_the_header_timeout() {
    let modules = tempfile::tempdir().unwrap();
    let config = r#"
[server]
header_timeout_ms = 1000

[admin]
listen = "127.0.0.1:0"
socket = ""
token_file = ""
header_timeout_ms = 1000
"#;
    let gw = Gateway::start(modules.path(), Some(config));
    let admin = gw.admin.unwrap();
    for addr in [gw.addr, admin] {
        // Half a head, and a socket that never sends a byte.
        for silent in [false, true] {
            let stream = if silent {
                connect_from("127.0.0.1", addr).await
            } else {
                stall("127.0.0.1", addr).await
            };
            closed_by_the_header_timeout(stream).await;
        }
        let (status, _) = request_from("127.0.0.1", addr, "/healthz").await;
        assert_eq!(status, 200);
    }
}

/// Sends `GET /healthz` on a kept-alive connection and reads its whole
/// response.
async fn healthz_kept_alive(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while !got.ends_with(b"\r\n\r\nok\n") {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk))
            .await
            .expect("no answer to /healthz in 20 s")
            .unwrap();
        assert_ne!(
            n,
            0,
            "closed mid-response: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_head_on_a_kept_alive_connection_has_the_header_timeout() {
    let modules = tempfile::tempdir().unwrap();
    let config = r#"
[server]
header_timeout_ms = 1000
keepalive_timeout_ms = 60000
"#;
    let gw = Gateway::start(modules.path(), Some(config));
    // The clock restarts with each response: requests 600 ms apart keep
    // the connection for longer than one timeout.
    let mut stream = connect_from("127.0.0.1", gw.addr).await;
    let started = Instant::now();
    for _ in 0..3 {
        healthz_kept_alive(&mut stream).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    healthz_kept_alive(&mut stream).await;
    assert!(started.elapsed() >= Duration::from_millis(1800));
    // After a response, the next head must arrive within the header
    // timeout, whether nothing comes or half a head does; the minute of
    // keep-alive does not extend it.
    for half in [false, true] {
        let mut stream = connect_from("127.0.0.1", gw.addr).await;
        healthz_kept_alive(&mut stream).await;
        if half {
            stream.write_all(HALF_REQUEST).await.unwrap();
        }
        closed_by_the_header_timeout(stream).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_bodies_get_408_and_idle_connections_are_closed() {
    let modules = modules_with(&["cgi-echo"]);
    let config = r#"
[server]
header_timeout_ms = 60000
body_timeout_ms = 1000
keepalive_timeout_ms = 1000

[admin]
listen = "127.0.0.1:0"
socket = ""
token_file = ""
body_timeout_ms = 1000
"#;
    let gw = Gateway::start(modules.path(), Some(config));
    let admin = gw.admin.unwrap();
    let stalled_bodies = [
        (gw.addr, "POST /cgi-echo HTTP/1.1"),
        (admin, "PUT /admin/modules/late HTTP/1.1"),
    ];
    for (addr, request_line) in stalled_bodies {
        let mut stream = connect_from("127.0.0.1", addr).await;
        let head =
            format!("{request_line}\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\nonly this");
        stream.write_all(head.as_bytes()).await.unwrap();
        let (after, got) = closed_after(stream).await;
        let response = String::from_utf8_lossy(&got).into_owned();
        assert!(response.starts_with("HTTP/1.1 408"), "{response}");
        assert!(
            after >= Duration::from_millis(800),
            "answered after {after:?}"
        );
        let error = json_body(&response);
        assert_eq!(error["error"], "body_timeout", "{response}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("body_timeout_ms"),
            "{response}"
        );
        let id = error["request_id"].as_str().unwrap();
        assert!(
            response
                .to_ascii_lowercase()
                .contains(&format!("x-request-id: {id}")),
            "{response}"
        );
    }
    // A body that arrives is served as before.
    let mut stream = connect_from("127.0.0.1", gw.addr).await;
    stream
        .write_all(b"POST /cgi-echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // Then, kept alive with nothing in flight, the connection is closed
    // after the keep-alive timeout (the header timeout is a minute).
    let (after, _) = closed_after(stream).await;
    assert!(
        after >= Duration::from_millis(700),
        "closed after {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn websockets_count_against_the_caps_and_outlive_the_http_timeouts() {
    let modules = probe_folder(false);
    let config = r#"
[server]
header_timeout_ms = 1000
body_timeout_ms = 1000
keepalive_timeout_ms = 1000
max_connections_per_ip = 2
"#;
    let gw = Gateway::start(modules.path(), Some(config));
    let (mut first, _) = open(&gw, "/probe/ws").await;
    let (mut second, _) = open(&gw, "/probe/ws").await;
    // Upgraded, they still hold this address's two places.
    let (status, response) = request_from("127.0.0.1", gw.addr, "/healthz").await;
    assert_eq!(status, 503, "{response}");
    assert_eq!(json_body(&response)["error"], "too_many_connections");

    // An HTTP connection from elsewhere, idle since after the upgrades, is
    // closed by the HTTP timeouts...
    let mut idle = connect_from("127.0.0.2", gw.addr).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    closed_after(idle).await;
    // ...but the WebSockets, idle longer, are left to their own timers.
    assert_eq!(first.ask("echo:still here").await, "still here");
    assert_eq!(second.ask("echo:me too").await, "me too");
}
