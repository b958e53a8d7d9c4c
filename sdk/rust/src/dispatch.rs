//! Event dispatch: decodes an envelope, runs the registered handler and
//! writes its result with `output_write`. Shared by the wasm exports and
//! the native mock host, so the mock exercises exactly this code.

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, Uri};
use shanhai_abi::wire::{
    Call, Header, HttpRequest, HttpResponse, MqttMessage, TcpEvent, TcpEventType, TimerEvent,
    WsEvent, WsEventType,
};
use shanhai_abi::{EventKind, EventStatus};

use crate::handlers::{Handlers, RemoteAddr, RequestId};
use crate::host;
use crate::mqtt::{self, Message};
use crate::tcp::TcpConn;
use crate::timer::Timer;
use crate::ws::{WsConn, WsMessage};

/// Handles one event of raw `kind` whose envelope is `envelope`.
pub(crate) fn dispatch(handlers: &Handlers, kind: i32, envelope: &[u8]) -> EventStatus {
    match EventKind::from_raw(kind) {
        Some(EventKind::Http) => http_event(handlers, envelope),
        Some(EventKind::Call) => call_event(handlers, envelope),
        Some(EventKind::WebSocket) => ws_event(handlers, envelope),
        Some(EventKind::Timer) => timer_event(handlers, envelope),
        Some(EventKind::Mqtt) => mqtt_event(handlers, envelope),
        Some(EventKind::Tcp) => tcp_event(handlers, envelope),
        None => EventStatus::Unsupported,
    }
}

fn http_event(handlers: &Handlers, envelope: &[u8]) -> EventStatus {
    let Some(handler) = handlers.http_handler() else {
        return EventStatus::Unsupported;
    };
    let request = match decode_request(envelope) {
        Ok(request) => request,
        Err(message) => return fail(&message),
    };
    match handler(request) {
        Ok(response) => write_result(&encode_response(&response)),
        Err(message) => fail(&message),
    }
}

fn call_event(handlers: &Handlers, envelope: &[u8]) -> EventStatus {
    let call = match Call::decode(envelope) {
        Ok(call) => call,
        Err(error) => return fail(&format!("malformed call envelope: {error}")),
    };
    let Some(function) = handlers.byte_function(call.function) else {
        // The message is optional for not_found; it helps whoever reads the
        // host's logs.
        let _ =
            host::output_write(format!("no byte function named `{}`", call.function).as_bytes());
        return EventStatus::NotFound;
    };
    match function(call.input) {
        Ok(output) => write_result(&output),
        Err(message) => fail(&message),
    }
}

fn ws_event(handlers: &Handlers, envelope: &[u8]) -> EventStatus {
    let Some(handler) = handlers.websocket_handler() else {
        return EventStatus::Unsupported;
    };
    let event = match WsEvent::decode(envelope) {
        Ok(event) => event,
        Err(error) => return fail(&format!("malformed WebSocket event envelope: {error}")),
    };
    let mut headers = HeaderMap::new();
    if let Err(message) = append_headers(&mut headers, &event.headers) {
        return fail(&message);
    }
    let conn = WsConn::new(
        event.connection,
        event.uri.to_owned(),
        event.remote_addr.to_owned(),
        event.request_id.to_owned(),
        headers,
    );
    match event.event {
        WsEventType::Open => match handler.open_handler() {
            // An empty greeting is none.
            Some(on_open) => write_reply(on_open(&conn).map(|r| r.filter(|r| !r.is_empty())), true),
            None => EventStatus::Ok,
        },
        WsEventType::Text | WsEventType::Binary => {
            let Some(on_message) = handler.message_handler() else {
                return EventStatus::Ok;
            };
            let message = if event.event == WsEventType::Text {
                match std::str::from_utf8(event.data) {
                    Ok(text) => WsMessage::Text(text),
                    Err(_) => return fail("the text message is not valid UTF-8"),
                }
            } else {
                WsMessage::Binary(event.data)
            };
            match on_message(&conn, message) {
                // An empty output means no reply, so an empty message goes
                // out through ws_send, as one the handler queued itself
                // would; a connection already closing drops it, like any
                // reply.
                Ok(Some(reply)) if reply.is_empty() => {
                    let empty = if message.is_text() {
                        WsMessage::Text("")
                    } else {
                        WsMessage::Binary(&[])
                    };
                    let _ = crate::ws_send(conn.id(), empty);
                    EventStatus::Ok
                }
                reply => write_reply(reply, message.is_text()),
            }
        }
        WsEventType::Close => {
            if let Some(on_close) = handler.close_handler() {
                on_close(
                    &conn,
                    event.close_code,
                    &String::from_utf8_lossy(event.data),
                );
            }
            EventStatus::Ok
        }
    }
}

