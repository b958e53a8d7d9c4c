//! [`Handlers`]: the table of user code a module registers, and the traits
//! that let handlers return plain values or `Result`s.

use std::collections::BTreeMap;
use std::fmt::{self, Display};

use http::{Request, Response};

use crate::mqtt::{IntoMqttOutput, Message, Publish};
use crate::tcp::TcpConn;
use crate::timer::Timer;
use crate::ws::{WsConn, WsMessage};

/// The request id the gateway gave an HTTP request, found in the
/// [`Request`]'s extensions (it is also in the `x-request-id` header when
/// the gateway sets one).
///
/// ```
/// # use shanhai_sdk::RequestId;
/// # let request = shanhai_sdk::http::Request::new(Vec::<u8>::new());
/// let id = request.extensions().get::<RequestId>().map_or("-", |id| id.as_str());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(pub String);

impl RequestId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The client's address (`ip:port`) of an HTTP request, found in the
/// [`Request`]'s extensions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteAddr(pub String);

impl RemoteAddr {
    /// The address as text, `ip:port`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Display for RemoteAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an HTTP handler may return: a [`Response`] whose body converts into
/// bytes (`Vec<u8>`, `String`, `&'static str`, ...), or a `Result` of one
/// whose error is [`Display`]. An error answers the event with
/// [`EventStatus::Error`](crate::EventStatus::Error) and the error's text;
/// the gateway turns that into a 500 `guest_error`.
pub trait IntoHttpResponse {
    /// Converts the handler's return value; `Err` holds the error message.
    fn into_http_response(self) -> Result<Response<Vec<u8>>, String>;
}

impl<B: Into<Vec<u8>>> IntoHttpResponse for Response<B> {
    fn into_http_response(self) -> Result<Response<Vec<u8>>, String> {
        Ok(self.map(Into::into))
    }
}

impl<B: Into<Vec<u8>>, E: Display> IntoHttpResponse for Result<Response<B>, E> {
    fn into_http_response(self) -> Result<Response<Vec<u8>>, String> {
        self.map(|response| response.map(Into::into))
            .map_err(|error| error.to_string())
    }
}

/// What a byte function may return: bytes (`Vec<u8>`, `String`), or a
/// `Result` of something that converts into bytes whose error is
/// [`Display`]. An error answers the call with
/// [`EventStatus::Error`](crate::EventStatus::Error) and the error's text.
pub trait IntoCallOutput {
    /// Converts the function's return value; `Err` holds the error message.
    fn into_call_output(self) -> Result<Vec<u8>, String>;
}

impl IntoCallOutput for Vec<u8> {
    fn into_call_output(self) -> Result<Vec<u8>, String> {
        Ok(self)
    }
}

impl IntoCallOutput for String {
    fn into_call_output(self) -> Result<Vec<u8>, String> {
        Ok(self.into_bytes())
    }
}

impl<T: Into<Vec<u8>>, E: Display> IntoCallOutput for Result<T, E> {
    fn into_call_output(self) -> Result<Vec<u8>, String> {
        self.map(Into::into).map_err(|error| error.to_string())
    }
}

/// What a WebSocket open or message handler may return: the reply —
/// bytes (`Vec<u8>`), text (`String`, `&str`) — or `()` or `None` for no
/// reply, or a `Result` of one whose error is [`Display`]. The reply to an
/// open or a text message is sent as text, so it must be UTF-8; the reply
/// to a binary message is binary.
///
/// An empty reply to a message is an empty message (an echo handler echoes
/// empty messages too); only `()` and `None` send nothing. An open's empty
/// greeting sends nothing.
///
/// An error answers the event with
/// [`EventStatus::Error`](crate::EventStatus::Error) and the error's text:
/// for an open, the gateway refuses the upgrade with 403 and that text; for
/// a message, it sends the client an error message and keeps the
/// connection open.
pub trait IntoWsReply {
    /// Converts the handler's return value: `Ok(None)` for no reply; `Err`
    /// holds the error message.
    fn into_ws_reply(self) -> Result<Option<Vec<u8>>, String>;
}

impl IntoWsReply for () {
    fn into_ws_reply(self) -> Result<Option<Vec<u8>>, String> {
        Ok(None)
    }
}

impl IntoWsReply for Vec<u8> {
    fn into_ws_reply(self) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(self))
    }
}

