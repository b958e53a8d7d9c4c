//! The WebSocket trigger against a real gateway, with the raw client of
//! `wsclient.rs` over 127.0.0.1 and the `wsprobe` Go fixture.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::admin::counter;
use crate::util::{Gateway, fixture};
use crate::wsclient::{BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, WsClient};

/// A frame to send as is: (fin, rsv bits, opcode, payload, masked).
type RawFrame = (bool, u8, u8, Vec<u8>, bool);

/// The probe module, built once per test run.
fn wsprobe() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| fixture("wsprobe", "wsprobe", ""))
}

/// A modules folder with the probe as `probe.wasm` (and `other.wasm`, a
/// second module of the same code, when `two` is set).
pub fn probe_folder(two: bool) -> tempfile::TempDir {
    let modules = tempfile::tempdir().unwrap();
    std::fs::copy(wsprobe(), modules.path().join("probe.wasm")).unwrap();
    if two {
        std::fs::copy(wsprobe(), modules.path().join("other.wasm")).unwrap();
    }
    modules
}

pub async fn open(gw: &Gateway, path: &str) -> (WsClient, u64) {
    let mut client = WsClient::connect(gw.addr, path).await;
    let welcome = client.recv_text().await;
    let id = welcome
        .strip_prefix("welcome ")
        .unwrap_or_else(|| panic!("no welcome: {welcome:?}"))
        .parse()
        .unwrap();
    (client, id)
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_are_echoed_and_the_module_can_refuse() {
    let modules = probe_folder(false);
    let gw = Gateway::start(modules.path(), None);
    let (mut client, id) = open(&gw, "/probe/ws").await;
    assert!(id > 0);
    assert_eq!(client.ask("echo:héllo").await, "héllo");
    assert_eq!(client.ask("id").await, id.to_string());
    client.send_binary(&[0, 1, 2, 255]).await;
    let frame = client.recv().await;
    assert_eq!((frame.opcode, frame.payload), (BINARY, vec![0, 1, 2, 255]));
    // A large binary message within the limit, in both directions.
    let big = vec![7u8; 200_000];
    client.send_binary(&big).await;
    assert_eq!(client.recv().await.payload, big);

    // The module refuses, the handshake is checked, unknown paths are 404.
    let refused = WsClient::try_connect(gw.addr, "/probe/ws?deny=1", &[])
        .await
        .err()
        .unwrap();
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(refused.body.contains("denied by the module"), "{refused:?}");
    let refused = WsClient::try_connect(gw.addr, "/probe/ws", &[("Sec-WebSocket-Version", "8")])
        .await
        .err()
        .unwrap();
    assert_eq!(refused.status, 426, "{refused:?}");
    assert!(
        refused
            .head
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13")
    );
    let refused = WsClient::try_connect(gw.addr, "/probe/ws", &[("Sec-WebSocket-Key", "short")])
        .await
        .err()
        .unwrap();
    assert_eq!(refused.status, 400, "{refused:?}");
    let refused = WsClient::try_connect(gw.addr, "/nothing/ws", &[])
        .await
        .err()
        .unwrap();
    assert_eq!(refused.status, 404, "{refused:?}");

    // The close handshake: our code and reason come back, and the module
    // hears about it.
    client.send_close(4001, "bye now").await;
    let frame = client.recv().await;
    assert_eq!(frame.close(), (4001, String::new()));
    assert!(
        client
            .next_frame_within(Duration::from_secs(5))
            .await
            .is_none()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw
        .logs()
        .lines()
        .any(|l| l.contains("closed") && l.contains("4001") && l.contains("bye now"))
    {
        assert!(
            Instant::now() < deadline,
            "close event never logged:\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rooms_broadcast_to_many_clients_and_modules_are_isolated() {
    let modules = probe_folder(true);
    let gw = Gateway::start(modules.path(), None);
    let mut members = Vec::new();
    for _ in 0..50 {
        let (mut client, id) = open(&gw, "/probe/ws").await;
        assert_eq!(client.ask("join:lobby").await, "ok");
        members.push((client, id));
    }
    let (mut outsider, _) = open(&gw, "/probe/ws").await;
    let (mut sender, _) = (members.remove(0).0, ());
    assert_eq!(sender.ask("broadcast:lobby:hi all").await, "sent 49");
    for (client, _) in &mut members {
        assert_eq!(client.recv_text().await, "hi all");
    }
    // The outsider got nothing: its next message is its own echo.
    assert_eq!(outsider.ask("echo:quiet").await, "quiet");

    // Leaving, and a connection that closes, leave the room.
    let (mut leaver, _) = members.pop().unwrap();
    assert_eq!(leaver.ask("leave:lobby").await, "ok");
    let reply = leaver.ask("leave:lobby").await;
    assert!(
        reply.starts_with("error:") && reply.ends_with("not found"),
        "{reply}"
    );
    let (mut gone, gone_id) = members.pop().unwrap();
    gone.send_close(1000, "").await;
    assert_eq!(gone.recv().await.opcode, CLOSE);
    // Once the gateway has forgotten the connection, sending to it fails.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = sender.ask(&format!("sendto:{gone_id}:x")).await;
        if reply.ends_with("not found") {
            break;
        }
        assert!(Instant::now() < deadline, "{reply}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sender.ask("broadcast:lobby:again").await, "sent 47");
    for (client, _) in &mut members {
        assert_eq!(client.recv_text().await, "again");
    }

    // Another module sees neither these connections nor this room.
    let (mut other, _) = open(&gw, "/other/ws").await;
    let (_, target) = &members[0];
    let reply = other.ask(&format!("sendto:{target}:hello")).await;
    assert!(
        reply.starts_with("error:") && reply.ends_with("not found"),
        "{reply}"
    );
    assert_eq!(other.ask("broadcast:lobby:intruder").await, "sent 0");
    // The module itself may send to any of its own connections.
    assert_eq!(sender.ask(&format!("sendto:{target}:direct")).await, "ok");
    assert_eq!(members[0].0.recv_text().await, "direct");
}

#[tokio::test(flavor = "multi_thread")]
async fn fragments_control_frames_and_protocol_errors() {
    let modules = probe_folder(false);
    let gw = Gateway::start(modules.path(), None);

    // A text message in three fragments with a ping between them.
    let (mut c, _) = open(&gw, "/probe/ws").await;
    c.send_raw(false, 0, TEXT, b"echo:frag", true).await;
    c.send_raw(true, 0, PING, b"p1", true).await;
    c.send_raw(false, 0, CONTINUATION, "mén".as_bytes(), true)
        .await;
    c.send_raw(true, 0, CONTINUATION, b"ted", true).await;
    let pong = c.next_frame_within(Duration::from_secs(10)).await.unwrap();
    assert_eq!((pong.opcode, pong.payload.as_slice()), (PONG, &b"p1"[..]));
    assert_eq!(c.recv_text().await, "fragménted");

    // Each violation closes with its code; the gateway keeps serving.
    let cases: [(&str, Vec<RawFrame>, u16); 8] = [
        (
            "unmasked",
            vec![(true, 0, TEXT, b"echo:x".to_vec(), false)],
            1002,
        ),
        (
            "reserved bits",
            vec![(true, 4, TEXT, b"echo:x".to_vec(), true)],
            1002,
        ),
        (
            "reserved opcode",
            vec![(true, 0, 0x3, b"x".to_vec(), true)],
            1002,
        ),
        (
            "fragmented ping",
            vec![(false, 0, PING, b"x".to_vec(), true)],
            1002,
        ),
        (
            "continuation first",
            vec![(true, 0, CONTINUATION, b"x".to_vec(), true)],
            1002,
        ),
        (
            "text inside a fragmented message",
            vec![
                (false, 0, TEXT, b"echo:".to_vec(), true),
                (true, 0, TEXT, b"x".to_vec(), true),
            ],
            1002,
        ),
        (
            "invalid UTF-8",
            vec![(true, 0, TEXT, vec![b'e', 0xff, 0xfe], true)],
            1007,
        ),
        (
            "close code 1005 on the wire",
            vec![(true, 0, CLOSE, 1005u16.to_be_bytes().to_vec(), true)],
            1002,
        ),
    ];
    for (what, frames, code) in cases {
        let (mut c, _) = open(&gw, "/probe/ws").await;
        for (fin, rsv, opcode, payload, masked) in frames {
            c.send_raw(fin, rsv, opcode, &payload, masked).await;
        }
        let (got, reason) = c.expect_close().await;
        assert_eq!(got, code, "{what}: closed with {got} {reason:?}");
        assert!(
            c.next_frame_within(Duration::from_secs(5)).await.is_none(),
            "{what}: the socket stayed open"
        );
    }

    // Oversized: declared beyond max_message_bytes (1 MiB by default).
    let (mut c, _) = open(&gw, "/probe/ws").await;
    c.send_binary(&vec![0u8; (1 << 20) + 1]).await;
    assert_eq!(c.expect_close().await.0, 1009);
    let (mut c, _) = open(&gw, "/probe/ws").await;
    assert_eq!(c.ask("echo:still serving").await, "still serving");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_loses_one_message_and_nothing_else() {
    let modules = probe_folder(false);
    let gw = Gateway::start(
        modules.path(),
        Some("[modules.probe]\nmax_memory_mb = 64\n"),
    );
    let (mut victim, _) = open(&gw, "/probe/ws").await;
    let (mut bystander, _) = open(&gw, "/probe/ws").await;
    victim.send_text("oom").await;
    let error: serde_json::Value = serde_json::from_str(&victim.recv_text().await).unwrap();
    assert_eq!(error["error"], "memory_limit", "{error}");
    assert_eq!(error["module"], "probe", "{error}");
    assert!(
        error["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(victim.ask("echo:after oom").await, "after oom");
    // os.Exit ends the instance too; the next message gets a fresh one.
    victim.send_text("crash").await;
    let error: serde_json::Value = serde_json::from_str(&victim.recv_text().await).unwrap();
    assert_eq!(error["error"], "guest_error", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("exited with code 3"),
        "{error}"
    );
    // Both connections carry on.
    assert_eq!(victim.ask("echo:after").await, "after");
    // A Go panic is recovered by the SDK: an error status, same treatment.
    victim.send_text("panic").await;
    let error: serde_json::Value = serde_json::from_str(&victim.recv_text().await).unwrap();
    assert_eq!(error["error"], "guest_error", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("asked to panic"),
        "{error}"
    );
    assert_eq!(victim.ask("echo:again").await, "again");
    assert_eq!(bystander.ask("echo:unaffected").await, "unaffected");
    // Each message is counted under its outcome (a message is counted
    // before its reply is sent).
    let metrics = gw.metrics().await;
    for (status, messages) in [("ok", 4.0), ("guest_error", 2.0), ("memory_limit", 1.0)] {
        let labels = [
            ("module", "probe"),
            ("trigger", "websocket"),
            ("status", status),
        ];
        assert_eq!(
            counter(&metrics, "shanhai_requests_total", &labels),
            messages,
            "{status}: {metrics}"
        );
    }
    let logs = gw.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("WebSocket event failed") && l.contains("\"module\":\"probe\"")),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_peers_are_evicted_and_live_ones_kept() {
    let modules = probe_folder(false);
    let config = "[websocket]\nping_interval_ms = 200\npeer_timeout_ms = 700\n";
    let gw = Gateway::start(modules.path(), Some(config));
    let (mut silent, _) = open(&gw, "/probe/ws").await;
    silent.auto_pong = false;
    let (mut live, _) = open(&gw, "/probe/ws").await;

    // The live client answers pings while the silent one is evicted.
    let started = Instant::now();
    let live_task = tokio::spawn(async move {
        let mut pings = 0;
        while started.elapsed() < Duration::from_millis(2500) {
            let frame = live
                .next_frame_within(Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(frame.opcode, PING, "{frame:?}");
            live.send_raw(true, 0, PONG, &frame.payload, true).await;
            pings += 1;
        }
        (live, pings)
    });
    let (code, reason) = silent.expect_close().await;
    let evicted_after = started.elapsed();
    assert_eq!((code, reason.as_str()), (1001, "heartbeat timeout"));
    assert!(
        evicted_after >= Duration::from_millis(400) && evicted_after < Duration::from_secs(3),
        "evicted after {evicted_after:?}"
    );
    let (mut live, pings) = live_task.await.unwrap();
    assert!(pings >= 5, "{pings} pings in 2.5 s at 200 ms");
    assert_eq!(live.ask("echo:alive").await, "alive");
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("shanhai_ws_evictions_total{module=\"probe\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_is_closed_not_buffered() {
    let modules = probe_folder(false);
    let config = "[websocket]\nsend_queue_bytes = 65536\n";
    let gw = Gateway::start(modules.path(), Some(config));
    let (mut slow, _) = open(&gw, "/probe/ws").await;
    let (mut other, _) = open(&gw, "/probe/ws").await;
    // 1,000 messages of 10 KB queued in one event: the queue holds 64 KiB.
    slow.send_text("flood:1000:10000").await;
    let mut binary = 0;
    let (code, reason) = loop {
        let frame = slow.recv().await;
        match frame.opcode {
            BINARY => binary += 1,
            CLOSE => break frame.close(),
            TEXT => assert!(
                frame.text().starts_with("stopped after"),
                "{}",
                frame.text()
            ),
            _ => panic!("{frame:?}"),
        }
    };
    assert_eq!((code, reason.as_str()), (1008, "send queue full"));
    assert!(
        binary <= 7,
        "{binary} messages of 10 KB passed a 64 KiB queue"
    );
    assert_eq!(other.ask("echo:fine").await, "fine");
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_limits_and_module_close() {
    let modules = probe_folder(false);
    let config = "[modules.probe.websocket]\nmax_connections = 2\n";
    let gw = Gateway::start(modules.path(), Some(config));
    let (mut first, _) = open(&gw, "/probe/ws").await;
    let (_second, _) = open(&gw, "/probe/ws").await;
    let refused = WsClient::try_connect(gw.addr, "/probe/ws", &[])
        .await
        .err()
        .unwrap();
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(refused.body.contains("too_many_connections"), "{refused:?}");
    // The module closes a connection; its slot frees.
    first.send_text("close:4100:done here").await;
    assert_eq!(first.expect_close().await, (4100, "done here".to_owned()));
    first.send_close(4100, "").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut c = loop {
        match WsClient::try_connect(gw.addr, "/probe/ws", &[]).await {
            Ok(client) => break client,
            Err(refused) => {
                assert!(Instant::now() < deadline, "slot never freed: {refused:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // A close code a module may not send is an error, not a close.
    let _welcome = c.recv_text().await;
    let reply = c.ask("close:1005:x").await;
    assert!(
        reply.starts_with("error:") && reply.ends_with("invalid argument"),
        "{reply}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_closes_every_connection_with_1001() {
    let modules = probe_folder(false);
    let mut gw = Gateway::start(modules.path(), None);
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(open(&gw, "/probe/ws").await.0);
    }
    gw.terminate();
    for client in &mut clients {
        let frame = client.recv().await;
        assert_eq!(frame.close(), (1001, "server shutting down".to_owned()));
        client.send_close(1001, "").await;
    }
    let status = gw
        .wait_exit(Duration::from_secs(15))
        .expect("gateway did not exit");
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let modules = probe_folder(false);
    let config =
        "[websocket]\nidle_timeout_ms = 600\nping_interval_ms = 100\npeer_timeout_ms = 5000\n";
    let gw = Gateway::start(modules.path(), Some(config));
    let (mut idle, _) = open(&gw, "/probe/ws").await;
    let (mut chatty, _) = open(&gw, "/probe/ws").await;
    let started = Instant::now();
    // Pongs (answered by `recv`) do not count as activity; messages do.
    let chatty_task = tokio::spawn(async move {
        for i in 0..12 {
            assert_eq!(chatty.ask(&format!("echo:{i}")).await, i.to_string());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        chatty
    });
    let (code, reason) = idle.expect_close().await;
    assert_eq!((code, reason.as_str()), (1000, "idle timeout"));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_secs(3),
        "closed after {elapsed:?}"
    );
    let mut chatty = chatty_task.await.unwrap();
    assert_eq!(chatty.ask("echo:still here").await, "still here");
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_messages_are_answered_in_order() {
    let modules = probe_folder(false);
    let gw = Gateway::start(modules.path(), None);
    let (mut client, _) = open(&gw, "/probe/ws").await;
    // More messages than a send queue holds (1024), sent before reading any
    // reply: the gateway must not take the client for a slow consumer.
    for i in 0..3000 {
        client.send_text(&format!("echo:{i}")).await;
    }
    for i in 0..3000 {
        assert_eq!(client.recv_text().await, i.to_string());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_sent_with_the_upgrade_request_are_answered() {
    // A client may send its first frames without waiting for the 101
    // (RFC 6455 §4.1 lets it, and some do): they arrive with the request
    // and are read with it, before the connection task takes the socket.
    let modules = probe_folder(false);
    let gw = Gateway::start(modules.path(), None);
    let mut client =
        WsClient::connect_sending(gw.addr, "/probe/ws", &["echo:first", "echo:second"]).await;
    let welcome = client.recv_text().await;
    assert!(welcome.starts_with("welcome "), "no welcome: {welcome:?}");
    // Bounded: pings would keep `recv` waiting for a lost message forever.
    let early = tokio::time::timeout(Duration::from_secs(30), async {
        (client.recv_text().await, client.recv_text().await)
    })
    .await
    .expect("the messages sent with the upgrade request got no reply");
    assert_eq!(early, ("first".to_string(), "second".to_string()));
    assert_eq!(client.ask("echo:third").await, "third");
}

/// One conformance case, named after Autobahn's: frames the client sends,
/// the frames it must get back in that order (pongs included), and how
/// the connection must end: `Some(code)` for a close frame from the
/// gateway, `None` when it must stay open (the test then closes it).
struct Conformance {
    case: &'static str,
    send: Vec<RawFrame>,
    expect: Vec<(u8, Vec<u8>)>,
    closes_with: Option<u16>,
}

fn frame(fin: bool, opcode: u8, payload: impl Into<Vec<u8>>) -> RawFrame {
    (fin, 0, opcode, payload.into(), true)
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    [&code.to_be_bytes()[..], reason].concat()
}

/// The WebSocket cases of Autobahn's categories that an echo server must
/// pass (framing, pings, reserved bits and opcodes, fragmentation, UTF-8,
/// closing), written here against the real `ws-echo` example: the
/// Autobahn testsuite itself is Python 2 and does not run on this machine.
fn conformance_cases() -> Vec<Conformance> {
    let ok = |case, send, expect| Conformance {
        case,
        send,
        expect,
        closes_with: None,
    };
    let fails = |case, send, expect, code| Conformance {
        case,
        send,
        expect,
        closes_with: Some(code),
    };
    let hello = || frame(true, TEXT, "Hello");
    let mut cases = vec![
        ok(
            "1.1.1 empty text",
            vec![frame(true, TEXT, "")],
            vec![(TEXT, vec![])],
        ),
        ok(
            "1.2.1 empty binary",
            vec![frame(true, BINARY, "")],
            vec![(BINARY, vec![])],
        ),
        ok(
            "2.1 ping without payload",
            vec![frame(true, PING, "")],
            vec![(PONG, vec![])],
        ),
        ok(
            "2.3 ping with binary payload",
            vec![frame(true, PING, [0u8, 0xff, 0xfe])],
            vec![(PONG, vec![0, 0xff, 0xfe])],
        ),
        fails(
            "2.5 ping payload of 126 bytes",
            vec![frame(true, PING, vec![b'p'; 126])],
            vec![],
            1002,
        ),
        fails(
            "3.2 text, then a frame with RSV = 2, then a ping",
            vec![
                hello(),
                (true, 2, TEXT, b"Hello".to_vec(), true),
                frame(true, PING, ""),
            ],
            vec![(TEXT, b"Hello".to_vec())],
            1002,
        ),
        fails(
            "4.1.3 text, then reserved opcode 5, then a ping",
            vec![hello(), frame(true, 0x5, ""), frame(true, PING, "")],
            vec![(TEXT, b"Hello".to_vec())],
            1002,
        ),
        fails(
            "4.2.3 text, then reserved control opcode 11, then a ping",
            vec![hello(), frame(true, 0xB, ""), frame(true, PING, "")],
            vec![(TEXT, b"Hello".to_vec())],
            1002,
        ),
        ok(
            "5.3 text in two fragments",
            vec![
                frame(false, TEXT, "frag"),
                frame(true, CONTINUATION, "ment"),
            ],
            vec![(TEXT, b"fragment".to_vec())],
        ),
        ok(
            "5.6 text in two fragments with a ping between",
            vec![
                frame(false, TEXT, "frag"),
                frame(true, PING, "p"),
                frame(true, CONTINUATION, "ment"),
            ],
            vec![(PONG, b"p".to_vec()), (TEXT, b"fragment".to_vec())],
        ),
        fails(
            "5.9 a final continuation with nothing to continue, then text",
            vec![frame(true, CONTINUATION, "x"), hello()],
            vec![],
            1002,
        ),
        fails(
            "5.15 a fragmented text, then a continuation with nothing to continue",
            vec![
                frame(false, TEXT, "frag"),
                frame(true, CONTINUATION, "ment"),
                frame(false, CONTINUATION, "x"),
                hello(),
            ],
            vec![(TEXT, b"fragment".to_vec())],
            1002,
        ),
        ok(
            "6.1.1 text of length 0",
            vec![frame(true, TEXT, "")],
            vec![(TEXT, vec![])],
        ),
        ok(
            "6.1.2 three empty fragments",
            vec![
                frame(false, TEXT, ""),
                frame(false, CONTINUATION, ""),
                frame(true, CONTINUATION, ""),
            ],
            vec![(TEXT, vec![])],
        ),
        ok(
            "6.1.3 empty, non-empty and empty fragments",
            vec![
                frame(false, TEXT, ""),
                frame(false, CONTINUATION, "middle"),
                frame(true, CONTINUATION, ""),
            ],
            vec![(TEXT, b"middle".to_vec())],
        ),
        ok(
            "6.2.3 UTF-8 split inside a code point across fragments",
            vec![
                frame(false, TEXT, &"κό".as_bytes()[..3]),
                frame(true, CONTINUATION, &"κό".as_bytes()[3..]),
            ],
            vec![(TEXT, "κό".as_bytes().to_vec())],
        ),
        fails(
            "6.3.1 invalid UTF-8",
            vec![frame(true, TEXT, [0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf])],
            vec![],
            1007,
        ),
        fails(
            "6.4.1 invalid UTF-8 in a fragmented text",
            vec![
                frame(false, TEXT, [0xce, 0xba]),
                frame(true, CONTINUATION, [0xf4, 0x90, 0x80, 0x80]),
            ],
            vec![],
            1007,
        ),
        fails(
            "7.1.1 text, then close",
            vec![hello(), frame(true, CLOSE, close_payload(1000, b""))],
            vec![(TEXT, b"Hello".to_vec())],
            1000,
        ),
        fails(
            "7.1.3 close, then a ping",
            vec![
                frame(true, CLOSE, close_payload(1000, b"")),
                frame(true, PING, ""),
            ],
            vec![],
            1000,
        ),
        fails(
            "7.3.1 close without payload",
            vec![frame(true, CLOSE, "")],
            vec![],
            1000,
        ),
        fails(
            "7.3.2 close with a 1-byte payload",
            vec![frame(true, CLOSE, "x")],
            vec![],
            1002,
        ),
        fails(
            "7.3.5 close with a 123-byte reason",
            vec![frame(true, CLOSE, close_payload(1000, &[b'r'; 123]))],
            vec![],
            1000,
        ),
        fails(
            "7.3.6 close with a 124-byte reason",
            vec![frame(true, CLOSE, close_payload(1000, &[b'r'; 124]))],
            vec![],
            1002,
        ),
        fails(
            "7.5.1 close reason not UTF-8",
            vec![frame(
                true,
                CLOSE,
                close_payload(1000, &[0xce, 0xba, 0xe1, 0xbd]),
            )],
            vec![],
            1007,
        ),
    ];
    for n in [125usize, 126, 127, 128, 65535, 65536] {
        let text = "*".repeat(n);
        cases.push(ok(
            "1.1.x text at each length encoding's bounds",
            vec![frame(true, TEXT, text.clone())],
            vec![(TEXT, text.into_bytes())],
        ));
    }
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        cases.push(fails(
            "7.7.x a valid close code is echoed",
            vec![frame(true, CLOSE, close_payload(code, b""))],
            vec![],
            code,
        ));
    }
    for code in [0u16, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999] {
        cases.push(fails(
            "7.9.x an invalid close code",
            vec![frame(true, CLOSE, close_payload(code, b""))],
            vec![],
            1002,
        ));
    }
    cases
}

#[tokio::test(flavor = "multi_thread")]
async fn the_echo_example_passes_autobahn_style_cases() {
    let modules = crate::util::modules_with(&["ws-echo"]);
    let gw = Gateway::start(modules.path(), None);
    let mut failures = Vec::new();
    for case in conformance_cases() {
        let mut c = WsClient::connect(gw.addr, "/ws-echo/ws").await;
        // All frames in one write where they fit, as Autobahn's "one chop".
        for (fin, rsv, opcode, payload, masked) in &case.send {
            c.send_raw(*fin, *rsv, *opcode, payload, *masked).await;
        }
        let mut got = Vec::new();
        let mut ended = None;
        while ended.is_none() {
            let Some(frame) = c.next_frame_within(Duration::from_secs(15)).await else {
                ended = Some(None);
                break;
            };
            if frame.opcode == CLOSE {
                ended = Some(Some(frame.close().0));
            } else {
                got.push((frame.opcode, frame.payload));
            }
            if ended.is_none() && case.closes_with.is_none() && got.len() == case.expect.len() {
                break;
            }
        }
        let outcome = match (case.closes_with, ended) {
            (Some(code), Some(Some(closed))) if code == closed => Ok(()),
            (Some(code), ended) => Err(format!("should close with {code}, ended {ended:?}")),
            (None, None) => {
                // Still open: a normal close ends it.
                c.send_close(1000, "").await;
                match c.expect_close().await.0 {
                    1000 => Ok(()),
                    other => Err(format!("answered a close 1000 with {other}")),
                }
            }
            (None, ended) => Err(format!("should stay open, ended {ended:?}")),
        };
        if got != case.expect {
            let show = |frames: &[(u8, Vec<u8>)]| -> Vec<(u8, usize)> {
                frames.iter().map(|(op, p)| (*op, p.len())).collect()
            };
            failures.push(format!(
                "{}: got frames (opcode, length) {:?}, want {:?}",
                case.case,
                show(&got),
                show(&case.expect)
            ));
        }
        if let Err(why) = outcome {
            failures.push(format!("{}: {why}", case.case));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The gateway serves on after all of them.
    let mut c = WsClient::connect(gw.addr, "/ws-echo/ws").await;
    assert_eq!(c.ask("still here").await, "still here");
}
