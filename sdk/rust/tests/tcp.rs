//! TCP handlers end to end through the mock host, using only the public
//! API.

#![cfg(not(target_arch = "wasm32"))]

use std::cell::RefCell;
use std::rc::Rc;

use shanhai_sdk::mock::{Failure, LogRecord, MockHost, Outcome};
use shanhai_sdk::{EventKind, EventStatus, Handlers, HostError, LogLevel, TcpConn, TcpHandler};

const KIND: i32 = EventKind::Tcp as i32;

/// One call of a TCP callback.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Open(TcpConn),
    Frame(TcpConn, Vec<u8>),
    Close(TcpConn),
}

type Log = Rc<RefCell<Vec<Seen>>>;

/// A handler that records every call; frames are upper-cased, `fail`
/// fails, `empty` answers nothing.
fn recording() -> (TcpHandler, Log) {
    let seen: Log = Rc::default();
    let (open, frame, close) = (Rc::clone(&seen), Rc::clone(&seen), Rc::clone(&seen));
    let handler = TcpHandler::new()
        .on_open(move |conn: &TcpConn| {
            open.borrow_mut().push(Seen::Open(conn.clone()));
            "ready"
        })
        .on_frame(move |conn: &TcpConn, data: &[u8]| {
            frame
                .borrow_mut()
                .push(Seen::Frame(conn.clone(), data.to_vec()));
            match data {
                b"fail" => Err("bad frame"),
                b"empty" => Ok(Vec::new()),
                _ => Ok(data.to_ascii_uppercase()),
            }
        })
        .on_close(move |conn: &TcpConn| close.borrow_mut().push(Seen::Close(conn.clone())));
    (handler, seen)
}

fn error(message: &str) -> Failure {
    Failure {
        status: EventStatus::Error,
        message: message.into(),
    }
}

fn envelope_head(kind: u8) -> Vec<u8> {
    [&[kind][..], &7u64.to_le_bytes()].concat()
}

#[test]
fn events_see_the_connection() {
    let (handler, seen) = recording();
    let mut host = MockHost::new(Handlers::new().tcp(handler));
    let id = host.tcp_open("modbus", "10.0.0.9:502").unwrap();
    assert_ne!(id, 0);
    assert!(host.tcp_is_open(id));
    assert_eq!(host.tcp_frame(id, b"abc").unwrap(), b"ABC");
    host.tcp_close(id).unwrap();
    assert!(!host.tcp_is_open(id));

    let seen = seen.borrow();
    let conn = |request_id: &str| TcpConn::new(id, "modbus", "10.0.0.9:502", request_id);
    assert_eq!(
        *seen,
        [
            Seen::Open(conn("mock-1")),
            Seen::Frame(conn("mock-2"), b"abc".to_vec()),
            Seen::Close(conn("mock-3")),
        ]
    );
    assert_eq!(host.tcp_received(id), [b"ready".to_vec(), b"ABC".to_vec()]);
}

#[test]
fn binary_frames_pass_unchanged_and_empty_replies_write_nothing() {
    let mut host = MockHost::new(Handlers::new().tcp(TcpHandler::new().on_frame(
        |conn: &TcpConn, frame: &[u8]| match frame {
            [] => None,
            _ => Some([&conn.id().to_be_bytes()[..], frame].concat()),
        },
    )));
    let a = host.tcp_open("l", "192.0.2.1:1").unwrap();
    let b = host.tcp_open("l", "192.0.2.1:2").unwrap();
    assert_ne!(a, b);
    let frame = [0, 0xff, 0x80, 0];
    let reply = host.tcp_frame(b, &frame).unwrap();
    assert_eq!(reply, [&b.to_be_bytes()[..], &frame].concat());
    assert_eq!(host.tcp_frame(b, b"").unwrap(), b"");
    assert_eq!(host.tcp_received(b), [reply]);
    assert!(host.tcp_received(a).is_empty());
}