impl IntoWsReply for String {
    fn into_ws_reply(self) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(self.into_bytes()))
    }
}

impl IntoWsReply for &str {
    fn into_ws_reply(self) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(self.as_bytes().to_vec()))
    }
}

impl<T: IntoWsReply> IntoWsReply for Option<T> {
    fn into_ws_reply(self) -> Result<Option<Vec<u8>>, String> {
        self.map_or(Ok(None), IntoWsReply::into_ws_reply)
    }
}

impl<T: IntoWsReply, E: Display> IntoWsReply for Result<T, E> {
    fn into_ws_reply(self) -> Result<Option<Vec<u8>>, String> {
        self.map_err(|error| error.to_string())?.into_ws_reply()
    }
}

/// What a timer handler may return: `()`, or a `Result<(), E>` whose error
/// is [`Display`]. An error fails the run: the event answers
/// [`EventStatus::Error`](crate::EventStatus::Error) with the error's text,
/// which the gateway logs and counts. A run has no other output.
pub trait IntoTimerResult {
    /// Converts the handler's return value; `Err` holds the error message.
    fn into_timer_result(self) -> Result<(), String>;
}

impl IntoTimerResult for () {
    fn into_timer_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Display> IntoTimerResult for Result<(), E> {
    fn into_timer_result(self) -> Result<(), String> {
        self.map_err(|error| error.to_string())
    }
}

/// What a TCP open or frame handler may return: the reply, written to the
/// connection as one frame when it is not empty — bytes (`Vec<u8>`,
/// `&'static [u8]`), text (`String`, `&str`), `()` or `None` for no reply —
/// or a `Result` of one whose error is [`Display`].
///
/// An error answers the event with
/// [`EventStatus::Error`](crate::EventStatus::Error) and the error's text,
/// and the gateway closes the connection, with a log line.
pub trait IntoTcpReply {
    /// Converts the handler's return value (an empty reply is none); `Err`
    /// holds the error message.
    fn into_tcp_reply(self) -> Result<Vec<u8>, String>;
}

impl IntoTcpReply for () {
    fn into_tcp_reply(self) -> Result<Vec<u8>, String> {
        Ok(Vec::new())
    }
}

impl IntoTcpReply for Vec<u8> {
    fn into_tcp_reply(self) -> Result<Vec<u8>, String> {
        Ok(self)
    }
}

impl IntoTcpReply for &[u8] {
    fn into_tcp_reply(self) -> Result<Vec<u8>, String> {
        Ok(self.to_vec())
    }
}

impl IntoTcpReply for String {
    fn into_tcp_reply(self) -> Result<Vec<u8>, String> {
        Ok(self.into_bytes())
    }
}

impl IntoTcpReply for &str {
    fn into_tcp_reply(self) -> Result<Vec<u8>, String> {
        Ok(self.as_bytes().to_vec())
    }
}

impl<T: IntoTcpReply> IntoTcpReply for Option<T> {
    fn into_tcp_reply(self) -> Result<Vec<u8>, String> {
        self.map_or(Ok(Vec::new()), IntoTcpReply::into_tcp_reply)
    }
}

impl<T: IntoTcpReply, E: Display> IntoTcpReply for Result<T, E> {
    fn into_tcp_reply(self) -> Result<Vec<u8>, String> {
        self.map_err(|error| error.to_string())?.into_tcp_reply()
    }
}

type HttpHandler = Box<dyn Fn(Request<Vec<u8>>) -> Result<Response<Vec<u8>>, String>>;
type ByteFunction = Box<dyn Fn(&[u8]) -> Result<Vec<u8>, String>>;
type WsOpenHandler = Box<dyn Fn(&WsConn) -> Result<Option<Vec<u8>>, String>>;
type WsMessageHandler = Box<dyn Fn(&WsConn, WsMessage<'_>) -> Result<Option<Vec<u8>>, String>>;
type WsCloseHandler = Box<dyn Fn(&WsConn, u16, &str)>;
type TimerHandler = Box<dyn Fn(&Timer) -> Result<(), String>>;
type TcpOpenHandler = Box<dyn Fn(&TcpConn) -> Result<Vec<u8>, String>>;
type TcpFrameHandler = Box<dyn Fn(&TcpConn, &[u8]) -> Result<Vec<u8>, String>>;
type TcpCloseHandler = Box<dyn Fn(&TcpConn)>;
type MqttHandler = Box<dyn Fn(&Message) -> Result<Vec<Publish>, String>>;

/// The WebSocket part of a module's [`Handlers`] (event kind 3): what runs
/// when a client asks to connect, for each message, and when a connection
/// has ended. Each is optional; a handler with none of them accepts every
/// connection and ignores its messages.
///
/// ```
/// use shanhai_sdk::{Handlers, HostError, WebSocketHandler, WsConn, WsMessage};
///
/// fn handlers() -> Handlers {
///     Handlers::new().websocket(
///         WebSocketHandler::new()
///             .on_open(|conn: &WsConn| conn.join("lobby").map(|()| "welcome"))
///             .on_message(|conn: &WsConn, message: WsMessage<'_>| {
///                 shanhai_sdk::broadcast("lobby", message, Some(conn.id())).map(drop)
///             })
///             .on_close(|conn: &WsConn, code: u16, _reason: &str| {
///                 shanhai_sdk::info!("connection {} closed with {code}", conn.id());
///             }),
///     )
/// }
/// # let _ = handlers();
/// ```
#[derive(Default)]
pub struct WebSocketHandler {
    open: Option<WsOpenHandler>,
    message: Option<WsMessageHandler>,
    close: Option<WsCloseHandler>,
}

impl WebSocketHandler {
    /// A handler that accepts every connection and ignores its messages.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets what runs when a client asks to upgrade, before the handshake
    /// completes: [`WsConn::headers`] holds the upgrade request's headers.
    /// An `Err` refuses the connection (403 with the error's text); a
    /// non-empty reply is sent as the first, text, message.
    pub fn on_open<F, R>(mut self, handler: F) -> Self
    where
        F: Fn(&WsConn) -> R + 'static,
        R: IntoWsReply,
    {
        self.open = Some(Box::new(move |conn| handler(conn).into_ws_reply()));
        self
    }

    /// Sets what runs for each complete message. A reply, empty ones
    /// included, goes back to the connection with the message's type
    /// ([`IntoWsReply`]); an `Err` is reported to the client, which stays
    /// connected.
    pub fn on_message<F, R>(mut self, handler: F) -> Self
    where
        F: Fn(&WsConn, WsMessage<'_>) -> R + 'static,
        R: IntoWsReply,
    {
        self.message = Some(Box::new(move |conn, message| {
            handler(conn, message).into_ws_reply()
        }));
        self
    }

    /// Sets what runs once a connection has ended, whichever side closed
    /// it, with the peer's close code (1005 when its close frame had none,
    /// 1006 when the connection dropped) and reason. The connection can no
    /// longer be acted on.
    pub fn on_close<F>(mut self, handler: F) -> Self
    where
        F: Fn(&WsConn, u16, &str) + 'static,
    {
        self.close = Some(Box::new(handler));
        self
    }

    pub(crate) fn open_handler(&self) -> Option<&WsOpenHandler> {
        self.open.as_ref()
    }

    pub(crate) fn message_handler(&self) -> Option<&WsMessageHandler> {
        self.message.as_ref()
    }

    pub(crate) fn close_handler(&self) -> Option<&WsCloseHandler> {
        self.close.as_ref()
    }
}

impl fmt::Debug for WebSocketHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketHandler")
            .field("on_open", &self.open.is_some())
            .field("on_message", &self.message.is_some())
            .field("on_close", &self.close.is_some())
            .finish()
    }
}

/// The TCP part of a module's [`Handlers`] (event kind 6): what runs when a
/// client connects to a listener (`[tcp.NAME]` in the gateway's config)
/// that targets the module, for each frame the listener cuts from the
/// stream, and when a connection has ended. Each is optional; a handler
/// with none of them accepts every connection and writes nothing back.
///
/// The frames of one connection arrive one at a time, in order. The
/// listener's framing decides what a frame is and how a reply is written:
/// with `length` and `delimiter` framing the gateway adds the length or the
/// delimiter to the reply; with `modbus` framing a frame is a whole
/// Modbus/TCP ADU (MBAP header included) and the reply must be one too.
///
/// ```
/// use shanhai_sdk::{Handlers, TcpConn, TcpHandler};
///
/// fn handlers() -> Handlers {
///     Handlers::new().tcp(
///         TcpHandler::new()
///             .on_open(|conn: &TcpConn| format!("hello {}", conn.remote_addr()))
///             .on_frame(|_conn: &TcpConn, frame: &[u8]| match frame {
///                 b"quit" => Err("client quit"),
///                 line => Ok(line.to_ascii_uppercase()),
///             })
///             .on_close(|conn: &TcpConn| {
///                 shanhai_sdk::info!("connection {} closed", conn.id());
///             }),
///     )
/// }
/// # let _ = handlers();
/// ```
#[derive(Default)]
pub struct TcpHandler {
    open: Option<TcpOpenHandler>,
    frame: Option<TcpFrameHandler>,
    close: Option<TcpCloseHandler>,
}

impl TcpHandler {
    /// A handler that accepts every connection and writes nothing back.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets what runs when a client has connected. An `Err` closes the
    /// connection (the close handler still runs); a non-empty reply is
    /// written to it first, as one frame.
    pub fn on_open<F, R>(mut self, handler: F) -> Self
    where
        F: Fn(&TcpConn) -> R + 'static,
        R: IntoTcpReply,
    {
        self.open = Some(Box::new(move |conn| handler(conn).into_tcp_reply()));
        self
    }

