//! A mock host for native tests (not built for wasm32).
//!
//! [`MockHost`] plays the gateway's part: it encodes events into the same
//! envelopes, runs them through the same dispatch code as the wasm exports,
//! and serves the host functions (`log`, `output_write`, `config_get`,
//! `staged_read`, the `ws_*` functions and `mqtt_publish`) from its own
//! state. So
//! `cargo test` exercises a module's handlers end to end without a wasm
//! runtime.
//!
//! For WebSocket handlers it also holds the connections, as the gateway
//! does: [`MockHost::ws_open`] connects a client, [`MockHost::ws_text`],
//! [`MockHost::ws_binary`] and [`MockHost::ws_close`] deliver its events,
//! and what the guest did is recorded: what each connection was sent
//! ([`MockHost::ws_received`]), its rooms, the guest's closes and every
//! broadcast. [`MockHost::timer`] delivers a timer run.
//!
//! For TCP handlers it holds the client end of each connection:
//! [`MockHost::tcp_open`] connects a client to a listener,
//! [`MockHost::tcp_frame`] delivers one whole frame (as the listener's
//! framing cuts it from the stream) and returns the reply,
//! [`MockHost::tcp_close`] delivers the close event (a failed event
//! delivers it too, as the gateway closes the connection then), and
//! [`MockHost::tcp_received`] lists what the client was written.
//!
//! For MQTT handlers, [`MockHost::mqtt`] delivers a message as a trigger
//! does and returns the messages the handler returned for the gateway to
//! publish. The mock also plays the gateway's MQTT client for
//! [`mqtt::publish`](crate::mqtt::publish): it checks the topic, the QoS
//! and the module's `mqtt_publish` grant ([`MockHost::with_mqtt_grant`];
//! none by default, which denies every topic, as the gateway does) and
//! records what it accepted ([`MockHost::mqtt_published`]).
//!
//! For the state capabilities it is the gateway's stores and devices, and
//! denies everything until a test grants it, as the gateway does
//! ([`MockHost::with_kv_grant`], [`with_sqlite_grant`](MockHost::with_sqlite_grant),
//! [`with_http_grant`](MockHost::with_http_grant),
//! [`with_gpio_in_grant`](MockHost::with_gpio_in_grant),
//! [`with_gpio_out_grant`](MockHost::with_gpio_out_grant)). Its KV stores
//! are real, with TTLs on a virtual clock ([`MockHost::advance_clock`]);
//! SQL statements and outbound requests go to handlers the test installs
//! ([`MockHost::with_sql_handler`], [`MockHost::with_fetch_handler`]), as
//! the mock runs no SQLite and reaches no network; GPIO pins exist once
//! set ([`MockHost::with_gpio_pin`]) and record what the guest wrote.
//!
//! ```
//! use shanhai_sdk::Handlers;
//! use shanhai_sdk::http::{Request, Response};
//! use shanhai_sdk::mock::MockHost;
//!
//! fn handlers() -> Handlers {
//!     Handlers::new().http(|_req: Request<Vec<u8>>| {
//!         let who = shanhai_sdk::config("who").unwrap().unwrap_or_default();
//!         shanhai_sdk::info!("greeting {who}");
//!         Response::new(format!("hi {who}"))
//!     })
//! }
//!
//! let mut host = MockHost::new(handlers()).with_config("who", "edge");
//! let response = host.http(Request::get("/").body("").unwrap()).unwrap();
//! assert_eq!(response.body(), b"hi edge");
//! assert_eq!(host.logs()[0].message, "greeting edge");
//! ```
//!
//! A WebSocket chat:
//!
//! ```
//! use shanhai_sdk::http::Request;
//! use shanhai_sdk::mock::{MockHost, SentMessage};
//! use shanhai_sdk::{Handlers, WebSocketHandler, WsConn, WsMessage};
//!
//! let chat = WebSocketHandler::new()
//!     .on_open(|conn: &WsConn| conn.join("lobby"))
//!     .on_message(|conn: &WsConn, message: WsMessage<'_>| {
//!         shanhai_sdk::broadcast("lobby", message, Some(conn.id())).map(|n| format!("sent to {n}"))
//!     });
//! let mut host = MockHost::new(Handlers::new().websocket(chat));
//! let alice = host.ws_open(Request::get("/chat").body(()).unwrap()).unwrap();
//! let bob = host.ws_open(Request::get("/chat").body(()).unwrap()).unwrap();
//! assert_eq!(host.ws_text(alice, "hi").unwrap(), b"sent to 1");
//! assert_eq!(host.ws_received(bob), [SentMessage::Text("hi".into())]);
//! assert_eq!(host.room_members("lobby"), [alice, bob]);
//! host.ws_close(bob, 1000, "bye").unwrap();
//! assert_eq!(host.room_members("lobby"), [alice]);
//! ```
//!
//! A timer:
//!
//! ```
//! use shanhai_sdk::mock::MockHost;
//! use shanhai_sdk::{EventStatus, Handlers, Timer};
//!
//! let cleanup = |timer: &Timer| match timer.payload() {
//!     b"" => Err("nothing to clean"),
//!     dir => {
//!         shanhai_sdk::info!("run {}: cleaning {}", timer.run(), String::from_utf8_lossy(dir));
//!         Ok(())
//!     }
//! };
//! let mut host = MockHost::new(Handlers::new().timer(cleanup));
//! host.timer(&Timer::new("cleanup").with_payload("tmp/")).unwrap();
//! assert_eq!(host.logs()[0].message, "run 1: cleaning tmp/");
//! let failure = host.timer(&Timer::new("cleanup").with_run(2)).unwrap_err();
//! assert_eq!((failure.status, failure.message.as_str()), (EventStatus::Error, "nothing to clean"));
//! ```
//!
//! A TCP line service:
//!
//! ```
//! use shanhai_sdk::mock::MockHost;
//! use shanhai_sdk::{EventStatus, Handlers, TcpConn, TcpHandler};
//!
//! let upper = TcpHandler::new()
//!     .on_open(|conn: &TcpConn| format!("hello {}", conn.remote_addr()))
//!     .on_frame(|_: &TcpConn, frame: &[u8]| match frame {
//!         b"quit" => Err("bye"),
//!         line => Ok(line.to_ascii_uppercase()),
//!     });
//! let mut host = MockHost::new(Handlers::new().tcp(upper));
//! let conn = host.tcp_open("lines", "192.0.2.7:4000").unwrap();
//! assert_eq!(host.tcp_frame(conn, b"ping").unwrap(), b"PING");
//! let failure = host.tcp_frame(conn, b"quit").unwrap_err();
//! assert_eq!((failure.status, failure.message.as_str()), (EventStatus::Error, "bye"));
//! assert!(!host.tcp_is_open(conn)); // closed after the error, and its close event delivered
//! assert_eq!(host.tcp_received(conn), [&b"hello 192.0.2.7:4000"[..], b"PING"]);
//! ```
//!
//! An MQTT bridge:
//!
//! ```
//! use shanhai_sdk::mock::MockHost;
//! use shanhai_sdk::mqtt::{self, Message, Publish};
//! use shanhai_sdk::{Handlers, HostError};
//!
//! let bridge = |message: &Message| -> Result<Publish, shanhai_sdk::Error> {
//!     mqtt::publish("audit/raw", message.payload(), 1, false)?;
//!     Ok(Publish::to_output_topic(message.payload().to_ascii_uppercase()))
//! };
//! let mut host = MockHost::new(Handlers::new().mqtt(bridge));
//! let refused = host.mqtt(&Message::new("in/1").with_payload("hi")).unwrap_err();
//! assert_eq!(
//!     refused.message,
//!     "mqtt_publish failed: denied: no mqtt_publish grant matches topic `audit/raw`"
//! );
//! let mut host = MockHost::new(Handlers::new().mqtt(bridge)).with_mqtt_grant("audit/#");
//! let out = host.mqtt(&Message::new("in/1").with_payload("hi")).unwrap();
//! assert_eq!(out, [Publish::to_output_topic("HI")]);
//! assert_eq!(host.mqtt_published(), [Publish::new("audit/raw", "hi").with_qos(1)]);
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use shanhai_abi::wire::{
    Call, Header, HttpRequest, HttpResponse, MqttOutput, TcpEvent, TcpEventType, WsEvent,
    WsEventType,
};
use shanhai_abi::{EventKind, EventStatus, LogLevel};

