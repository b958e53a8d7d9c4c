//! A mock host for native tests (not built for wasm32).
//!
//! [`MockHost`] plays the gateway's part: it encodes events into the same
//! envelopes, runs them through the same dispatch code as the wasm exports,
//! and serves the host functions (`log`, `output_write`, `config_get`,
//! `staged_read`) from its own state. So `cargo test` exercises a module's
//! handlers end to end without a wasm runtime.
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

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use shanhai_abi::wire::{Call, Header, HttpRequest, HttpResponse};
use shanhai_abi::{EventKind, EventStatus, LogLevel};

use crate::dispatch::dispatch;
use crate::{Handlers, RemoteAddr, RequestId};

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

/// What the host functions see during an event.
#[derive(Debug, Default)]
struct HostState {
    config: BTreeMap<String, String>,
    max_response_bytes: Option<usize>,
    staged: Option<Vec<u8>>,
    output: Vec<u8>,
    logs: Vec<LogRecord>,
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
    events: u64,
}

impl MockHost {
    /// A host running `handlers`, with no config variables and no output
    /// limit.
    pub fn new(handlers: Handlers) -> Self {
        Self {
            handlers,
            state: HostState::default(),
            events: 0,
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
    /// [`HostError::TooLarge`](crate::HostError::TooLarge).
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
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map_or_else(|| format!("mock-{}", self.events + 1), |id| id.0.clone());
        let remote_addr = parts
            .extensions
            .get::<RemoteAddr>()
            .map_or(DEFAULT_REMOTE_ADDR, RemoteAddr::as_str);
        let envelope = HttpRequest {
            method: parts.method.as_str(),
            uri: parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            request_id: &request_id,
            remote_addr,
            headers: parts
                .headers
                .iter()
                .map(|(name, value)| Header {
                    name: name.as_str().as_bytes(),
                    value: value.as_bytes(),
                })
                .collect(),
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
    use super::{LogRecord, STATE};
    use crate::HostError;
    use shanhai_abi::LogLevel;

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
}