    /// Sets what runs for each frame (see [`TcpHandler`] for what a frame
    /// is). A non-empty reply is written back as one frame; an empty one
    /// writes nothing; an `Err` closes the connection.
    pub fn on_frame<F, R>(mut self, handler: F) -> Self
    where
        F: Fn(&TcpConn, &[u8]) -> R + 'static,
        R: IntoTcpReply,
    {
        self.frame = Some(Box::new(move |conn, frame| {
            handler(conn, frame).into_tcp_reply()
        }));
        self
    }

    /// Sets what runs once a connection has ended, whichever side closed
    /// it (the gateway does after an `Err` or a malformed frame), for every
    /// connection, including one the open handler refused. Nothing it does
    /// reaches the client any more.
    pub fn on_close<F>(mut self, handler: F) -> Self
    where
        F: Fn(&TcpConn) + 'static,
    {
        self.close = Some(Box::new(handler));
        self
    }

    pub(crate) fn open_handler(&self) -> Option<&TcpOpenHandler> {
        self.open.as_ref()
    }

    pub(crate) fn frame_handler(&self) -> Option<&TcpFrameHandler> {
        self.frame.as_ref()
    }

    pub(crate) fn close_handler(&self) -> Option<&TcpCloseHandler> {
        self.close.as_ref()
    }
}

impl fmt::Debug for TcpHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpHandler")
            .field("on_open", &self.open.is_some())
            .field("on_frame", &self.frame.is_some())
            .field("on_close", &self.close.is_some())
            .finish()
    }
}

