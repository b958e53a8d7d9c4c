//! The SDK end to end through the mock host, using only the public API.

#![cfg(not(target_arch = "wasm32"))]

use std::fmt;

use shanhai_sdk::http::{Request, Response, StatusCode, header};
use shanhai_sdk::mock::{Failure, LogRecord, MockHost, Outcome};
use shanhai_sdk::{EventStatus, Handlers, HostError, LogLevel, RemoteAddr, RequestId};

#[derive(Debug)]
struct Refused(&'static str);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused: {}", self.0)
    }
}

fn route(request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, Refused> {
    match request.uri().path() {
        "/created" => Ok(Response::builder()
            .status(StatusCode::CREATED)
            .header(header::CONTENT_TYPE, "text/plain")
            .header("x-multi", "1")
            .header("x-multi", "2")
            .body(b"made it".to_vec())
            .unwrap()),
        "/whoami" => {
            let id = request.extensions().get::<RequestId>().unwrap();
            let addr = request.extensions().get::<RemoteAddr>().unwrap();
            let agent = request
                .headers()
                .get(header::USER_AGENT)
                .map_or("-", |v| v.to_str().unwrap());
            let text = format!(
                "{} {} {id} {addr} {agent} {}",
                request.method(),
                request.uri(),
                request.body().len()
            );
            Ok(Response::new(text.into_bytes()))
        }
        "/config" => {
            let value = shanhai_sdk::config("colour").map_err(|_| Refused("config"))?;
            Ok(Response::new(
                value.unwrap_or_else(|| "<unset>".into()).into_bytes(),
            ))
        }
        "/log" => {
            shanhai_sdk::log::debug("plain debug");
            let n = 2;
            shanhai_sdk::info!("formatted {n}");
            shanhai_sdk::warn!("literal only");
            shanhai_sdk::error!("{}-{}", "a", "b");
            Ok(Response::new(Vec::new()))
        }
        "/big" => Ok(Response::new(vec![b'x'; 1000])),
        _ => Err(Refused("no route")),
    }
}

fn divide(input: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(input).map_err(|e| e.to_string())?;
    let (a, b) = text.split_once('/').ok_or("expected a/b")?;
    let (a, b): (i64, i64) = (
        a.parse().map_err(|_| "bad a")?,
        b.parse().map_err(|_| "bad b")?,
    );
    let q = a.checked_div(b).ok_or("division by zero")?;
    Ok(q.to_string().into_bytes())
}

fn handlers() -> Handlers {
    Handlers::new()
        .http(route)
        .function("divide", divide)
        .function("echo", |input: &[u8]| input.to_vec())
}

shanhai_sdk::export!(handlers);

fn get(uri: &str) -> Request<Vec<u8>> {
    Request::get(uri).body(Vec::new()).unwrap()
}

#[test]
fn http_status_headers_and_body_round_trip() {
    let mut host = MockHost::new(handlers());
    let response = host.http(get("/created")).unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/plain");
    let multi: Vec<_> = response.headers().get_all("x-multi").iter().collect();
    assert_eq!(multi, ["1", "2"]);
    assert_eq!(response.body(), b"made it");
}

#[test]
fn http_request_carries_method_uri_headers_body_and_extensions() {
    let mut host = MockHost::new(handlers());
    let request = Request::post("http://ignored.example/whoami?x=1")
        .header(header::USER_AGENT, "probe/1")
        .body("12345")
        .unwrap();
    let response = host.http(request).unwrap();
    assert_eq!(
        response.body(),
        b"POST /whoami?x=1 mock-1 127.0.0.1:49152 probe/1 5"
    );

    let mut request = get("/whoami");
    request.extensions_mut().insert(RequestId("r-42".into()));
    request
        .extensions_mut()
        .insert(RemoteAddr("10.1.2.3:999".into()));
    let response = host.http(request).unwrap();
    assert_eq!(response.body(), b"GET /whoami r-42 10.1.2.3:999 - 0");
}

#[test]
fn http_handler_errors_are_error_events() {
    let mut host = MockHost::new(handlers());
    let failure = host.http(get("/nowhere")).unwrap_err();
    assert_eq!(
        failure,
        Failure {
            status: EventStatus::Error,
            message: "refused: no route".into()
        }
    );
}

#[test]
fn responses_over_the_output_limit_are_error_events() {
    let mut host = MockHost::new(handlers()).with_max_response_bytes(100);
    let failure = host.http(get("/big")).unwrap_err();
    assert_eq!(failure.status, EventStatus::Error);
    assert!(
        failure.message.contains("host call failed: too large"),
        "{}",
        failure.message
    );
    // The limit is per event.
    assert!(host.http(get("/created")).is_ok());
}

#[test]
fn byte_functions_dispatch_by_name() {
    let mut host = MockHost::new(handlers());
    assert_eq!(host.call("divide", b"84/2").unwrap(), b"42");
    assert_eq!(host.call("echo", b"\x00\xff").unwrap(), b"\x00\xff");
    assert_eq!(host.call("echo", b"").unwrap(), b"");
}

#[test]
fn byte_function_errors_and_unknown_names() {
    let mut host = MockHost::new(handlers());
    assert_eq!(
        host.call("divide", b"1/0").unwrap_err(),
        Failure {
            status: EventStatus::Error,
            message: "division by zero".into()
        }
    );
    let failure = host.call("multiply", b"2*3").unwrap_err();
    assert_eq!(failure.status, EventStatus::NotFound);
    assert_eq!(failure.message, "no byte function named `multiply`");
}

#[test]
fn config_found_and_missing() {
    let mut host = MockHost::new(handlers());
    assert_eq!(host.http(get("/config")).unwrap().body(), b"<unset>");
    host.set_config("colour", "vermilion");
    assert_eq!(host.http(get("/config")).unwrap().body(), b"vermilion");
    let mut host = MockHost::new(handlers()).with_config("colour", "");
    assert_eq!(host.http(get("/config")).unwrap().body(), b"");
}

#[test]
fn config_outside_an_event_is_not_found() {
    assert_eq!(shanhai_sdk::config("anything"), Ok(None));
    assert_eq!(HostError::from_raw(-1), HostError::NotFound);
}

#[test]
fn log_lines_are_recorded_with_their_levels() {
    let mut host = MockHost::new(handlers());
    host.http(get("/log")).unwrap();
    let expected = [
        (LogLevel::Debug, "plain debug"),
        (LogLevel::Info, "formatted 2"),
        (LogLevel::Warn, "literal only"),
        (LogLevel::Error, "a-b"),
    ]
    .map(|(level, message)| LogRecord {
        level,
        message: message.into(),
    });
    assert_eq!(host.logs(), expected);
}

#[test]
fn unknown_kinds_and_missing_handlers_are_unsupported() {
    let mut host = MockHost::new(handlers());
    assert_eq!(
        host.event(7, b"whatever"),
        Outcome {
            status: EventStatus::Unsupported,
            output: Vec::new()
        }
    );
    let mut bare = MockHost::new(Handlers::new().function("f", |_: &[u8]| Vec::new()));
    assert_eq!(
        bare.http(get("/")).unwrap_err().status,
        EventStatus::Unsupported
    );
    let mut empty = MockHost::new(Handlers::new());
    assert_eq!(
        empty.call("f", b"").unwrap_err().status,
        EventStatus::NotFound
    );
}

#[test]
fn malformed_envelopes_are_error_events() {
    let mut host = MockHost::new(handlers());
    let outcome = host.event(1, b"\x05\x00");
    assert_eq!(outcome.status, EventStatus::Error);
    assert_eq!(
        String::from_utf8(outcome.output).unwrap(),
        "malformed HTTP request envelope: envelope truncated in method"
    );
    let outcome = host.event(2, b"\x01\x00\x00\x00\xff");
    assert_eq!(outcome.status, EventStatus::Error);
    assert_eq!(
        String::from_utf8(outcome.output).unwrap(),
        "malformed call envelope: function name is not valid UTF-8"
    );
}

#[test]
fn handler_panics_propagate_natively_and_leave_the_host_usable() {
    let mut host = MockHost::new(
        Handlers::new()
            .function("boom", |_: &[u8]| -> Vec<u8> { panic!("boom") })
            .function("cfg", |_: &[u8]| {
                shanhai_sdk::config("k").map(|v| v.unwrap_or_default())
            }),
    )
    .with_config("k", "v");
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| host.call("boom", b"")));
    assert!(caught.is_err());
    assert_eq!(host.call("cfg", b"").unwrap(), b"v");
}
