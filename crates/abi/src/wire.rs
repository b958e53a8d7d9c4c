//! The binary envelopes that carry events and results across the boundary.
//!
//! Every integer is little-endian. A *field* is a `u32` length followed by
//! that many bytes. The last element of an envelope (a body, an input) is
//! not length-prefixed: it is simply the rest of the buffer, so the guest
//! can hand it on without a copy. Decoding never panics and never allocates
//! more than the input can justify: counts are checked against the bytes
//! that remain before anything is reserved.

use std::fmt;

mod mqtt;
mod state;

pub use mqtt::{MqttMessage, MqttOutput, MqttPublish};
pub use state::{KeyPage, SqlResult, SqlValue, decode_sql_params, encode_sql_params};

/// Why an envelope could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The buffer ended inside the named element.
    Truncated(&'static str),
    /// The named text field is not UTF-8.
    NotUtf8(&'static str),
    /// The header count is larger than the remaining bytes can hold.
    TooManyHeaders(u32),
    /// The HTTP status code is outside 100..=999.
    BadStatus(u16),
    /// The WebSocket or TCP event type is not one of the ABI's.
    BadEventType(u8),
    /// A SQL value's tag is not one of the ABI's.
    BadValueTag(u8),
    /// Bytes follow the last element of the named envelope.
    Trailing(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated(what) => write!(f, "envelope truncated in {what}"),
            Self::NotUtf8(what) => write!(f, "{what} is not valid UTF-8"),
            Self::TooManyHeaders(n) => write!(f, "header count {n} exceeds the envelope size"),
            Self::BadStatus(s) => write!(f, "HTTP status {s} is out of range"),
            Self::BadEventType(t) => write!(f, "event type {t} is unknown"),
            Self::BadValueTag(t) => write!(f, "SQL value tag {t} is unknown"),
            Self::Trailing(what) => write!(f, "bytes after the end of the {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// One HTTP header; names and values are bytes because HTTP allows
/// non-UTF-8 values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Header name (lower-case when it comes from the host).
    pub name: &'a [u8],
    /// Header value.
    pub value: &'a [u8],
}

/// An HTTP request, event kind [`EventKind::Http`](crate::EventKind::Http).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest<'a> {
    /// Method, e.g. `GET`.
    pub method: &'a str,
    /// Path and query exactly as received, e.g. `/hello/x?a=1`.
    pub uri: &'a str,
    /// The gateway's request id (also in the `x-request-id` header).
    pub request_id: &'a str,
    /// The client's address, `ip:port`.
    pub remote_addr: &'a str,
    /// Request headers in arrival order.
    pub headers: Vec<Header<'a>>,
    /// The request body.
    pub body: &'a [u8],
}

/// An HTTP response, the output of an [`HttpRequest`] event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse<'a> {
    /// Status code, 100..=999.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<Header<'a>>,
    /// The response body.
    pub body: &'a [u8],
}

/// A call of a named byte function, event kind
/// [`EventKind::Call`](crate::EventKind::Call). The output is the raw result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call<'a> {
    /// The function name as registered by the guest.
    pub function: &'a str,
    /// The input bytes.
    pub input: &'a [u8],
}

/// What happened on a WebSocket connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum WsEventType {
    /// A client asks to connect: the upgrade request, before the handshake
    /// completes. The guest may refuse it.
    Open = 1,
    /// A text message (UTF-8).
    Text = 2,
    /// A binary message.
    Binary = 3,
    /// The connection closed; `data` is the close reason.
    Close = 4,
}

impl WsEventType {
    /// Decodes a raw type, `None` for values outside the ABI.
    pub fn from_raw(raw: u8) -> Option<Self> {
        match raw {
            1 => Some(Self::Open),
            2 => Some(Self::Text),
            3 => Some(Self::Binary),
            4 => Some(Self::Close),
            _ => None,
        }
    }
}

/// A WebSocket event, event kind
/// [`EventKind::WebSocket`](crate::EventKind::WebSocket). The output of an
/// `Open`, `Text` or `Binary` event, when not empty, is sent to the
/// connection: as a text message for `Open` and `Text`, binary for `Binary`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsEvent<'a> {
    /// What happened.
    pub event: WsEventType,
    /// The connection, unique within the gateway process and never 0.
    pub connection: u64,
    /// `Close`: the peer's close code (1005 when it sent none, 1006 when the
    /// connection dropped without a close frame); 0 otherwise.
    pub close_code: u16,
    /// Path and query of the upgrade request.
    pub uri: &'a str,
    /// The client's address, `ip:port`.
    pub remote_addr: &'a str,
    /// The id of this event (the upgrade request's id for `Open`).
    pub request_id: &'a str,
    /// `Open`: the upgrade request's headers; empty for other events.
    pub headers: Vec<Header<'a>>,
    /// The message (`Text`, `Binary`), the close reason (`Close`), or
    /// nothing (`Open`).
    pub data: &'a [u8],
}