/// The user code of a module: at most one HTTP handler, any number of byte
/// functions, each under a name, at most one [`WebSocketHandler`], at most
/// one timer handler, at most one [`TcpHandler`] and at most one MQTT
/// handler.
///
/// Build it in a function and hand that function to
/// [`export!`](crate::export); the SDK calls it once per instance, before
/// the first event. Natively, pass it to
/// [`MockHost::new`](crate::mock::MockHost::new) to test the module.
///
/// ```
/// use shanhai_sdk::Handlers;
/// use shanhai_sdk::http::{Request, Response};
///
/// fn handlers() -> Handlers {
///     Handlers::new()
///         .http(|_req: Request<Vec<u8>>| Response::new("hi"))
///         .function("len", |input: &[u8]| input.len().to_string())
/// }
/// # let _ = handlers();
/// ```
#[derive(Default)]
pub struct Handlers {
    http: Option<HttpHandler>,
    functions: BTreeMap<String, ByteFunction>,
    websocket: Option<WebSocketHandler>,
    timer: Option<TimerHandler>,
    tcp: Option<TcpHandler>,
    mqtt: Option<MqttHandler>,
}

impl Handlers {
    /// An empty table: every event is answered
    /// [`Unsupported`](crate::EventStatus::Unsupported) or
    /// [`NotFound`](crate::EventStatus::NotFound).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the handler of HTTP requests (event kind 1).
    ///
    /// The handler gets the whole request, with the path the gateway
    /// received (mount point included) and [`RequestId`] and [`RemoteAddr`]
    /// in its extensions; it returns anything [`IntoHttpResponse`].
    ///
    /// # Panics
    /// If an HTTP handler is already set.
    pub fn http<F, R>(mut self, handler: F) -> Self
    where
        F: Fn(Request<Vec<u8>>) -> R + 'static,
        R: IntoHttpResponse,
    {
        assert!(self.http.is_none(), "an HTTP handler is already registered");
        self.http = Some(Box::new(move |request| {
            handler(request).into_http_response()
        }));
        self
    }