use crate::dispatch::dispatch;
use crate::mqtt::{Message, Publish};
use crate::{Handlers, HostError, RemoteAddr, RequestId, Timer};

pub(crate) mod state;

pub use state::{HostFailure, SqlReply};

/// The remote address [`MockHost::http`] reports when the request carries
/// no [`RemoteAddr`] extension.
pub const DEFAULT_REMOTE_ADDR: &str = "127.0.0.1:49152";

/// One line a guest logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its level.
    pub level: LogLevel,
    /// Its text.
    pub message: String,
}

/// The raw result of an event: the status `shanhai_event` returned and the
/// output the guest wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The event status.
    pub status: EventStatus,
    /// Everything the guest wrote with `output_write`.
    pub output: Vec<u8>,
}

/// An event that did not end [`Ok`](EventStatus::Ok).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The status the guest returned.
    pub status: EventStatus,
    /// The guest's output as text (the error message for
    /// [`Error`](EventStatus::Error)).
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event ended {:?}: {}", self.status, self.message)
    }
}

impl std::error::Error for Failure {}

/// A message the guest sent to a connection (with `ws_send`,
/// `ws_broadcast`, or as an event's reply).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SentMessage {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl SentMessage {
    /// The message as the SDK's borrowed [`WsMessage`](crate::WsMessage).
    pub fn as_ws_message(&self) -> crate::WsMessage<'_> {
        match self {
            Self::Text(text) => crate::WsMessage::Text(text),
            Self::Binary(data) => crate::WsMessage::Binary(data),
        }
    }
}