#[test]
fn missing_callbacks_accept_and_write_nothing() {
    let mut host = MockHost::new(Handlers::new().tcp(TcpHandler::new()));
    let id = host.tcp_open("l", "192.0.2.1:1").unwrap();
    assert_eq!(host.tcp_frame(id, b"ignored").unwrap(), b"");
    host.tcp_close(id).unwrap();
    assert!(host.tcp_received(id).is_empty());
}

#[test]
fn open_errors_refuse_the_connection_and_the_close_event_follows() {
    let seen: Log = Rc::default();
    let record = Rc::clone(&seen);
    let mut host = MockHost::new(
        Handlers::new().tcp(
            TcpHandler::new()
                .on_open(|conn: &TcpConn| -> Result<&str, String> {
                    Err(format!("not from {}", conn.remote_addr()))
                })
                .on_close(move |conn: &TcpConn| {
                    record.borrow_mut().push(Seen::Close(conn.clone()))
                }),
        ),
    );
    assert_eq!(
        host.tcp_open("l", "203.0.113.5:1").unwrap_err(),
        error("not from 203.0.113.5:1")
    );
    assert_eq!(
        *seen.borrow(),
        [Seen::Close(TcpConn::new(1, "l", "203.0.113.5:1", "mock-2"))]
    );
    assert!(!host.tcp_is_open(1));
}

#[test]
fn frame_errors_close_the_connection_and_the_close_event_follows() {
    let (handler, seen) = recording();
    let mut host = MockHost::new(Handlers::new().tcp(handler));
    let id = host.tcp_open("l", "192.0.2.1:1").unwrap();
    assert_eq!(host.tcp_frame(id, b"fail").unwrap_err(), error("bad frame"));
    assert!(!host.tcp_is_open(id));
    assert!(matches!(seen.borrow().last(), Some(Seen::Close(conn)) if conn.id() == id));
    assert_eq!(seen.borrow().len(), 3);
    // Other connections carry on.
    let other = host.tcp_open("l", "192.0.2.1:2").unwrap();
    assert_eq!(host.tcp_frame(other, b"ok").unwrap(), b"OK");
}

#[test]
#[should_panic(expected = "TCP connection 1 is not open")]
fn frames_after_an_error_panic() {
    let (handler, _) = recording();
    let mut host = MockHost::new(Handlers::new().tcp(handler));
    let id = host.tcp_open("l", "192.0.2.1:1").unwrap();
    let _ = host.tcp_frame(id, b"fail");
    let _ = host.tcp_frame(id, b"more");
}

#[test]
fn close_handler_panics_propagate_natively() {
    let mut host = MockHost::new(
        Handlers::new().tcp(TcpHandler::new().on_close(|_: &TcpConn| panic!("in close"))),
    );
    let id = host.tcp_open("l", "192.0.2.1:1").unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| host.tcp_close(id)));
    assert!(caught.is_err());
    assert!(!host.tcp_is_open(id));
}

#[test]
#[should_panic(expected = "TCP connection 1 is not open")]
fn a_second_close_panics() {
    let mut host = MockHost::new(Handlers::new().tcp(TcpHandler::new()));
    let id = host.tcp_open("l", "192.0.2.1:1").unwrap();
    host.tcp_close(id).unwrap();
    let _ = host.tcp_close(id);
}

#[test]
fn replies_over_the_output_limit_fail_the_event() {
    let mut host = MockHost::new(
        Handlers::new().tcp(TcpHandler::new().on_frame(|_: &TcpConn, _: &[u8]| vec![0; 1000])),
    )
    .with_max_response_bytes(100);
    let id = host.tcp_open("l", "192.0.2.1:1").unwrap();
    let failure = host.tcp_frame(id, b"x").unwrap_err();
    assert_eq!(failure.status, EventStatus::Error);
    assert!(
        failure
            .message
            .starts_with("cannot write the 1000-byte result"),
        "{failure}"
    );
}