    /// Registers a byte function under `name` (event kind 2, and
    /// `POST /api/exec/MODULE/NAME` on the gateway): it gets the input
    /// bytes and returns anything [`IntoCallOutput`].
    ///
    /// # Panics
    /// If a function named `name` is already registered.
    pub fn function<F, R>(mut self, name: impl Into<String>, function: F) -> Self
    where
        F: Fn(&[u8]) -> R + 'static,
        R: IntoCallOutput,
    {
        let name = name.into();
        assert!(
            !self.functions.contains_key(&name),
            "a byte function named `{name}` is already registered"
        );
        self.functions.insert(
            name,
            Box::new(move |input| function(input).into_call_output()),
        );
        self
    }

    /// Sets the handler of WebSocket events (event kind 3). Without one,
    /// upgrade requests get the gateway's 404 `no_handler`.
    ///
    /// Connections are held by the gateway, not by an instance: one
    /// connection's events may reach different instances, so per-connection
    /// state kept in statics must be keyed by [`WsConn::id`] and may be lost
    /// with an instance.
    ///
    /// # Panics
    /// If a WebSocket handler is already set.
    pub fn websocket(mut self, handler: WebSocketHandler) -> Self {
        assert!(
            self.websocket.is_none(),
            "a WebSocket handler is already registered"
        );
        self.websocket = Some(handler);
        self
    }

    /// Sets the handler of timer runs (event kind 4): every run of every
    /// timer that targets the module (`[timers.NAME]` in the gateway's
    /// config) calls it with the [`Timer`]; [`Timer::name`] tells the
    /// timers apart. It returns anything [`IntoTimerResult`]: an `Err`
    /// fails the run, which the gateway logs and counts. Without a handler,
    /// timer events answer [`Unsupported`](crate::EventStatus::Unsupported).
    ///
    /// ```
    /// use shanhai_sdk::{Handlers, HostError, Timer, WsMessage};
    ///
    /// fn handlers() -> Handlers {
    ///     Handlers::new().timer(|timer: &Timer| -> Result<(), HostError> {
    ///         shanhai_sdk::info!("{} run {}", timer.name(), timer.run());
    ///         shanhai_sdk::broadcast("lobby", WsMessage::Text("tick"), None)?;
    ///         Ok(())
    ///     })
    /// }
    /// # let _ = handlers();
    /// ```
    ///
    /// # Panics
    /// If a timer handler is already set.
    pub fn timer<F, R>(mut self, handler: F) -> Self
    where
        F: Fn(&Timer) -> R + 'static,
        R: IntoTimerResult,
    {
        assert!(
            self.timer.is_none(),
            "a timer handler is already registered"
        );
        self.timer = Some(Box::new(move |timer| handler(timer).into_timer_result()));
        self
    }

    /// Sets the handler of TCP stream events (event kind 6): the
    /// connections of every TCP listener (`[tcp.NAME]` in the gateway's
    /// config) that targets the module. Without one, TCP events answer
    /// [`Unsupported`](crate::EventStatus::Unsupported) and the gateway
    /// closes the connections.
    ///
    /// Connections are held by the gateway, not by an instance: one
    /// connection's events may reach different instances, so per-connection
    /// state kept in statics must be keyed by [`TcpConn::id`] and may be
    /// lost with an instance.
    ///
    /// # Panics
    /// If a TCP handler is already set.
    pub fn tcp(mut self, handler: TcpHandler) -> Self {
        assert!(self.tcp.is_none(), "a TCP handler is already registered");
        self.tcp = Some(handler);
        self
    }