/// Runs the timer handler. A run's output is ignored, so a successful run
/// writes none.
fn timer_event(handlers: &Handlers, envelope: &[u8]) -> EventStatus {
    let Some(handler) = handlers.timer_handler() else {
        return EventStatus::Unsupported;
    };
    let event = match TimerEvent::decode(envelope) {
        Ok(event) => event,
        Err(error) => return fail(&format!("malformed timer event envelope: {error}")),
    };
    match handler(&Timer::from_wire(&event)) {
        Ok(()) => EventStatus::Ok,
        Err(message) => fail(&message),
    }
}

/// Runs the TCP handler's callback for the event. A non-empty reply is the
/// output (a frame to write back); an `Err` is status error, on which the
/// gateway closes the connection.
fn tcp_event(handlers: &Handlers, envelope: &[u8]) -> EventStatus {
    let Some(handler) = handlers.tcp_handler() else {
        return EventStatus::Unsupported;
    };
    let event = match TcpEvent::decode(envelope) {
        Ok(event) => event,
        Err(error) => return fail(&format!("malformed TCP event envelope: {error}")),
    };
    let conn = TcpConn::from_wire(&event);
    let reply = match event.event {
        TcpEventType::Open => match handler.open_handler() {
            Some(on_open) => on_open(&conn),
            None => return EventStatus::Ok,
        },
        TcpEventType::Frame => match handler.frame_handler() {
            Some(on_frame) => on_frame(&conn, event.data),
            None => return EventStatus::Ok,
        },
        TcpEventType::Close => {
            if let Some(on_close) = handler.close_handler() {
                on_close(&conn);
            }
            return EventStatus::Ok;
        }
    };
    // An empty frame is no reply.
    write_reply(reply.map(|r| (!r.is_empty()).then_some(r)), false)
}

/// Runs the MQTT handler. Its messages, if any, are the output (an
/// MqttOutput); none writes nothing, which the gateway reads as a count of
/// 0.
fn mqtt_event(handlers: &Handlers, envelope: &[u8]) -> EventStatus {
    let Some(handler) = handlers.mqtt_handler() else {
        return EventStatus::Unsupported;
    };
    let message = match MqttMessage::decode(envelope) {
        Ok(message) => message,
        Err(error) => return fail(&format!("malformed MQTT message envelope: {error}")),
    };
    match handler(&Message::from_wire(&message)) {
        Ok(messages) if messages.is_empty() => EventStatus::Ok,
        Ok(messages) => match mqtt::encode_output(&messages) {
            Ok(output) => write_result(&output),
            Err(message) => fail(&message),
        },
        Err(message) => fail(&message),
    }
}

/// Writes a WebSocket or TCP handler's reply, if any, as the event's
/// output. A text reply (to an open or a text message) that is not UTF-8 fails the
/// event, as `ws_send` refuses such text, rather than reach the gateway as
/// a text message it cannot send.
fn write_reply(reply: Result<Option<Vec<u8>>, String>, text: bool) -> EventStatus {
    match reply {
        Ok(None) => EventStatus::Ok,
        Ok(Some(reply)) if text && std::str::from_utf8(&reply).is_err() => {
            fail("a text reply is not valid UTF-8")
        }
        Ok(Some(reply)) => write_result(&reply),
        Err(message) => fail(&message),
    }
}

fn write_result(output: &[u8]) -> EventStatus {
    match host::output_write(output) {
        Ok(()) => EventStatus::Ok,
        // Nothing was appended, so the error message is the whole output.
        Err(error) => fail(&format!(
            "cannot write the {}-byte result: {error}",
            output.len()
        )),
    }
}