/// One `ws_broadcast` the host accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// The room it went to.
    pub room: String,
    /// What was sent.
    pub message: SentMessage,
    /// The connection left out.
    pub except: Option<u64>,
    /// What the call returned: how many connections it was queued for.
    pub recipients: usize,
}

/// The host's side of one WebSocket connection.
#[derive(Debug, Default)]
struct Connection {
    /// The upgrade request's path and query, sent with every event.
    uri: String,
    /// The client's address, sent with every event.
    remote_addr: String,
    /// The connection is over: every call on it answers `not_found`.
    ended: bool,
    /// The guest's `ws_close`; nothing more can be sent after it.
    closed_by_guest: Option<(u16, String)>,
    rooms: BTreeSet<String>,
    received: Vec<SentMessage>,
}

impl Connection {
    fn can_send(&self) -> bool {
        !self.ended && self.closed_by_guest.is_none()
    }
}

/// The gateway's WebSocket hub, for one module.
#[derive(Debug, Default)]
struct WsHub {
    connections: BTreeMap<u64, Connection>,
    broadcasts: Vec<Broadcast>,
    max_message_bytes: Option<usize>,
}

impl WsHub {
    /// A connection the guest may act on.
    fn live(&mut self, id: u64) -> Result<&mut Connection, HostError> {
        self.connections
            .get_mut(&id)
            .filter(|c| !c.ended)
            .ok_or(HostError::NotFound)
    }

    /// Validates a `ws_send` or `ws_broadcast` message as the host does.
    fn message(&self, kind: i32, data: &[u8]) -> Result<SentMessage, HostError> {
        if self.max_message_bytes.is_some_and(|max| data.len() > max) {
            return Err(HostError::TooLarge);
        }
        match WsEventType::from_raw(u8::try_from(kind).unwrap_or(0)) {
            Some(WsEventType::Text) => std::str::from_utf8(data)
                .map(|text| SentMessage::Text(text.to_owned()))
                .map_err(|_| HostError::InvalidArgument),
            Some(WsEventType::Binary) => Ok(SentMessage::Binary(data.to_vec())),
            _ => Err(HostError::InvalidArgument),
        }
    }
}

/// Rooms are UTF-8 names of 1 to 256 bytes (`&str` is UTF-8 already);
/// `ws_join` refuses others, `ws_leave` and `ws_broadcast` treat them as
/// rooms nobody is in, as the gateway does.
fn check_room(room: &str) -> Result<(), HostError> {
    if (1..=256).contains(&room.len()) {
        Ok(())
    } else {
        Err(HostError::InvalidArgument)
    }
}

/// The client end of one TCP connection. No host function acts on TCP
/// connections, so only the [`MockHost`] sees them.
#[derive(Debug)]
struct TcpClient {
    listener: String,
    remote_addr: String,
    /// The close event has been delivered.
    ended: bool,
    received: Vec<Vec<u8>>,
}

/// The gateway's MQTT client, as `mqtt_publish` sees it for one module.
#[derive(Debug, Default)]
struct MqttClient {
    /// The module's `mqtt_publish` grant: topic filters.
    grants: Vec<String>,
    /// What a publication that passes the checks fails with, if anything.
    failure: Option<(HostError, String)>,
    max_payload_bytes: Option<usize>,
    published: Vec<Publish>,
}

/// What the host functions see during an event.
#[derive(Debug, Default)]
struct HostState {
    config: BTreeMap<String, String>,
    max_response_bytes: Option<usize>,
    staged: Option<Vec<u8>>,
    output: Vec<u8>,
    logs: Vec<LogRecord>,
    ws: WsHub,
    mqtt: MqttClient,
    stores: state::StateHost,
}

thread_local! {
    // The state of the event running on this thread; tests run on their
    // own threads, so they never see each other's.
    static STATE: RefCell<HostState> = RefCell::new(HostState::default());
}

/// A native stand-in for the Shanhai host, holding a module's [`Handlers`],
/// its config variables and the lines it logged.
#[derive(Debug)]
pub struct MockHost {
    handlers: Handlers,
    state: HostState,
    tcp: BTreeMap<u64, TcpClient>,
    events: u64,
    /// The last connection id given out, WebSocket or TCP: ids are unique
    /// across both, as in the gateway.
    connections: u64,
}

impl MockHost {
    /// A host running `handlers`, with no config variables and no output
    /// limit.
    pub fn new(handlers: Handlers) -> Self {
        Self {
            handlers,
            state: HostState::default(),
            tcp: BTreeMap::new(),
            events: 0,
            connections: 0,
        }
    }