    /// Sets the handler of MQTT messages (event kind 5): every message a
    /// trigger of the gateway (`[mqtt.triggers.NAME]`) delivers to the
    /// module calls it with the [`Message`]. It returns anything
    /// [`IntoMqttOutput`]: the messages to publish, in order (one with an
    /// empty topic goes to the trigger's `output_topic`; any other topic
    /// needs the module's `mqtt_publish` grant), or an `Err`, which fails
    /// the event: the gateway drops a QoS 0 message and retries a QoS 1
    /// message, then sends it to the dead-letter topic. A message may be
    /// delivered more than once ([`Message::attempt`]), so the handler
    /// should be idempotent. Without a handler, MQTT events answer
    /// [`Unsupported`](crate::EventStatus::Unsupported).
    ///
    /// ```
    /// use shanhai_sdk::Handlers;
    /// use shanhai_sdk::mqtt::{Message, Publish};
    ///
    /// fn handlers() -> Handlers {
    ///     Handlers::new().mqtt(|message: &Message| {
    ///         let id = message.topic().split('/').nth(1).unwrap_or_default();
    ///         vec![
    ///             Publish::to_output_topic(message.payload().to_vec()),
    ///             Publish::new(format!("devices/{id}/ack"), "ok").with_qos(1),
    ///         ]
    ///     })
    /// }
    /// # let _ = handlers();
    /// ```
    ///
    /// # Panics
    /// If an MQTT handler is already set.
    pub fn mqtt<F, R>(mut self, handler: F) -> Self
    where
        F: Fn(&Message) -> R + 'static,
        R: IntoMqttOutput,
    {
        assert!(self.mqtt.is_none(), "an MQTT handler is already registered");
        self.mqtt = Some(Box::new(move |message| handler(message).into_mqtt_output()));
        self
    }

    /// Whether an MQTT handler is set.
    pub fn has_mqtt(&self) -> bool {
        self.mqtt.is_some()
    }

    /// Whether a TCP handler is set.
    pub fn has_tcp(&self) -> bool {
        self.tcp.is_some()
    }

    /// Whether a timer handler is set.
    pub fn has_timer(&self) -> bool {
        self.timer.is_some()
    }

    /// Whether a WebSocket handler is set.
    pub fn has_websocket(&self) -> bool {
        self.websocket.is_some()
    }

    /// Whether an HTTP handler is set.
    pub fn has_http(&self) -> bool {
        self.http.is_some()
    }

    /// The names of the registered byte functions, sorted.
    pub fn function_names(&self) -> impl Iterator<Item = &str> {
        self.functions.keys().map(String::as_str)
    }

    pub(crate) fn http_handler(&self) -> Option<&HttpHandler> {
        self.http.as_ref()
    }

    pub(crate) fn byte_function(&self, name: &str) -> Option<&ByteFunction> {
        self.functions.get(name)
    }

    pub(crate) fn websocket_handler(&self) -> Option<&WebSocketHandler> {
        self.websocket.as_ref()
    }

    pub(crate) fn timer_handler(&self) -> Option<&TimerHandler> {
        self.timer.as_ref()
    }

    pub(crate) fn tcp_handler(&self) -> Option<&TcpHandler> {
        self.tcp.as_ref()
    }

    pub(crate) fn mqtt_handler(&self) -> Option<&MqttHandler> {
        self.mqtt.as_ref()
    }
}

