//! The golden envelopes shared with the Go SDK (`sdk/go/testdata/vectors.json`):
//! both implementations must produce and accept exactly these bytes.

use serde_json::Value;
use shanhai_abi::wire::{
    Call, Header, HttpRequest, HttpResponse, TcpEvent, TcpEventType, TimerEvent, WsEvent,
    WsEventType,
};

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../sdk/go/testdata/vectors.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("reading the shared vectors"))
        .unwrap()
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn headers(value: &Value) -> Vec<(Vec<u8>, Vec<u8>)> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            let text = |i: usize| pair[i].as_str().unwrap().as_bytes().to_vec();
            (text(0), text(1))
        })
        .collect()
}

fn borrowed(headers: &[(Vec<u8>, Vec<u8>)]) -> Vec<Header<'_>> {
    headers
        .iter()
        .map(|(name, value)| Header { name, value })
        .collect()
}

#[test]
fn http_requests_match_the_go_sdk() {
    let all = vectors();
    let cases = all["http_request"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let owned = headers(&case["headers"]);
        let body = unhex(case["body_hex"].as_str().unwrap());
        let request = HttpRequest {
            method: case["method"].as_str().unwrap(),
            uri: case["uri"].as_str().unwrap(),
            request_id: case["request_id"].as_str().unwrap(),
            remote_addr: case["remote_addr"].as_str().unwrap(),
            headers: borrowed(&owned),
            body: &body,
        };
        let expected = unhex(case["hex"].as_str().unwrap());
        assert_eq!(request.encode(), expected, "{}", case["name"]);
        assert_eq!(
            HttpRequest::decode(&expected).unwrap(),
            request,
            "{}",
            case["name"]
        );
    }
}

#[test]
fn http_responses_match_the_go_sdk() {
    let all = vectors();
    for case in all["http_response"].as_array().unwrap() {
        let owned = headers(&case["headers"]);
        let body = unhex(case["body_hex"].as_str().unwrap());
        let response = HttpResponse {
            status: case["status"].as_u64().unwrap() as u16,
            headers: borrowed(&owned),
            body: &body,
        };
        let expected = unhex(case["hex"].as_str().unwrap());
        assert_eq!(response.encode(), expected, "{}", case["name"]);
        assert_eq!(
            HttpResponse::decode(&expected).unwrap(),
            response,
            "{}",
            case["name"]
        );
    }
}

#[test]
fn calls_match_the_go_sdk() {
    let all = vectors();
    for case in all["call"].as_array().unwrap() {
        let input = unhex(case["input_hex"].as_str().unwrap());
        let call = Call {
            function: case["function"].as_str().unwrap(),
            input: &input,
        };
        let expected = unhex(case["hex"].as_str().unwrap());
        assert_eq!(call.encode(), expected, "{}", case["name"]);
        assert_eq!(Call::decode(&expected).unwrap(), call, "{}", case["name"]);
    }
}

#[test]
fn ws_events_match_the_go_sdk() {
    let all = vectors();
    let cases = all["ws_event"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let owned = headers(&case["headers"]);
        let data = unhex(case["data_hex"].as_str().unwrap());
        let raw_type = u8::try_from(case["type"].as_u64().unwrap()).unwrap();
        let event = WsEvent {
            event: WsEventType::from_raw(raw_type).unwrap(),
            connection: case["connection"].as_u64().unwrap(),
            close_code: u16::try_from(case["close_code"].as_u64().unwrap()).unwrap(),
            uri: case["uri"].as_str().unwrap(),
            remote_addr: case["remote_addr"].as_str().unwrap(),
            request_id: case["request_id"].as_str().unwrap(),
            headers: borrowed(&owned),
            data: &data,
        };
        let expected = unhex(case["hex"].as_str().unwrap());
        assert_eq!(event.encode(), expected, "{}", case["name"]);
        assert_eq!(
            WsEvent::decode(&expected).unwrap(),
            event,
            "{}",
            case["name"]
        );
    }
}

#[test]
fn timer_events_match_the_go_sdk() {
    let all = vectors();
    let cases = all["timer_event"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let payload = unhex(case["payload_hex"].as_str().unwrap());
        let event = TimerEvent {
            timer: case["timer"].as_str().unwrap(),
            scheduled_unix_ms: case["scheduled_ms"].as_u64().unwrap(),
            run: case["run"].as_u64().unwrap(),
            skipped: u32::try_from(case["skipped"].as_u64().unwrap()).unwrap(),
            payload: &payload,
        };
        let expected = unhex(case["hex"].as_str().unwrap());
        assert_eq!(event.encode(), expected, "{}", case["name"]);
        assert_eq!(
            TimerEvent::decode(&expected).unwrap(),
            event,
            "{}",
            case["name"]
        );
    }
}

#[test]
fn tcp_events_match_the_go_sdk() {
    let all = vectors();
    let cases = all["tcp_event"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let data = unhex(case["data_hex"].as_str().unwrap());
        let raw_type = u8::try_from(case["type"].as_u64().unwrap()).unwrap();
        let event = TcpEvent {
            event: TcpEventType::from_raw(raw_type).unwrap(),
            connection: case["connection"].as_u64().unwrap(),
            listener: case["listener"].as_str().unwrap(),
            remote_addr: case["remote_addr"].as_str().unwrap(),
            request_id: case["request_id"].as_str().unwrap(),
            data: &data,
        };
        let expected = unhex(case["hex"].as_str().unwrap());
        assert_eq!(event.encode(), expected, "{}", case["name"]);
        assert_eq!(
            TcpEvent::decode(&expected).unwrap(),
            event,
            "{}",
            case["name"]
        );
    }
}