impl<'a> WsEvent<'a> {
    /// Encodes the event.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            1 + 8
                + 2
                + 3 * 4
                + self.uri.len()
                + self.remote_addr.len()
                + self.request_id.len()
                + headers_len(&self.headers)
                + self.data.len(),
        );
        out.push(self.event as u8);
        out.extend_from_slice(&self.connection.to_le_bytes());
        out.extend_from_slice(&self.close_code.to_le_bytes());
        put_field(&mut out, self.uri.as_bytes());
        put_field(&mut out, self.remote_addr.as_bytes());
        put_field(&mut out, self.request_id.as_bytes());
        put_headers(&mut out, &self.headers);
        out.extend_from_slice(self.data);
        out
    }

    /// Decodes an event.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        let raw = r.take(1, "event type")?[0];
        let event = WsEventType::from_raw(raw).ok_or(DecodeError::BadEventType(raw))?;
        Ok(Self {
            event,
            connection: r.u64("connection")?,
            close_code: r.u16("close code")?,
            uri: r.text("uri")?,
            remote_addr: r.text("remote address")?,
            request_id: r.text("request id")?,
            headers: r.headers()?,
            data: r.0,
        })
    }
}

/// What happened on a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpEventType {
    /// A client connected.
    Open = 1,
    /// A complete frame arrived.
    Frame = 2,
    /// The connection closed.
    Close = 3,
}

impl TcpEventType {
    /// Decodes a raw type, `None` for values outside the ABI.
    pub fn from_raw(raw: u8) -> Option<Self> {
        match raw {
            1 => Some(Self::Open),
            2 => Some(Self::Frame),
            3 => Some(Self::Close),
            _ => None,
        }
    }
}

/// A TCP stream event, event kind [`EventKind::Tcp`](crate::EventKind::Tcp).
/// The output of an `Open` or `Frame` event, when not empty, is written
/// back to the connection as one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpEvent<'a> {
    /// What happened.
    pub event: TcpEventType,
    /// The connection, unique within the gateway process and never 0.
    pub connection: u64,
    /// The listener's name (`[tcp.NAME]` in the gateway's config).
    pub listener: &'a str,
    /// The client's address, `ip:port`.
    pub remote_addr: &'a str,
    /// The id of this event.
    pub request_id: &'a str,
    /// `Frame`: the frame (see the listener's framing); otherwise empty.
    pub data: &'a [u8],
}

impl<'a> TcpEvent<'a> {
    /// Encodes the event.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            1 + 8
                + 3 * 4
                + self.listener.len()
                + self.remote_addr.len()
                + self.request_id.len()
                + self.data.len(),
        );
        out.push(self.event as u8);
        out.extend_from_slice(&self.connection.to_le_bytes());
        put_field(&mut out, self.listener.as_bytes());
        put_field(&mut out, self.remote_addr.as_bytes());
        put_field(&mut out, self.request_id.as_bytes());
        out.extend_from_slice(self.data);
        out
    }

    /// Decodes an event.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        let raw = r.take(1, "event type")?[0];
        let event = TcpEventType::from_raw(raw).ok_or(DecodeError::BadEventType(raw))?;
        Ok(Self {
            event,
            connection: r.u64("connection")?,
            listener: r.text("listener")?,
            remote_addr: r.text("remote address")?,
            request_id: r.text("request id")?,
            data: r.0,
        })
    }
}

/// A timer run, event kind [`EventKind::Timer`](crate::EventKind::Timer).
/// The output is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerEvent<'a> {
    /// The timer's name (`[timers.NAME]` in the gateway's config).
    pub timer: &'a str,
    /// When this run was due, in milliseconds since the Unix epoch (before
    /// jitter).
    pub scheduled_unix_ms: u64,
    /// 1 for the timer's first run since the gateway started, then 2, 3, ...
    pub run: u64,
    /// Runs skipped since the previous one because it was still running.
    pub skipped: u32,
    /// The timer's payload, from the config.
    pub payload: &'a [u8],
}

impl<'a> TimerEvent<'a> {
    /// Encodes the event.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.timer.len() + 8 + 8 + 4 + self.payload.len());
        put_field(&mut out, self.timer.as_bytes());
        out.extend_from_slice(&self.scheduled_unix_ms.to_le_bytes());
        out.extend_from_slice(&self.run.to_le_bytes());
        out.extend_from_slice(&self.skipped.to_le_bytes());
        out.extend_from_slice(self.payload);
        out
    }

    /// Decodes an event.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        Ok(Self {
            timer: r.text("timer name")?,
            scheduled_unix_ms: r.u64("scheduled time")?,
            run: r.u64("run number")?,
            skipped: r.u32("skipped runs")?,
            payload: r.0,
        })
    }
}