    /// Sets the config variable `key` (what the module's `[config]` table
    /// holds on a real gateway).
    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_config(key, value);
        self
    }

    /// Sets or replaces the config variable `key`.
    pub fn set_config(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.state.config.insert(key.into(), value.into());
    }

    /// Limits the output of one event to `limit` bytes, like the module's
    /// `max_response_bytes`; a larger `output_write` fails with
    /// [`HostError::TooLarge`].
    pub fn with_max_response_bytes(mut self, limit: usize) -> Self {
        self.state.max_response_bytes = Some(limit);
        self
    }

    /// Every line the guest has logged so far, oldest first.
    pub fn logs(&self) -> &[LogRecord] {
        &self.state.logs
    }

    /// Delivers one raw event, as the host's `shanhai_event(kind, ptr,
    /// len)` call would.
    pub fn event(&mut self, kind: i32, envelope: &[u8]) -> Outcome {
        self.events += 1;
        self.state.output.clear();
        self.state.staged = None;
        let status = {
            let _active = ActiveEvent::enter(&mut self.state);
            dispatch(&self.handlers, kind, envelope)
        };
        let output = std::mem::take(&mut self.state.output);
        Outcome { status, output }
    }

    /// Sends an HTTP request through the guest's HTTP handler.
    ///
    /// The request's [`RequestId`] and [`RemoteAddr`] extensions are passed
    /// on when present; otherwise the id is `mock-N` (N counting events)
    /// and the address [`DEFAULT_REMOTE_ADDR`]. Only the path and query of
    /// the URI travel, as on the real gateway.
    ///
    /// # Panics
    /// If the guest's output is not a well-formed HttpResponse (an SDK bug).
    pub fn http<B: Into<Vec<u8>>>(
        &mut self,
        request: Request<B>,
    ) -> Result<Response<Vec<u8>>, Failure> {
        let (parts, body) = request.into_parts();
        let body = body.into();
        let request_id = self.request_id(&parts);
        let envelope = HttpRequest {
            method: parts.method.as_str(),
            uri: path_and_query(&parts),
            request_id: &request_id,
            remote_addr: remote_addr(&parts),
            headers: wire_headers(&parts),
            body: &body,
        }
        .encode();
        let outcome = self.event(EventKind::Http as i32, &envelope);
        let output = outcome.into_result()?;
        Ok(decode_response(&output))
    }

    /// Calls the guest's byte function `function` with `input`.
    pub fn call(&mut self, function: &str, input: &[u8]) -> Result<Vec<u8>, Failure> {
        let envelope = Call { function, input }.encode();
        self.event(EventKind::Call as i32, &envelope).into_result()
    }

    /// Delivers a run of `timer` to the guest's timer handler, as the
    /// gateway does when the timer is due: `Ok` when the handler succeeded,
    /// else the [`Failure`] ([`Error`](EventStatus::Error) with the
    /// handler's message, or [`Unsupported`](EventStatus::Unsupported)
    /// without a timer handler). Build the run with [`Timer::new`] and its
    /// `with_` methods.
    pub fn timer(&mut self, timer: &Timer) -> Result<(), Failure> {
        self.event(EventKind::Timer as i32, &timer.encode())
            .into_result()
            .map(drop)
    }

    /// Delivers `message` to the guest's MQTT handler, as a trigger of the
    /// gateway does with a message that matches its filter, and returns
    /// the messages the handler returned for the gateway to publish (a
    /// message with an empty topic goes to the trigger's `output_topic`);
    /// else the [`Failure`] ([`Error`](EventStatus::Error) with the
    /// handler's message, or [`Unsupported`](EventStatus::Unsupported)
    /// without an MQTT handler). A message without a request id gets
    /// `mock-N`. Build the message with [`Message::new`] and its `with_`
    /// methods.
    ///
    /// # Panics
    /// If the guest's output is not a well-formed MqttOutput (an SDK bug).
    pub fn mqtt(&mut self, message: &Message) -> Result<Vec<Publish>, Failure> {
        let envelope = message.encode(&format!("mock-{}", self.events + 1));
        let output = self
            .event(EventKind::Mqtt as i32, &envelope)
            .into_result()?;
        let output = MqttOutput::decode(&output)
            .unwrap_or_else(|e| panic!("the guest wrote a malformed MqttOutput: {e}"));
        Ok(output.messages.iter().map(Publish::from_wire).collect())
    }

    /// Adds `filter` (a topic filter with the wildcards `+` and `#`) to
    /// the module's `mqtt_publish` grant, as `[modules.NAME.grants]
    /// mqtt_publish = [...]` does on a real gateway. Without one,
    /// [`mqtt::publish`](crate::mqtt::publish) is denied every topic.
    pub fn with_mqtt_grant(mut self, filter: impl Into<String>) -> Self {
        self.state.mqtt.grants.push(filter.into());
        self
    }

    /// Limits the payloads [`mqtt::publish`](crate::mqtt::publish) accepts
    /// to `limit` bytes, like the gateway's `mqtt.max_payload_bytes`; a
    /// larger one fails with [`HostError::TooLarge`].
    pub fn with_max_mqtt_payload_bytes(mut self, limit: usize) -> Self {
        self.state.mqtt.max_payload_bytes = Some(limit);
        self
    }

    /// Makes every [`mqtt::publish`](crate::mqtt::publish) that passes the
    /// checks of topic, QoS and grant fail with `error` and the host's
    /// explanation `message` (none when empty), the way a gateway without
    /// an MQTT client ([`HostError::Unavailable`]) answers; `None` makes
    /// them succeed again.
    pub fn set_mqtt_failure(&mut self, failure: Option<(HostError, &str)>) {
        self.state.mqtt.failure = failure.map(|(error, message)| (error, message.to_owned()));
    }

    /// Every message the guest published with
    /// [`mqtt::publish`](crate::mqtt::publish) that the host accepted,
    /// oldest first.
    pub fn mqtt_published(&self) -> &[Publish] {
        &self.state.mqtt.published
    }

    /// Limits the messages the guest may send (`ws_send`, `ws_broadcast`)
    /// to `limit` bytes, like the gateway's `max_message_bytes`; a larger
    /// one fails with [`HostError::TooLarge`].
    pub fn with_max_message_bytes(mut self, limit: usize) -> Self {
        self.state.ws.max_message_bytes = Some(limit);
        self
    }

    /// A client asks to upgrade with `request`: delivers the open event and
    /// returns the new connection's id, or the [`Failure`] that refused it
    /// (the gateway's 403, or 404 `no_handler` for
    /// [`Unsupported`](EventStatus::Unsupported)). The guest's reply, if
    /// any, is the connection's first (text) message.
    ///
    /// The envelope is built as for [`http`](Self::http) (path and query,
    /// headers, [`RequestId`] and [`RemoteAddr`] extensions); the body is
    /// ignored. The connection exists during the open event, so the guest
    /// may already join rooms or send to it.
    pub fn ws_open<B>(&mut self, request: Request<B>) -> Result<u64, Failure> {
        let (parts, _) = request.into_parts();
        self.connections += 1;
        let id = self.connections;
        self.state.ws.connections.insert(
            id,
            Connection {
                uri: path_and_query(&parts).to_owned(),
                remote_addr: remote_addr(&parts).to_owned(),
                ..Connection::default()
            },
        );
        let request_id = self.request_id(&parts);
        let envelope = WsEvent {
            event: WsEventType::Open,
            connection: id,
            close_code: 0,
            uri: path_and_query(&parts),
            remote_addr: remote_addr(&parts),
            request_id: &request_id,
            headers: wire_headers(&parts),
            data: b"",
        }
        .encode();
        match self
            .event(EventKind::WebSocket as i32, &envelope)
            .into_result()
        {
            Ok(reply) => {
                self.deliver(id, reply, true);
                Ok(id)
            }
            Err(failure) => {
                self.end(id);
                Err(failure)
            }
        }
    }

    /// The client sends the text message `text` on connection `id`: delivers
    /// the message event and returns the guest's reply (empty for none).
    /// The reply is also queued for the client, after what the guest sent
    /// during the event, unless the guest closed the connection.
    ///
    /// # Panics
    /// If `id` is not an open connection of this host.
    pub fn ws_text(&mut self, id: u64, text: &str) -> Result<Vec<u8>, Failure> {
        self.ws_message(id, WsEventType::Text, text.as_bytes())
    }

    /// [`ws_text`](Self::ws_text) for a binary message; the reply is binary.
    ///
    /// # Panics
    /// If `id` is not an open connection of this host.
    pub fn ws_binary(&mut self, id: u64, data: &[u8]) -> Result<Vec<u8>, Failure> {
        self.ws_message(id, WsEventType::Binary, data)
    }

    /// Connection `id` ends with `code` and `reason`: it leaves its rooms,
    /// the guest's calls on it answer `not_found` from now on, and the
    /// guest gets its close event. Pass the code the client sent (1005 for
    /// none, 1006 for a dropped connection) or, after the guest closed it,
    /// the code the client echoed.
    ///
    /// # Panics
    /// If `id` is not an open connection of this host.
    pub fn ws_close(&mut self, id: u64, code: u16, reason: &str) -> Result<(), Failure> {
        self.assert_open(id);
        self.end(id);
        let envelope = self.ws_envelope(id, WsEventType::Close, code, reason.as_bytes());
        self.event(EventKind::WebSocket as i32, &envelope)
            .into_result()
            .map(drop)
    }

    /// Every message connection `id` has been sent, in the order the
    /// gateway would send them: those the guest sent during an event, then
    /// the event's reply.
    pub fn ws_received(&self, id: u64) -> &[SentMessage] {
        self.state
            .ws
            .connections
            .get(&id)
            .map_or(&[], |c| &c.received)
    }

    /// The code and reason the guest closed connection `id` with, if it
    /// did. After that the mock, like the gateway, sends the connection
    /// nothing more (no data may follow a close frame): `ws_send` and
    /// `ws_join` answer `not_found`, broadcasts skip it and an event's reply
    /// is dropped. A second `ws_close` succeeds but changes nothing: the
    /// first one wins.
    pub fn ws_closed_by_guest(&self, id: u64) -> Option<(u16, &str)> {
        let connection = self.state.ws.connections.get(&id)?;
        let (code, reason) = connection.closed_by_guest.as_ref()?;
        Some((*code, reason))
    }

    /// The rooms connection `id` is in, sorted.
    pub fn ws_rooms(&self, id: u64) -> Vec<&str> {
        self.state
            .ws
            .connections
            .get(&id)
            .map_or_else(Vec::new, |c| c.rooms.iter().map(String::as_str).collect())
    }

    /// The connections in `room`, sorted.
    pub fn room_members(&self, room: &str) -> Vec<u64> {
        self.state
            .ws
            .connections
            .iter()
            .filter(|(_, c)| c.rooms.contains(room))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Every broadcast so far, oldest first.
    pub fn broadcasts(&self) -> &[Broadcast] {
        &self.state.ws.broadcasts
    }

    /// A client connects from `remote_addr` to the TCP listener named
    /// `listener`: delivers the open event and returns the new
    /// connection's id, or the [`Failure`] that refused it
    /// ([`Unsupported`](EventStatus::Unsupported) when the module has no
    /// TCP handler). The guest's reply, if any, is the first frame the
    /// client receives. A refused connection is closed, and, as after
    /// every connection, the gateway delivers its close event; so does the
    /// mock.
    pub fn tcp_open(&mut self, listener: &str, remote_addr: &str) -> Result<u64, Failure> {
        self.connections += 1;
        let id = self.connections;
        self.tcp.insert(
            id,
            TcpClient {
                listener: listener.to_owned(),
                remote_addr: remote_addr.to_owned(),
                ended: false,
                received: Vec::new(),
            },
        );
        self.tcp_event(id, TcpEventType::Open, b"").map(|_| id)
    }

    /// The client on connection `id` sends `frame`, one whole frame as the
    /// listener's framing cuts it (with `modbus` framing, a whole ADU,
    /// header included): delivers the frame event and returns the guest's
    /// reply (empty for none), which is also what the client receives.
    ///
    /// A [`Failure`] (the handler's `Err`) makes the gateway close the
    /// connection and deliver its close event; so does the mock, and
    /// [`tcp_is_open`](Self::tcp_is_open) turns false.
    ///
    /// # Panics
    /// If `id` is not an open TCP connection of this host.
    pub fn tcp_frame(&mut self, id: u64, frame: &[u8]) -> Result<Vec<u8>, Failure> {
        assert!(self.tcp_is_open(id), "TCP connection {id} is not open");
        self.tcp_event(id, TcpEventType::Frame, frame)
    }

    /// Connection `id` ends, whichever side closed it: delivers its close
    /// event. The gateway ignores the event's outcome; the mock returns
    /// it.
    ///
    /// # Panics
    /// If `id` is not an open TCP connection of this host.
    pub fn tcp_close(&mut self, id: u64) -> Result<(), Failure> {
        assert!(self.tcp_is_open(id), "TCP connection {id} is not open");
        self.tcp_end(id).into_result().map(drop)
    }

    /// Whether TCP connection `id` is open: its close event has not been
    /// delivered (after [`tcp_close`](Self::tcp_close), or after a failed
    /// event).
    pub fn tcp_is_open(&self, id: u64) -> bool {
        self.tcp.get(&id).is_some_and(|c| !c.ended)
    }

    /// Every frame TCP connection `id` has been written, oldest first: the
    /// open event's reply, then the replies to its frames (empty replies
    /// write nothing).
    pub fn tcp_received(&self, id: u64) -> &[Vec<u8>] {
        self.tcp.get(&id).map_or(&[], |c| &c.received)
    }

    /// Delivers an open or frame event for connection `id` and keeps its
    /// reply for the client; a failure ends the connection, as the gateway
    /// does.
    fn tcp_event(&mut self, id: u64, kind: TcpEventType, data: &[u8]) -> Result<Vec<u8>, Failure> {
        let envelope = self.tcp_envelope(id, kind, data);
        let result = self.event(EventKind::Tcp as i32, &envelope).into_result();
        match &result {
            Ok(reply) if !reply.is_empty() => {
                let client = self
                    .tcp
                    .get_mut(&id)
                    .expect("connections are never removed");
                client.received.push(reply.clone());
            }
            Ok(_) => {}
            Err(_) => {
                self.tcp_end(id);
            }
        }
        result
    }

    /// Ends connection `id` and delivers its close event.
    fn tcp_end(&mut self, id: u64) -> Outcome {
        let envelope = self.tcp_envelope(id, TcpEventType::Close, b"");
        if let Some(client) = self.tcp.get_mut(&id) {
            client.ended = true;
        }
        self.event(EventKind::Tcp as i32, &envelope)
    }

    /// An event of connection `id`, with a fresh request id.
    fn tcp_envelope(&self, id: u64, kind: TcpEventType, data: &[u8]) -> Vec<u8> {
        let client = &self.tcp[&id];
        TcpEvent {
            event: kind,
            connection: id,
            listener: &client.listener,
            remote_addr: &client.remote_addr,
            request_id: &format!("mock-{}", self.events + 1),
            data,
        }
        .encode()
    }

    fn ws_message(&mut self, id: u64, kind: WsEventType, data: &[u8]) -> Result<Vec<u8>, Failure> {
        self.assert_open(id);
        let envelope = self.ws_envelope(id, kind, 0, data);
        let reply = self
            .event(EventKind::WebSocket as i32, &envelope)
            .into_result()?;
        self.deliver(id, reply.clone(), kind == WsEventType::Text);
        Ok(reply)
    }

    fn ws_envelope(&self, id: u64, kind: WsEventType, close_code: u16, data: &[u8]) -> Vec<u8> {
        let connection = &self.state.ws.connections[&id];
        WsEvent {
            event: kind,
            connection: id,
            close_code,
            uri: &connection.uri,
            remote_addr: &connection.remote_addr,
            request_id: &format!("mock-{}", self.events + 1),
            headers: Vec::new(),
            data,
        }
        .encode()
    }

    fn assert_open(&self, id: u64) {
        assert!(
            self.state.ws.connections.get(&id).is_some_and(|c| !c.ended),
            "WebSocket connection {id} is not open"
        );
    }

    /// Sends an event's reply to the client, as the gateway does.
    fn deliver(&mut self, id: u64, reply: Vec<u8>, text: bool) {
        let Some(connection) = self.state.ws.connections.get_mut(&id) else {
            return;
        };
        if reply.is_empty() || !connection.can_send() {
            return;
        }
        connection.received.push(if text {
            SentMessage::Text(String::from_utf8(reply).expect("the SDK checks text replies"))
        } else {
            SentMessage::Binary(reply)
        });
    }

    fn end(&mut self, id: u64) {
        if let Some(connection) = self.state.ws.connections.get_mut(&id) {
            connection.ended = true;
            connection.rooms.clear();
        }
    }

    /// The request's [`RequestId`], or `mock-N` for the next event.
    fn request_id(&self, parts: &Parts) -> String {
        parts
            .extensions
            .get::<RequestId>()
            .map_or_else(|| format!("mock-{}", self.events + 1), |id| id.0.clone())
    }
}

