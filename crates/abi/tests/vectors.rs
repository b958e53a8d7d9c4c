//! The golden envelopes shared with the Go SDK (`sdk/go/testdata/vectors.json`):
//! both implementations must produce and accept exactly these bytes.

use serde_json::Value;
use shanhai_abi::wire::{
    Call, Header, HttpRequest, HttpResponse, KeyPage, MqttMessage, MqttOutput, MqttPublish,
    SqlResult, SqlValue, TcpEvent, TcpEventType, TimerEvent, WsEvent, WsEventType,
    decode_sql_params, encode_sql_params,
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

/// The owned data behind a [`SqlValue`] of the vectors (`{"type": ...}`).
enum OwnedSqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl OwnedSqlValue {
    fn parse(value: &Value) -> Self {
        match value["type"].as_str().unwrap() {
            "null" => Self::Null,
            "integer" => Self::Integer(value["integer"].as_i64().unwrap()),
            "real" => Self::Real(value["real"].as_f64().unwrap()),
            "text" => Self::Text(value["text"].as_str().unwrap().to_owned()),
            "blob" => Self::Blob(unhex(value["hex"].as_str().unwrap())),
            other => panic!("unknown SQL value type {other}"),
        }
    }

    fn borrow(&self) -> SqlValue<'_> {
        match self {
            Self::Null => SqlValue::Null,
            Self::Integer(v) => SqlValue::Integer(*v),
            Self::Real(v) => SqlValue::Real(*v),
            Self::Text(v) => SqlValue::Text(v),
            Self::Blob(v) => SqlValue::Blob(v),
        }
    }
}

fn sql_values(values: &Value) -> Vec<OwnedSqlValue> {
    values
        .as_array()
        .unwrap()
        .iter()
        .map(OwnedSqlValue::parse)
        .collect()
}

#[test]
fn key_pages_match_the_go_sdk() {
    let all = vectors();
    let cases = all["key_page"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let keys: Vec<&[u8]> = case["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().as_bytes())
            .collect();
        let page = KeyPage {
            keys,
            next: case["next"].as_str().unwrap().as_bytes(),
        };
        let expected = unhex(case["hex"].as_str().unwrap());
        assert_eq!(page.encode(), expected, "{}", case["name"]);
        assert_eq!(
            KeyPage::decode(&expected).unwrap(),
            page,
            "{}",
            case["name"]
        );
    }
}

#[test]
fn sql_params_match_the_go_sdk() {
    let all = vectors();
    let cases = all["sql_params"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let owned = sql_values(&case["values"]);
        let params: Vec<SqlValue<'_>> = owned.iter().map(OwnedSqlValue::borrow).collect();
        let expected = unhex(case["hex"].as_str().unwrap());
        assert_eq!(encode_sql_params(&params), expected, "{}", case["name"]);
        assert_eq!(
            decode_sql_params(&expected).unwrap(),
            params,
            "{}",
            case["name"]
        );
    }
}

#[test]
fn sql_results_match_the_go_sdk() {
    let all = vectors();
    let cases = all["sql_result"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let owned: Vec<Vec<OwnedSqlValue>> = case["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(sql_values)
            .collect();
        let result = SqlResult {
            rows_affected: case["rows_affected"].as_u64().unwrap(),
            last_insert_rowid: case["last_insert_rowid"].as_i64().unwrap(),
            columns: case["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect(),
            rows: owned
                .iter()
                .map(|row| row.iter().map(OwnedSqlValue::borrow).collect())
                .collect(),
        };
        let expected = unhex(case["hex"].as_str().unwrap());
        assert_eq!(result.encode(), expected, "{}", case["name"]);
        assert_eq!(
            SqlResult::decode(&expected).unwrap(),
            result,
            "{}",
            case["name"]
        );
    }
}

#[test]
fn mqtt_messages_match_the_go_sdk() {
    let all = vectors();
    let cases = all["mqtt_message"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let owned = headers(&case["properties"]);
        let payload = unhex(case["payload_hex"].as_str().unwrap());
        let message = MqttMessage {
            topic: case["topic"].as_str().unwrap(),
            trigger: case["trigger"].as_str().unwrap(),
            request_id: case["request_id"].as_str().unwrap(),
            qos: u8::try_from(case["qos"].as_u64().unwrap()).unwrap(),
            retain: case["retain"].as_bool().unwrap(),
            attempt: u32::try_from(case["attempt"].as_u64().unwrap()).unwrap(),
            properties: borrowed(&owned),
            payload: &payload,
        };
        let expected = unhex(case["hex"].as_str().unwrap());
        assert_eq!(message.encode(), expected, "{}", case["name"]);
        assert_eq!(
            MqttMessage::decode(&expected).unwrap(),
            message,
            "{}",
            case["name"]
        );
    }
}

#[test]
fn mqtt_outputs_match_the_go_sdk() {
    let all = vectors();
    let cases = all["mqtt_output"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let raw = case["messages"].as_array().unwrap();
        let payloads: Vec<Vec<u8>> = raw
            .iter()
            .map(|m| unhex(m["payload_hex"].as_str().unwrap()))
            .collect();
        let output = MqttOutput {
            messages: raw
                .iter()
                .zip(&payloads)
                .map(|(m, payload)| MqttPublish {
                    topic: m["topic"].as_str().unwrap(),
                    qos: u8::try_from(m["qos"].as_u64().unwrap()).unwrap(),
                    retain: m["retain"].as_bool().unwrap(),
                    payload,
                })
                .collect(),
        };
        let expected = unhex(case["hex"].as_str().unwrap());
        assert_eq!(output.encode(), expected, "{}", case["name"]);
        assert_eq!(
            MqttOutput::decode(&expected).unwrap(),
            output,
            "{}",
            case["name"]
        );
    }
}