impl<'a> HttpRequest<'a> {
    /// Encodes the request.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// The exact length of [`encode`](Self::encode)'s output.
    pub fn encoded_len(&self) -> usize {
        4 * 4
            + self.method.len()
            + self.uri.len()
            + self.request_id.len()
            + self.remote_addr.len()
            + headers_len(&self.headers)
            + self.body.len()
    }

    /// Appends the encoded request to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_field(out, self.method.as_bytes());
        put_field(out, self.uri.as_bytes());
        put_field(out, self.request_id.as_bytes());
        put_field(out, self.remote_addr.as_bytes());
        put_headers(out, &self.headers);
        out.extend_from_slice(self.body);
    }

    /// Decodes a request.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        Ok(Self {
            method: r.text("method")?,
            uri: r.text("uri")?,
            request_id: r.text("request id")?,
            remote_addr: r.text("remote address")?,
            headers: r.headers()?,
            body: r.0,
        })
    }
}

impl<'a> HttpResponse<'a> {
    /// Encodes the response.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + headers_len(&self.headers) + self.body.len());
        out.extend_from_slice(&self.status.to_le_bytes());
        put_headers(&mut out, &self.headers);
        out.extend_from_slice(self.body);
        out
    }

    /// Decodes a response.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        let status = r.u16("status")?;
        if !(100..=999).contains(&status) {
            return Err(DecodeError::BadStatus(status));
        }
        Ok(Self {
            status,
            headers: r.headers()?,
            body: r.0,
        })
    }
}

impl<'a> Call<'a> {
    /// Encodes the call.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.function.len() + self.input.len());
        put_field(&mut out, self.function.as_bytes());
        out.extend_from_slice(self.input);
        out
    }

    /// Decodes a call.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        Ok(Self {
            function: r.text("function name")?,
            input: r.0,
        })
    }
}

