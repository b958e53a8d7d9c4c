//! The WebSocket trigger: upgrades requests at a module's WebSocket routes
//! (`/NAME/ws` unless configured), keeps the connections in the [`Hub`],
//! and runs the module on every open, message and close.
//!
//! - [`codec`]: RFC 6455 frames, strict about what clients may send.
//! - [`hub`]: connections, send queues, rooms; the runtime's
//!   `WebSocketHost`, so the `ws_*` host functions land there.
//! - [`conn`]: one task per connection: reads frames, runs the module,
//!   writes what was queued.
//!
//! Connections are not tied to instances: each event borrows an instance
//! from the module's pool like an HTTP request does.

pub(crate) mod codec;
mod conn;
pub(crate) mod hub;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use shanhai_abi::EventKind;
use shanhai_abi::wire::{Header, WsEvent, WsEventType};
use shanhai_runtime::{InvokeError, ModuleKind, WsMessage};

use crate::config::Config;
use crate::http::error::ApiError;
use crate::metered::TriggerMetrics;
use crate::registry::ModuleRegistry;
use hub::{Hub, Outgoing, Refusal};

/// The WebSocket settings, from `[websocket]`.
#[derive(Debug, Clone)]
pub(crate) struct WsSettings {
    /// Connections the process holds at most; upgrades beyond get 503.
    pub(crate) max_connections: usize,
    /// Connections one module holds at most, unless it says otherwise.
    pub(crate) max_connections_per_module: usize,
    /// Largest message in either direction; a bigger one from a client
    /// closes it with 1009.
    pub(crate) max_message_bytes: usize,
    /// Bytes of messages queued for one connection before it is closed as
    /// a slow consumer (1008).
    pub(crate) send_queue_bytes: usize,
    /// Messages queued for one connection before the same.
    pub(crate) send_queue_messages: usize,
    /// How often a connection is pinged.
    pub(crate) ping_interval: Duration,
    /// A peer silent (no pong, no data) this long is evicted.
    pub(crate) peer_timeout: Duration,
    /// A connection without a data message this long is closed.
    pub(crate) idle_timeout: Option<Duration>,
    /// After sending a close frame, how long to wait for the peer's.
    pub(crate) close_timeout: Duration,
}

impl Default for WsSettings {
    fn default() -> Self {
        Self {
            max_connections: 100_000,
            max_connections_per_module: 100_000,
            max_message_bytes: 1 << 20,
            send_queue_bytes: 1 << 20,
            send_queue_messages: 1024,
            ping_interval: Duration::from_secs(15),
            peer_timeout: Duration::from_secs(25),
            idle_timeout: None,
            close_timeout: Duration::from_secs(2),
        }
    }
}

/// The WebSocket trigger, shared by every HTTP connection.
pub(crate) struct WsTrigger {
    registry: Arc<ModuleRegistry>,
    config: Arc<Config>,
    hub: Arc<Hub>,
    metrics: TriggerMetrics,
}