fn fail(message: &str) -> EventStatus {
    // If even the message does not fit, the host still sees the status.
    let _ = host::output_write(message.as_bytes());
    EventStatus::Error
}

/// Builds an [`http::Request`] from an HttpRequest envelope.
pub(crate) fn decode_request(envelope: &[u8]) -> Result<Request<Vec<u8>>, String> {
    let wire = HttpRequest::decode(envelope)
        .map_err(|e| format!("malformed HTTP request envelope: {e}"))?;
    let mut request = Request::new(wire.body.to_vec());
    *request.method_mut() = Method::from_bytes(wire.method.as_bytes())
        .map_err(|_| format!("invalid HTTP method {:?}", wire.method))?;
    *request.uri_mut() =
        Uri::try_from(wire.uri).map_err(|e| format!("invalid request URI {:?}: {e}", wire.uri))?;
    append_headers(request.headers_mut(), &wire.headers)?;
    let extensions = request.extensions_mut();
    extensions.insert(RequestId(wire.request_id.to_owned()));
    extensions.insert(RemoteAddr(wire.remote_addr.to_owned()));
    Ok(request)
}

/// Adds the headers of an envelope to `headers`.
fn append_headers(headers: &mut HeaderMap, wire: &[Header<'_>]) -> Result<(), String> {
    headers.reserve(wire.len());
    for header in wire {
        let name = HeaderName::from_bytes(header.name).map_err(|_| {
            format!(
                "invalid header name {:?}",
                String::from_utf8_lossy(header.name)
            )
        })?;
        let value = HeaderValue::from_bytes(header.value)
            .map_err(|_| format!("invalid value for header {name}"))?;
        headers.append(name, value);
    }
    Ok(())
}

/// Encodes an [`http::Response`] as an HttpResponse envelope.
pub(crate) fn encode_response(response: &Response<Vec<u8>>) -> Vec<u8> {
    HttpResponse {
        status: response.status().as_u16(),
        headers: response
            .headers()
            .iter()
            .map(|(name, value)| Header {
                name: name.as_str().as_bytes(),
                value: value.as_bytes(),
            })
            .collect(),
        body: response.body(),
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_envelopes_become_http_requests() {
        let envelope = HttpRequest {
            method: "PUT",
            uri: "/a/b?c=d",
            request_id: "r-9",
            remote_addr: "10.0.0.1:1234",
            headers: vec![
                Header {
                    name: b"x-multi",
                    value: b"1",
                },
                Header {
                    name: b"x-multi",
                    value: b"2",
                },
            ],
            body: b"payload",
        }
        .encode();
        let request = decode_request(&envelope).unwrap();
        assert_eq!(request.method(), Method::PUT);
        assert_eq!(request.uri().path(), "/a/b");
        assert_eq!(request.uri().query(), Some("c=d"));
        assert_eq!(
            request
                .headers()
                .get_all("x-multi")
                .iter()
                .collect::<Vec<_>>(),
            ["1", "2"]
        );
        assert_eq!(request.body(), b"payload");
        assert_eq!(
            request.extensions().get::<RequestId>().unwrap().as_str(),
            "r-9"
        );
        assert_eq!(
            request.extensions().get::<RemoteAddr>().unwrap().as_str(),
            "10.0.0.1:1234"
        );
    }

    #[test]
    fn bad_request_envelopes_are_described() {
        assert!(
            decode_request(b"\x01")
                .unwrap_err()
                .starts_with("malformed HTTP request envelope")
        );
        let bad_method = HttpRequest {
            method: "G T",
            uri: "/",
            request_id: "",
            remote_addr: "",
            headers: vec![],
            body: b"",
        }
        .encode();
        assert_eq!(
            decode_request(&bad_method).unwrap_err(),
            r#"invalid HTTP method "G T""#
        );
    }

    #[test]
    fn responses_keep_repeated_headers() {
        let response = Response::builder()
            .status(418)
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .body(b"tea".to_vec())
            .unwrap();
        let bytes = encode_response(&response);
        let wire = HttpResponse::decode(&bytes).unwrap();
        assert_eq!(wire.status, 418);
        assert_eq!(wire.headers.len(), 2);
        assert_eq!(wire.headers[1].value, b"b=2");
        assert_eq!(wire.body, b"tea");
    }
}