fn headers_len(headers: &[Header<'_>]) -> usize {
    4 + headers
        .iter()
        .map(|h| 8 + h.name.len() + h.value.len())
        .sum::<usize>()
}

/// Appends a length-prefixed field.
///
/// # Panics
/// If `bytes` is 4 GiB or longer, which no envelope can carry.
pub fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("envelope field larger than 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_headers(out: &mut Vec<u8>, headers: &[Header<'_>]) {
    let count = u32::try_from(headers.len()).expect("more than 4 billion headers");
    out.extend_from_slice(&count.to_le_bytes());
    for h in headers {
        put_field(out, h.name);
        put_field(out, h.value);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn field(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(what)?;
        self.take(len as usize, what)
    }

    fn text(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.field(what)?).map_err(|_| DecodeError::NotUtf8(what))
    }

    /// A `u32` count of elements that take at least `min_bytes` each,
    /// refused when the remaining bytes cannot hold that many.
    fn count(&mut self, min_bytes: usize, what: &'static str) -> Result<usize, DecodeError> {
        let count = self.u32(what)?;
        if count as usize > self.0.len() / min_bytes {
            return Err(DecodeError::TooManyHeaders(count));
        }
        Ok(count as usize)
    }

    /// Refuses bytes after the last element.
    fn end(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(what))
        }
    }

    fn headers(&mut self) -> Result<Vec<Header<'a>>, DecodeError> {
        let count = self.u32("header count")?;
        // Each header needs at least two length prefixes; refuse counts the
        // remaining bytes cannot hold before reserving anything.
        if count as usize > self.0.len() / 8 {
            return Err(DecodeError::TooManyHeaders(count));
        }
        let mut headers = Vec::with_capacity(count as usize);
        for _ in 0..count {
            headers.push(Header {
                name: self.field("header name")?,
                value: self.field("header value")?,
            });
        }
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn response_round_trips() {
        let response = HttpResponse {
            status: 201,
            headers: vec![Header {
                name: b"content-type",
                value: b"application/json",
            }],
            body: b"{}",
        };
        assert_eq!(HttpResponse::decode(&response.encode()).unwrap(), response);
    }

    #[test]
    fn encoded_len_is_exact() {
        let request = HttpRequest {
            method: "POST",
            uri: "/a?b",
            request_id: "id",
            remote_addr: "1.2.3.4:5",
            headers: vec![Header {
                name: b"x",
                value: b"yz",
            }],
            body: b"body",
        };
        assert_eq!(request.encode().len(), request.encoded_len());
    }

    #[test]
    fn hostile_header_count_is_refused_without_allocating() {
        let mut bytes = 200u16.to_le_bytes().to_vec();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            HttpResponse::decode(&bytes),
            Err(DecodeError::TooManyHeaders(u32::MAX))
        );
    }

    #[test]
    fn unknown_ws_event_types_are_errors() {
        assert_eq!(WsEvent::decode(&[9]), Err(DecodeError::BadEventType(9)));
        assert_eq!(
            WsEvent::decode(&[]),
            Err(DecodeError::Truncated("event type"))
        );
    }

    #[test]
    fn bad_status_and_truncation_are_errors() {
        assert_eq!(
            HttpResponse::decode(&42u16.to_le_bytes()),
            Err(DecodeError::BadStatus(42))
        );
        assert_eq!(
            HttpResponse::decode(&[200]),
            Err(DecodeError::Truncated("status"))
        );
        assert_eq!(
            Call::decode(&[5, 0, 0, 0, b'a']),
            Err(DecodeError::Truncated("function name"))
        );
        assert_eq!(
            Call::decode(&[1, 0, 0, 0, 0xff]),
            Err(DecodeError::NotUtf8("function name"))
        );
    }

    fn header() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
        (
            proptest::collection::vec(any::<u8>(), 0..16),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
    }

    proptest! {
        // The host decodes guest-written responses: hostile bytes must give
        // an error, never a panic.
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = HttpResponse::decode(&bytes);
            let _ = HttpRequest::decode(&bytes);
            let _ = Call::decode(&bytes);
            let _ = WsEvent::decode(&bytes);
            let _ = TimerEvent::decode(&bytes);
            let _ = TcpEvent::decode(&bytes);
        }

        #[test]
        fn tcp_events_round_trip(
            raw in 1u8..=3,
            connection in 1u64..,
            listener in "[a-z0-9_-]{1,20}",
            data in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            let event = TcpEvent {
                event: TcpEventType::from_raw(raw).unwrap(),
                connection,
                listener: &listener,
                remote_addr: "127.0.0.1:502",
                request_id: "r-1",
                data: &data,
            };
            let encoded = event.encode();
            prop_assert_eq!(TcpEvent::decode(&encoded).unwrap(), event);
        }

        #[test]
        fn timer_events_round_trip(
            timer in "[a-z0-9_-]{1,20}",
            scheduled_unix_ms in any::<u64>(),
            run in 1u64..,
            skipped in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let event = TimerEvent { timer: &timer, scheduled_unix_ms, run, skipped, payload: &payload };
            let encoded = event.encode();
            prop_assert_eq!(TimerEvent::decode(&encoded).unwrap(), event);
        }

        #[test]
        fn ws_events_round_trip(
            raw in 1u8..=4,
            connection in 1u64..,
            close_code in any::<u16>(),
            uri in "/[ -~]{0,40}",
            headers in proptest::collection::vec(header(), 0..4),
            data in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let event = WsEvent {
                event: WsEventType::from_raw(raw).unwrap(),
                connection,
                close_code,
                uri: &uri,
                remote_addr: "127.0.0.1:1",
                request_id: "r-1",
                headers: headers.iter().map(|(n, v)| Header { name: n, value: v }).collect(),
                data: &data,
            };
            let encoded = event.encode();
            prop_assert_eq!(WsEvent::decode(&encoded).unwrap(), event);
        }

        #[test]
        fn request_round_trips(
            method in "[A-Z]{1,8}",
            uri in "/[ -~]{0,40}",
            id in "[a-z0-9-]{0,20}",
            headers in proptest::collection::vec(header(), 0..8),
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let request = HttpRequest {
                method: &method,
                uri: &uri,
                request_id: &id,
                remote_addr: "127.0.0.1:1",
                headers: headers.iter().map(|(n, v)| Header { name: n, value: v }).collect(),
                body: &body,
            };
            let encoded = request.encode();
            prop_assert_eq!(HttpRequest::decode(&encoded).unwrap(), request);
        }

        #[test]
        fn truncated_responses_are_errors_or_shorter_bodies(
            status in 100u16..=999,
            headers in proptest::collection::vec(header(), 0..4),
            body in proptest::collection::vec(any::<u8>(), 0..64),
            cut in 0usize..400,
        ) {
            let response = HttpResponse {
                status,
                headers: headers.iter().map(|(n, v)| Header { name: n, value: v }).collect(),
                body: &body,
            };
            let bytes = response.encode();
            let cut = cut.min(bytes.len());
            if let Ok(decoded) = HttpResponse::decode(&bytes[..cut]) {
                prop_assert_eq!(decoded.status, status);
                prop_assert_eq!(decoded.headers.len(), headers.len());
            }
        }
    }
}