impl WsTrigger {
    /// A trigger for the modules of `registry`; starts the heartbeat
    /// sweeper, which stops when the trigger is dropped.
    pub(crate) fn new(
        registry: Arc<ModuleRegistry>,
        config: Arc<Config>,
        settings: WsSettings,
    ) -> Arc<Self> {
        let hub = Hub::new(settings);
        let sweeper = Arc::downgrade(&hub);
        let occupied = hub.occupied();
        // Sweeping every second keeps heartbeats within a second of their
        // schedule without a timer per connection. With no connection open
        // it sleeps until one comes, so an idle gateway is not woken.
        let period = Duration::from_secs(1).min(hub.settings.ping_interval);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(hub) = sweeper.upgrade() else { return };
                if hub.len() == 0 {
                    drop(hub);
                    // A connection admitted since the check left its
                    // wake-up stored: this returns at once.
                    occupied.notified().await;
                    tick.reset();
                    continue;
                }
                hub.sweep();
            }
        });
        Arc::new(Self {
            registry,
            config,
            hub,
            metrics: TriggerMetrics::new("websocket"),
        })
    }

    /// The hub, for the runtime's `ws_*` host functions.
    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Closes every connection with 1001 and waits (up to `timeout`) for
    /// them to end.
    pub(crate) async fn shutdown(&self, timeout: Duration) -> bool {
        let open = self.hub.len();
        if open == 0 {
            return true;
        }
        tracing::info!(connections = open, "closing WebSocket connections");
        self.hub
            .close_all(1001, "server shutting down", timeout)
            .await
    }

    /// Handles an upgrade request for module `name`: checks the handshake,
    /// asks the module (open event), and answers 101 and starts the
    /// connection, or refuses with an error.
    pub(crate) async fn upgrade<B>(
        self: &Arc<Self>,
        mut request: Request<B>,
        remote: SocketAddr,
        request_id: &Arc<str>,
        name: &Arc<str>,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let accept = handshake(&request).map_err(|err| err.module(name))?;
        let on_upgrade = hyper::upgrade::on(&mut request);
        let limit = self
            .config
            .websocket_limit(name)
            .unwrap_or(self.hub.settings.max_connections_per_module);
        let info = hub::ConnInfo::new(
            request_id,
            request.uri().path_and_query().map_or("/", |pq| pq.as_str()),
            &remote.to_string(),
        );
        let connection = self.hub.admit(name, limit, info).map_err(|refusal| {
            let message = match refusal {
                Refusal::Process(n) => {
                    format!("the gateway holds its maximum of {n} WebSocket connections")
                }
                Refusal::Module(n) => {
                    format!("the module holds its maximum of {n} WebSocket connections")
                }
            };
            let mut err = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_connections",
                message,
            )
            .module(name);
            err.retry_after = Some(1);
            err
        })?;
        // The module decides whether to accept; its output is the first
        // message.
        let headers: Vec<Header<'_>> = request
            .headers()
            .iter()
            .map(|(name, value)| Header {
                name: name.as_str().as_bytes(),
                value: value.as_bytes(),
            })
            .collect();
        let envelope = WsEvent {
            event: WsEventType::Open,
            connection: connection.id,
            close_code: 0,
            uri: connection.info.uri(),
            remote_addr: connection.info.remote(),
            request_id,
            headers,
            data: b"",
        }
        .encode();
        let opened = async {
            let selected = ApiError::not_serving(
                self.registry
                    .select_ready(name, Some(&connection.id.to_le_bytes()))
                    .await,
                name,
            )?;
            let module = selected.module;
            if module.kind() != ModuleKind::Reactor {
                return Err(ApiError::from_invoke(
                    &InvokeError::NoHandler("WebSocket"),
                    name,
                ));
            }
            module
                .invoke_event(EventKind::WebSocket, &envelope, request_id.clone())
                .await
                .map_err(|err| match err {
                    InvokeError::Guest(message) => {
                        ApiError::new(StatusCode::FORBIDDEN, "refused", message).module(name)
                    }
                    other => ApiError::from_invoke(&other, name),
                })
        };
        let greeting = match opened.await {
            Ok(output) => output,
            Err(err) => {
                self.hub.remove(&connection);
                return Err(err);
            }
        };
        if !greeting.is_empty() {
            let message = match String::from_utf8(greeting) {
                Ok(text) => WsMessage {
                    text: true,
                    data: Bytes::from(text),
                },
                Err(err) => WsMessage {
                    text: false,
                    data: Bytes::from(err.into_bytes()),
                },
            };
            let _ = self.hub.push(&connection, Outgoing::Message(message));
        }
        tokio::spawn(conn::run(on_upgrade, connection, self.clone()));
        let mut response = Response::new(Full::default());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(
            header::SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
        );
        Ok(response)
    }
}

/// Whether `request` asks for a WebSocket upgrade (RFC 6455 §4.2.1: a GET
/// with `Upgrade: websocket` and `Connection: upgrade`).
pub(crate) fn is_upgrade<B>(request: &Request<B>) -> bool {
    request.method() == http::Method::GET
        && header_has_token(request.headers(), header::UPGRADE, "websocket")
        && header_has_token(request.headers(), header::CONNECTION, "upgrade")
}

fn header_has_token(headers: &http::HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Checks the rest of the handshake and returns `Sec-WebSocket-Accept`.
fn handshake<B>(request: &Request<B>) -> Result<String, ApiError> {
    if request.version() != http::Version::HTTP_11 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "WebSocket upgrades need HTTP/1.1",
        ));
    }
    let version = request.headers().get(header::SEC_WEBSOCKET_VERSION);
    if version.is_none_or(|v| v.as_bytes() != b"13") {
        let mut err = ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "bad_request",
            "only WebSocket version 13 is supported (Sec-WebSocket-Version: 13)",
        );
        err.retry_after = None;
        return Err(err);
    }
    let key = request
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(HeaderValue::as_bytes)
        .filter(|key| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(key)
                .is_ok_and(|nonce| nonce.len() == 16)
        })
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Sec-WebSocket-Key must be the base64 of 16 bytes",
            )
        })?;
    Ok(codec::accept_key(key))
}