/// Only the path and query of a URI travel, as on the real gateway.
fn path_and_query(parts: &Parts) -> &str {
    parts.uri.path_and_query().map_or("/", |pq| pq.as_str())
}

fn remote_addr(parts: &Parts) -> &str {
    parts
        .extensions
        .get::<RemoteAddr>()
        .map_or(DEFAULT_REMOTE_ADDR, RemoteAddr::as_str)
}

fn wire_headers(parts: &Parts) -> Vec<Header<'_>> {
    parts
        .headers
        .iter()
        .map(|(name, value)| Header {
            name: name.as_str().as_bytes(),
            value: value.as_bytes(),
        })
        .collect()
}

impl Outcome {
    /// The output for [`Ok`](EventStatus::Ok), a [`Failure`] otherwise.
    pub fn into_result(self) -> Result<Vec<u8>, Failure> {
        match self.status {
            EventStatus::Ok => Ok(self.output),
            status => Err(Failure {
                status,
                message: String::from_utf8_lossy(&self.output).into_owned(),
            }),
        }
    }
}

fn decode_response(output: &[u8]) -> Response<Vec<u8>> {
    let wire = HttpResponse::decode(output)
        .unwrap_or_else(|e| panic!("the guest wrote a malformed HttpResponse: {e}"));
    let mut response = Response::new(wire.body.to_vec());
    *response.status_mut() = StatusCode::from_u16(wire.status).expect("status checked by decode");
    for header in &wire.headers {
        response.headers_mut().append(
            HeaderName::from_bytes(header.name).expect("the guest wrote an invalid header name"),
            HeaderValue::from_bytes(header.value).expect("the guest wrote an invalid header value"),
        );
    }
    response
}