impl fmt::Debug for Handlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handlers")
            .field("http", &self.has_http())
            .field("functions", &self.functions.keys().collect::<Vec<_>>())
            .field("websocket", &self.websocket)
            .field("timer", &self.has_timer())
            .field("tcp", &self.tcp)
            .field("mqtt", &self.has_mqtt())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_types_convert() {
        let ok: Result<Response<&str>, String> = Ok(Response::new("x"));
        assert_eq!(ok.into_http_response().unwrap().body(), b"x");
        let err: Result<Response<Vec<u8>>, &str> = Err("boom");
        assert_eq!(err.into_http_response().unwrap_err(), "boom");
        assert_eq!(String::from("a").into_call_output(), Ok(b"a".to_vec()));
        let err: Result<Vec<u8>, std::fmt::Error> = Err(std::fmt::Error);
        assert!(err.into_call_output().is_err());
    }

    #[test]
    fn ws_replies_convert() {
        // `()` and `None` are no reply; an empty string is an empty one.
        assert_eq!(().into_ws_reply(), Ok(None));
        assert_eq!("".into_ws_reply(), Ok(Some(Vec::new())));
        assert_eq!("hi".into_ws_reply(), Ok(Some(b"hi".to_vec())));
        assert_eq!(String::from("hi").into_ws_reply(), Ok(Some(b"hi".to_vec())));
        assert_eq!(None::<String>.into_ws_reply(), Ok(None));
        assert_eq!(Some(vec![1u8]).into_ws_reply(), Ok(Some(vec![1])));
        let ok: Result<&str, String> = Ok("x");
        assert_eq!(ok.into_ws_reply(), Ok(Some(b"x".to_vec())));
        let err: Result<(), &str> = Err("nope");
        assert_eq!(err.into_ws_reply(), Err("nope".to_owned()));
    }

    #[test]
    fn timer_results_convert() {
        assert_eq!(().into_timer_result(), Ok(()));
        assert_eq!(Ok::<(), &str>(()).into_timer_result(), Ok(()));
        let err: Result<(), crate::HostError> = Err(crate::HostError::Denied);
        assert_eq!(
            err.into_timer_result(),
            Err("host call failed: denied".to_owned())
        );
    }

    #[test]
    #[should_panic(expected = "a timer handler is already registered")]
    fn a_second_timer_handler_panics() {
        let _ = Handlers::new().timer(|_: &Timer| ()).timer(|_: &Timer| ());
    }

    #[test]
    #[should_panic(expected = "a WebSocket handler is already registered")]
    fn a_second_websocket_handler_panics() {
        let _ = Handlers::new()
            .websocket(WebSocketHandler::new())
            .websocket(WebSocketHandler::new());
    }

    #[test]
    #[should_panic(expected = "a byte function named `f` is already registered")]
    fn duplicate_function_names_panic() {
        let _ = Handlers::new()
            .function("f", |_: &[u8]| Vec::new())
            .function("f", |_: &[u8]| Vec::new());
    }

    #[test]
    fn debug_lists_what_is_registered() {
        let handlers = Handlers::new().function("b", |_: &[u8]| Vec::new());
        assert_eq!(
            format!("{handlers:?}"),
            r#"Handlers { http: false, functions: ["b"], websocket: None, timer: false, tcp: None, mqtt: false }"#
        );
        assert_eq!(handlers.function_names().collect::<Vec<_>>(), ["b"]);
        let handlers = Handlers::new().websocket(WebSocketHandler::new().on_close(|_, _, _| ()));
        assert!(handlers.has_websocket());
        assert_eq!(
            format!("{handlers:?}"),
            "Handlers { http: false, functions: [], websocket: Some(WebSocketHandler { \
             on_open: false, on_message: false, on_close: true }), timer: false, tcp: None, \
             mqtt: false }"
        );
        let handlers = Handlers::new().timer(|_: &Timer| ());
        assert!(handlers.has_timer());
        assert!(format!("{handlers:?}").ends_with("timer: true, tcp: None, mqtt: false }"));
        let handlers = Handlers::new().tcp(TcpHandler::new().on_frame(|_, _| ()));
        assert!(handlers.has_tcp());
        assert!(format!("{handlers:?}").ends_with(
            "tcp: Some(TcpHandler { on_open: false, on_frame: true, on_close: false }), mqtt: false }"
        ));
    }

    #[test]
    fn tcp_replies_convert() {
        assert_eq!(().into_tcp_reply(), Ok(Vec::new()));
        assert_eq!(b"\x00\xff"[..].into_tcp_reply(), Ok(vec![0, 255]));
        assert_eq!("hi".into_tcp_reply(), Ok(b"hi".to_vec()));
        assert_eq!(String::from("hi").into_tcp_reply(), Ok(b"hi".to_vec()));
        assert_eq!(None::<Vec<u8>>.into_tcp_reply(), Ok(Vec::new()));
        assert_eq!(Some(vec![1u8]).into_tcp_reply(), Ok(vec![1]));
        let err: Result<Vec<u8>, crate::HostError> = Err(crate::HostError::Denied);
        assert_eq!(
            err.into_tcp_reply(),
            Err("host call failed: denied".to_owned())
        );
    }

    #[test]
    fn mqtt_handlers_register_once() {
        let handlers = Handlers::new().mqtt(|_: &Message| ());
        assert!(handlers.has_mqtt());
        assert!(format!("{handlers:?}").ends_with("mqtt: true }"));
    }

    #[test]
    #[should_panic(expected = "an MQTT handler is already registered")]
    fn a_second_mqtt_handler_panics() {
        let _ = Handlers::new()
            .mqtt(|_: &Message| ())
            .mqtt(|_: &Message| ());
    }

    #[test]
    #[should_panic(expected = "a TCP handler is already registered")]
    fn a_second_tcp_handler_panics() {
        let _ = Handlers::new()
            .tcp(TcpHandler::new())
            .tcp(TcpHandler::new());
    }
}