#[test]
fn without_a_handler_tcp_events_are_unsupported() {
    let mut host = MockHost::new(Handlers::new().function("f", |_: &[u8]| Vec::new()));
    assert_eq!(
        host.tcp_open("l", "192.0.2.1:1").unwrap_err().status,
        EventStatus::Unsupported
    );
    // Before the envelope is even looked at.
    assert_eq!(
        host.event(KIND, b"garbage"),
        Outcome {
            status: EventStatus::Unsupported,
            output: Vec::new()
        }
    );
}

#[test]
fn malformed_envelopes_fail_the_event_with_a_message() {
    let (handler, seen) = recording();
    let mut host = MockHost::new(Handlers::new().tcp(handler));
    let frame = envelope_head(2);
    let cases: [(Vec<u8>, &str); 6] = [
        (Vec::new(), "envelope truncated in event type"),
        (vec![4], "event type 4 is unknown"),
        (vec![2, 1, 0, 0], "envelope truncated in connection"),
        (
            [&frame[..], &9u32.to_le_bytes(), b"modbus"].concat(),
            "envelope truncated in listener",
        ),
        (
            [&frame[..], &1u32.to_le_bytes(), b"\xff"].concat(),
            "listener is not valid UTF-8",
        ),
        (
            [&frame[..], &0u32.to_le_bytes(), &[0, 0]].concat(),
            "envelope truncated in remote address",
        ),
    ];
    for (envelope, want) in cases {
        let outcome = host.event(KIND, &envelope);
        assert_eq!(outcome.status, EventStatus::Error, "{envelope:?}");
        assert_eq!(
            String::from_utf8(outcome.output).unwrap(),
            format!("malformed TCP event envelope: {want}")
        );
    }
    assert!(seen.borrow().is_empty());
}

/// A TCP event may use the host like any event: config and the log.
#[test]
fn events_use_the_host() {
    let handler = TcpHandler::new().on_frame(
        |conn: &TcpConn, frame: &[u8]| -> Result<Vec<u8>, HostError> {
            let prefix = shanhai_sdk::config("prefix")?.ok_or(HostError::NotFound)?;
            shanhai_sdk::info!("frame of {} bytes on {}", frame.len(), conn.listener());
            Ok([prefix.as_bytes(), frame].concat())
        },
    );
    let mut host = MockHost::new(Handlers::new().tcp(handler)).with_config("prefix", "> ");
    let id = host.tcp_open("lines", "192.0.2.1:1").unwrap();
    assert_eq!(host.tcp_frame(id, b"x").unwrap(), b"> x");
    assert_eq!(
        host.logs(),
        [LogRecord {
            level: LogLevel::Info,
            message: "frame of 1 bytes on lines".into()
        }]
    );
}

/// Connection ids are unique across WebSocket and TCP, as in the gateway.
#[test]
fn ids_are_shared_with_websocket_connections() {
    let handlers = Handlers::new()
        .tcp(TcpHandler::new())
        .websocket(shanhai_sdk::WebSocketHandler::new());
    let mut host = MockHost::new(handlers);
    let tcp = host.tcp_open("l", "192.0.2.1:1").unwrap();
    let ws = host
        .ws_open(shanhai_sdk::http::Request::get("/").body(()).unwrap())
        .unwrap();
    assert_ne!(tcp, ws);
}

/// Natively a panic unwinds out of the mock (on wasm32 it aborts the
/// instance); the host stays usable.
#[test]
fn panics_propagate_natively_and_leave_the_host_usable() {
    let mut host = MockHost::new(Handlers::new().tcp(TcpHandler::new().on_frame(
        |_: &TcpConn, frame: &[u8]| {
            assert!(frame != b"boom", "exploded");
            frame.to_vec()
        },
    )));
    let id = host.tcp_open("l", "192.0.2.1:1").unwrap();
    let caught =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| host.tcp_frame(id, b"boom")));
    assert!(caught.is_err());
    let other = host.tcp_open("l", "192.0.2.1:2").unwrap();
    assert_eq!(host.tcp_frame(other, b"ok").unwrap(), b"ok");
}
