//! Timer handlers end to end through the mock host, using only the public
//! API.

#![cfg(not(target_arch = "wasm32"))]

use std::cell::RefCell;
use std::rc::Rc;

use shanhai_sdk::http::Request;
use shanhai_sdk::mock::{Failure, LogRecord, MockHost, Outcome, SentMessage};
use shanhai_sdk::{
    EventKind, EventStatus, Handlers, HostError, LogLevel, Timer, WebSocketHandler, WsConn,
    WsMessage,
};

const KIND: i32 = EventKind::Timer as i32;

/// A host whose timer handler records every run and then answers with
/// `result`.
fn recording(
    result: impl Fn(&Timer) -> Result<(), String> + 'static,
) -> (MockHost, Rc<RefCell<Vec<Timer>>>) {
    let runs = Rc::new(RefCell::new(Vec::new()));
    let record = Rc::clone(&runs);
    let host = MockHost::new(Handlers::new().timer(move |timer: &Timer| {
        record.borrow_mut().push(timer.clone());
        result(timer)
    }));
    (host, runs)
}

fn error(message: &str) -> Failure {
    Failure {
        status: EventStatus::Error,
        message: message.into(),
    }
}

#[test]
fn the_handler_sees_the_run() {
    let (mut host, runs) = recording(|_| Ok(()));
    let run = Timer::new("cleanup")
        .with_scheduled_unix_ms(1_735_689_600_123)
        .with_run(1 << 32 | 5)
        .with_skipped(3)
        .with_payload(r#"{"older_than":"7d"}"#);
    host.timer(&run).unwrap();
    let seen = runs.borrow();
    assert_eq!(*seen, [run]);
    let seen = &seen[0];
    assert_eq!(seen.name(), "cleanup");
    assert_eq!(seen.scheduled_unix_ms(), 1_735_689_600_123);
    assert_eq!(seen.run(), 4_294_967_301);
    assert_eq!(seen.skipped(), 3);
    assert_eq!(seen.payload(), br#"{"older_than":"7d"}"#);
}

#[test]
fn a_successful_run_writes_no_output() {
    let (mut host, _) = recording(|_| Ok(()));
    let envelope = [
        &1u32.to_le_bytes()[..],
        b"t",
        &[0; 8],
        &[1, 0, 0, 0, 0, 0, 0, 0],
        &[0; 4],
    ]
    .concat();
    assert_eq!(
        host.event(KIND, &envelope),
        Outcome {
            status: EventStatus::Ok,
            output: Vec::new()
        }
    );
}

#[test]
fn errors_fail_the_run() {
    let (mut host, runs) = recording(|timer| match timer.run() {
        2 => Err("disk full".to_owned()),
        _ => Ok(()),
    });
    host.timer(&Timer::new("backup")).unwrap();
    assert_eq!(
        host.timer(&Timer::new("backup").with_run(2)).unwrap_err(),
        error("disk full")
    );
    // The next run is unaffected.
    host.timer(&Timer::new("backup").with_run(3)).unwrap();
    assert_eq!(runs.borrow().len(), 3);
}

#[test]
fn handlers_may_return_unit_or_any_displayable_error() {
    let mut host = MockHost::new(Handlers::new().timer(|_: &Timer| ()));
    assert_eq!(host.timer(&Timer::new("t")), Ok(()));

    let mut host = MockHost::new(
        Handlers::new().timer(|_: &Timer| -> Result<(), HostError> { Err(HostError::Denied) }),
    );
    assert_eq!(
        host.timer(&Timer::new("t")),
        Err(error("host call failed: denied"))
    );
}

#[test]
fn without_a_handler_timers_are_unsupported() {
    let mut host = MockHost::new(Handlers::new().function("f", |_: &[u8]| Vec::new()));
    assert_eq!(
        host.timer(&Timer::new("t")).unwrap_err().status,
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
    let (mut host, runs) = recording(|_| Ok(()));
    let name = [&1u32.to_le_bytes()[..], b"t"].concat();
    let cases: [(Vec<u8>, &str); 6] = [
        (Vec::new(), "envelope truncated in timer name"),
        (
            [&9u32.to_le_bytes()[..], b"t"].concat(),
            "envelope truncated in timer name",
        ),
        (
            [&1u32.to_le_bytes()[..], b"\xff"].concat(),
            "timer name is not valid UTF-8",
        ),
        (
            [&name[..], &[1, 2, 3]].concat(),
            "envelope truncated in scheduled time",
        ),
        (
            [&name[..], &[0; 8], &[1]].concat(),
            "envelope truncated in run number",
        ),
        (
            [&name[..], &[0; 16], &[1]].concat(),
            "envelope truncated in skipped runs",
        ),
    ];
    for (envelope, want) in cases {
        let outcome = host.event(KIND, &envelope);
        assert_eq!(outcome.status, EventStatus::Error, "{envelope:?}");
        assert_eq!(
            String::from_utf8(outcome.output).unwrap(),
            format!("malformed timer event envelope: {want}")
        );
    }
    assert!(runs.borrow().is_empty());
}

/// A run may use the host like any event: config, logs, and the module's
/// WebSocket connections.
#[test]
fn runs_use_the_host() {
    let handlers = Handlers::new()
        .websocket(WebSocketHandler::new().on_open(|conn: &WsConn| conn.join("ticks")))
        .timer(|timer: &Timer| -> Result<(), HostError> {
            let prefix = shanhai_sdk::config("prefix")?.unwrap_or_default();
            let text = format!("{prefix}{} #{}", timer.name(), timer.run());
            let n = shanhai_sdk::broadcast("ticks", WsMessage::Text(&text), None)?;
            shanhai_sdk::info!("sent to {n}");
            Ok(())
        });
    let mut host = MockHost::new(handlers).with_config("prefix", "tick ");
    let conn = host
        .ws_open(Request::get("/ticks").body(()).unwrap())
        .unwrap();
    host.timer(&Timer::new("heartbeat").with_run(4)).unwrap();
    assert_eq!(
        host.ws_received(conn),
        [SentMessage::Text("tick heartbeat #4".into())]
    );
    assert_eq!(
        host.logs(),
        [LogRecord {
            level: LogLevel::Info,
            message: "sent to 1".into()
        }]
    );
}

/// Natively a panic unwinds out of the mock (on wasm32 it aborts the
/// instance); the host stays usable.
#[test]
fn panics_propagate_natively_and_leave_the_host_usable() {
    let mut host = MockHost::new(Handlers::new().timer(|timer: &Timer| {
        assert!(timer.payload() != b"boom", "exploded");
        shanhai_sdk::config("k").map(drop)
    }))
    .with_config("k", "v");
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        host.timer(&Timer::new("t").with_payload("boom"))
    }));
    assert!(caught.is_err());
    assert_eq!(host.timer(&Timer::new("t")), Ok(()));
}