/// Moves a [`MockHost`]'s state into the thread-local for the duration of
/// an event, and back even if a handler panics.
struct ActiveEvent<'a> {
    home: &'a mut HostState,
}

impl<'a> ActiveEvent<'a> {
    fn enter(home: &'a mut HostState) -> Self {
        STATE.set(std::mem::take(home));
        Self { home }
    }
}

impl Drop for ActiveEvent<'_> {
    fn drop(&mut self) {
        *self.home = STATE.take();
    }
}

/// The mock's host functions, called through [`crate::host`].
pub(crate) mod imports {
    use super::{Broadcast, LogRecord, STATE, check_room};
    use crate::HostError;
    use crate::mqtt::Publish;
    use shanhai_abi::LogLevel;
    use shanhai_abi::grant::{invalid_topic, topic_matches};

    pub(crate) fn log(level: LogLevel, message: &str) {
        STATE.with_borrow_mut(|state| {
            state.logs.push(LogRecord {
                level,
                message: message.to_owned(),
            });
        });
    }

    pub(crate) fn output_write(bytes: &[u8]) -> Result<(), HostError> {
        STATE.with_borrow_mut(|state| {
            let total = state.output.len() + bytes.len();
            if state.max_response_bytes.is_some_and(|limit| total > limit) {
                return Err(HostError::TooLarge);
            }
            state.output.extend_from_slice(bytes);
            Ok(())
        })
    }

    pub(crate) fn config_get(key: &str) -> Result<usize, HostError> {
        STATE.with_borrow_mut(|state| {
            let value = state.config.get(key).ok_or(HostError::NotFound)?;
            let len = value.len();
            state.staged = Some(value.clone().into_bytes());
            Ok(len)
        })
    }

    pub(crate) fn staged_read(buf: &mut [u8]) -> Result<usize, HostError> {
        STATE.with_borrow(|state| {
            let staged = state.staged.as_ref().ok_or(HostError::NothingStaged)?;
            let n = staged.len().min(buf.len());
            buf[..n].copy_from_slice(&staged[..n]);
            Ok(n)
        })
    }

    pub(crate) fn ws_send(conn: u64, kind: i32, data: &[u8]) -> Result<(), HostError> {
        STATE.with_borrow_mut(|state| {
            let message = state.ws.message(kind, data)?;
            let connection = state.ws.live(conn)?;
            if !connection.can_send() {
                return Err(HostError::NotFound);
            }
            connection.received.push(message);
            Ok(())
        })
    }

    pub(crate) fn ws_close(conn: u64, code: u16, reason: &str) -> Result<(), HostError> {
        let valid_code = matches!(code, 1000 | 1001 | 1008 | 1011 | 3000..=4999);
        if !valid_code || reason.len() > 123 {
            return Err(HostError::InvalidArgument);
        }
        STATE.with_borrow_mut(|state| {
            // As on the gateway, the first close wins.
            state
                .ws
                .live(conn)?
                .closed_by_guest
                .get_or_insert_with(|| (code, reason.to_owned()));
            Ok(())
        })
    }

    pub(crate) fn ws_join(conn: u64, room: &str) -> Result<(), HostError> {
        check_room(room)?;
        STATE.with_borrow_mut(|state| {
            let connection = state.ws.live(conn)?;
            if !connection.can_send() {
                return Err(HostError::NotFound);
            }
            connection.rooms.insert(room.to_owned());
            Ok(())
        })
    }

    /// A name no room can have is simply a room the connection is not in.
    pub(crate) fn ws_leave(conn: u64, room: &str) -> Result<(), HostError> {
        STATE.with_borrow_mut(|state| {
            if state.ws.live(conn)?.rooms.remove(room) {
                Ok(())
            } else {
                Err(HostError::NotFound)
            }
        })
    }

    pub(crate) fn ws_broadcast(
        room: &str,
        kind: i32,
        data: &[u8],
        except: u64,
    ) -> Result<usize, HostError> {
        STATE.with_borrow_mut(|state| {
            let message = state.ws.message(kind, data)?;
            let mut recipients = 0;
            for (id, connection) in &mut state.ws.connections {
                if *id != except && connection.can_send() && connection.rooms.contains(room) {
                    connection.received.push(message.clone());
                    recipients += 1;
                }
            }
            state.ws.broadcasts.push(Broadcast {
                room: room.to_owned(),
                message,
                except: (except != 0).then_some(except),
                recipients,
            });
            Ok(recipients)
        })
    }

    /// The runtime's checks and explanations (crates/runtime's
    /// host/mqtt.rs), then the failure set with
    /// [`MockHost::set_mqtt_failure`](super::MockHost::set_mqtt_failure),
    /// then the payload limit. Like every call marked † in the ABI, it
    /// first clears what is staged.
    pub(crate) fn mqtt_publish(
        topic: &str,
        payload: &[u8],
        qos: i32,
        retain: bool,
    ) -> Result<(), HostError> {
        STATE.with_borrow_mut(|state| {
            state.staged = None;
            let mut fail = |error: HostError, message: &str| {
                if !message.is_empty() {
                    state.staged = Some(message.as_bytes().to_vec());
                }
                Err(error)
            };
            if let Some(why) = invalid_topic(topic) {
                return fail(HostError::InvalidArgument, why);
            }
            let Ok(qos @ (0 | 1)) = u8::try_from(qos) else {
                return fail(HostError::InvalidArgument, "qos must be 0 or 1");
            };
            let mqtt = &state.mqtt;
            if !mqtt
                .grants
                .iter()
                .any(|filter| topic_matches(filter, topic))
            {
                let detail = format!("no mqtt_publish grant matches topic `{topic}`");
                return fail(HostError::Denied, &detail);
            }
            if let Some((error, message)) = mqtt.failure.clone() {
                return fail(error, &message);
            }
            if mqtt
                .max_payload_bytes
                .is_some_and(|max| payload.len() > max)
            {
                return Err(HostError::TooLarge);
            }
            state.mqtt.published.push(
                Publish::new(topic, payload)
                    .with_qos(qos)
                    .with_retain(retain),
            );
            Ok(())
        })
    }
}
