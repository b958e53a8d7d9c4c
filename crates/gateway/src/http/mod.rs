//! The HTTP trigger: routes requests to modules and turns their results
//! into responses.
//!
//! - `/NAME` and `/NAME/*` (and configured routes) go to the module's HTTP
//!   handler: an SDK reactor gets an [`HttpRequest`] envelope, a command
//!   module runs CGI-style.
//! - `POST /api/exec/NAME/FN` calls a numeric export with a JSON array of
//!   numbers, or an SDK byte function with the raw body.
//! - `/healthz` and `/readyz` report liveness and readiness.

mod cgi;
pub(crate) mod error;
mod exec;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use shanhai_abi::EventKind;
use shanhai_abi::wire::{Call, Header, HttpRequest, HttpResponse};
use shanhai_runtime::{InvokeError, LoadedModule, ModuleKind};

use crate::metered::{ModuleMetrics, TriggerMetrics};
use crate::registry::{Lookup, ModuleRegistry, RouteMatch, Selected};
use crate::ws::WsTrigger;
use error::ApiError;

const EXEC_PREFIX: &str = "/api/exec/";
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Everything a request handler needs, shared by all connections.
pub struct HttpTrigger {
    registry: Arc<ModuleRegistry>,
    ids: RequestIds,
    websocket: Option<Arc<WsTrigger>>,
    metrics: TriggerMetrics,
}

impl HttpTrigger {
    /// A trigger serving the modules of `registry` (no WebSocket upgrades).
    pub fn new(registry: Arc<ModuleRegistry>) -> Self {
        Self {
            registry,
            ids: RequestIds::new(),
            websocket: None,
            metrics: TriggerMetrics::new("http"),
        }
    }

    /// A trigger that also upgrades requests at WebSocket routes.
    pub(crate) fn with_websocket(registry: Arc<ModuleRegistry>, websocket: Arc<WsTrigger>) -> Self {
        Self {
            websocket: Some(websocket),
            ..Self::new(registry)
        }
    }

    /// Handles one request. Never fails: every error is a JSON response,
    /// and every response carries `x-request-id`.
    pub async fn handle<B: RequestBody>(
        &self,
        request: Request<B>,
        remote: SocketAddr,
    ) -> Response<Full<Bytes>> {
        let started = std::time::Instant::now();
        let request_id = self.ids.for_request(request.headers());
        let mut answered = Answered::default();
        let mut response = match self
            .dispatch(request, remote, &request_id, &mut answered)
            .await
        {
            Ok(response) => response,
            Err(err) => {
                // Server-side failures are the operator's business; client
                // mistakes are only interesting when debugging.
                macro_rules! log_failure {
                    ($level:ident) => {
                        tracing::$level!(
                            module = err.module.as_deref().unwrap_or("-"),
                            request_id = &*request_id,
                            kind = err.kind,
                            status = err.status.as_u16(),
                            "{}",
                            err.message
                        )
                    };
                }
                if err.status.is_server_error() {
                    log_failure!(warn);
                } else {
                    log_failure!(debug);
                }
                // Only modules the config names get a label, so a scan of
                // made-up names cannot grow the label set without bound.
                answered.metrics = err
                    .module
                    .as_deref()
                    .and_then(|module| self.metrics.of(module, || self.registry.knows(module)));
                err.into_response(&request_id)
            }
        };
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(X_REQUEST_ID.clone(), value);
        }
        // Only requests that reached a module are labelled with it, so a
        // scan of random paths cannot grow the label set without bound.
        if let Some(module) = answered.metrics {
            module.record(response.status().as_str(), started.elapsed());
        }
        if let Some(selected) = answered.selected {
            self.registry
                .observe(&selected, response.status(), started.elapsed());
        }
        response
    }

    /// Marks the request as answered by `module`, for the request metrics.
    fn served_by(&self, module: &str, answered: &mut Answered) {
        answered.metrics = self.metrics.of(module, || true);
    }

    async fn dispatch(
        &self,
        request: Request<impl RequestBody>,
        remote: SocketAddr,
        request_id: &Arc<str>,
        answered: &mut Answered,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        if request.uri().path().starts_with(EXEC_PREFIX) {
            return self.exec(request, request_id, answered).await;
        }
        let path = request.uri().path();
        let host = request_host(request.uri(), request.headers());
        let host = host.as_deref();
        match path {
            "/healthz" => return Ok(text(StatusCode::OK, "ok\n")),
            "/readyz" => return Ok(self.readiness()),
            _ => {}
        }
        if let Some(websocket) = &self.websocket
            && crate::ws::is_upgrade(&request)
            && let Some(name) = self.registry.websocket_route(host, path)
        {
            // Boxed, as the CGI path is below: a rare path's future would
            // otherwise enlarge every request's future, which each
            // connection holds and hyper moves once per request.
            let response = Box::pin(websocket.upgrade(request, remote, request_id, &name)).await?;
            self.served_by(&name, answered);
            return Ok(response);
        }
        let (route, chosen) = match self
            .registry
            .route_ready(host, path, request.headers())
            .await
        {
            Lookup::Found(found) => found,
            Lookup::Loading(name) => return Err(ApiError::loading(&name)),
            Lookup::Missing => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no module serves {path}"),
                ));
            }
        };
        let module = answered.selected.insert(chosen).module.clone();
        match module.kind() {
            ModuleKind::Reactor => {
                self.reactor(request, remote, request_id, &module, answered)
                    .await
            }
            ModuleKind::Command => {
                Box::pin(self.command(request, remote, request_id, &route, &module, answered)).await
            }
            ModuleKind::Exports => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no_handler",
                format!(
                    "module has no HTTP handler; call its exports at {EXEC_PREFIX}{}/FN",
                    module.name()
                ),
            )
            .module(module.name())),
        }
    }

    /// 200 once every module the gateway started with has loaded or
    /// failed, 503 (with the modules still loading) before.
    /// Readiness for anyone who can reach the public listener: names only.
    /// Load errors carry absolute paths, signer keys and compiler output,
    /// which are for the operator: the admin listener's `/readyz` has them.
    fn readiness(&self) -> Response<Full<Bytes>> {
        let ready = self.registry.started();
        let body = serde_json::json!({
            "ready": ready,
            "modules": self.registry.modules().iter().map(|m| m.name().to_owned()).collect::<Vec<_>>(),
            "loading": self.registry.pending(),
            "failed": self.registry.failures().into_keys().collect::<Vec<_>>(),
        });
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        json(status, &body)
    }

    async fn reactor(
        &self,
        request: Request<impl RequestBody>,
        remote: SocketAddr,
        request_id: &Arc<str>,
        module: &LoadedModule,
        answered: &mut Answered,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let (parts, body) = request.into_parts();
        let body = read_body(body, &parts.headers, module).await?;
        let uri = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let remote = remote.to_string();
        let envelope = HttpRequest {
            method: parts.method.as_str(),
            uri,
            request_id,
            remote_addr: &remote,
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
        let output = module
            .invoke_event(EventKind::Http, &envelope, request_id.clone())
            .await
            .map_err(|err| invoke_error(&err, module))?;
        let decoded = HttpResponse::decode(&output).map_err(|err| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "bad_output",
                format!("guest returned a malformed response: {err}"),
            )
            .module(module.name())
        })?;
        let mut response = Response::new(Full::default());
        *response.status_mut() = StatusCode::from_u16(decoded.status).map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "bad_output",
                format!("guest returned status {}", decoded.status),
            )
            .module(module.name())
        })?;
        let headers = response.headers_mut();
        for h in decoded.headers {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(h.name),
                HeaderValue::from_bytes(h.value),
            ) else {
                tracing::warn!(
                    module = module.name(),
                    request_id = &**request_id,
                    "dropping invalid response header from guest"
                );
                continue;
            };
            // The gateway frames the body itself.
            if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
                continue;
            }
            headers.append(name, value);
        }
        // The body is the tail of the output buffer: hand it on without a copy.
        let body_start = output.len() - decoded.body.len();
        *response.body_mut() = Full::new(Bytes::from(output).slice(body_start..));
        self.served_by(module.name(), answered);
        Ok(response)
    }

    async fn command(
        &self,
        request: Request<impl RequestBody>,
        remote: SocketAddr,
        request_id: &Arc<str>,
        route: &RouteMatch,
        module: &LoadedModule,
        answered: &mut Answered,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let (parts, body) = request.into_parts();
        let body = read_body(body, &parts.headers, module).await?;
        let remote = remote.to_string();
        let env = cgi::CgiRequest {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            uri: parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            mount: &route.mount,
            remote_addr: &remote,
            request_id,
            body_len: body.len(),
            headers: &parts.headers,
        }
        .env();
        let output = module
            .run_command(body.to_vec(), &env, request_id.clone())
            .await
            .map_err(|err| invoke_error(&err, module))?;
        let parsed = cgi::parse_stdout(output.stdout);
        let mut response = Response::new(Full::new(Bytes::from(parsed.body)));
        *response.status_mut() = parsed.status;
        for (name, value) in parsed.headers {
            response.headers_mut().append(name, value);
        }
        self.served_by(module.name(), answered);
        Ok(response)
    }

    async fn exec(
        &self,
        request: Request<impl RequestBody>,
        request_id: &Arc<str>,
        answered: &mut Answered,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        // Taken apart first: the names and the host are read from the parts,
        // without copies, while the body is read.
        let (parts, body) = request.into_parts();
        let rest = parts
            .uri
            .path()
            .strip_prefix(EXEC_PREFIX)
            .unwrap_or_default();
        let host = request_host(&parts.uri, &parts.headers);
        let host = host.as_deref();
        let Some((name, function)) = rest
            .split_once('/')
            .filter(|(n, f)| !n.is_empty() && !f.is_empty() && !f.contains('/'))
        else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("expected {EXEC_PREFIX}MODULE/FUNCTION"),
            ));
        };
        if parts.method != Method::POST {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{EXEC_PREFIX}{name}/{function} takes POST"),
            )
            .module(name));
        }
        // A module with its own hosts is called there only, and nothing
        // else is called there: the same as its pages.
        if let Err(message) = self.registry.exec_allowed(name, host) {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", message).module(name));
        }
        let chosen = ApiError::not_serving(
            self.registry.select_ready_for(name, &parts.headers).await,
            name,
        )?;
        let module = answered.selected.insert(chosen).module.clone();
        let body = read_body(body, &parts.headers, &module).await?;
        if let Some(signature) = module.numeric_export(function) {
            let args = exec::parse_args(&body, function, signature).map_err(|e| e.module(name))?;
            let results = module
                .call_numeric(function, &args, request_id.clone())
                .await
                .map_err(|err| invoke_error(&err, &module))?;
            self.served_by(name, answered);
            return Ok(json(StatusCode::OK, &exec::render_results(&results)));
        }
        if module.kind() != ModuleKind::Reactor {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_function",
                format!("module `{name}` has no numeric export `{function}`"),
            )
            .module(name));
        }
        let envelope = Call {
            function,
            input: &body,
        }
        .encode();
        let output = module
            .invoke_event(EventKind::Call, &envelope, request_id.clone())
            .await
            .map_err(|err| invoke_error(&err, &module))?;
        let mut response = Response::new(Full::new(Bytes::from(output)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        self.served_by(module.name(), answered);
        Ok(response)
    }
}

/// What dispatching a request learns about who answered it.
#[derive(Default)]
struct Answered {
    /// Which version served, when the module has a canary to judge.
    selected: Option<Selected>,
    /// The request metrics of the module that answered, when the config
    /// names it. Kept here rather than in the response's extensions, whose
    /// map costs three allocations per request.
    metrics: Option<Arc<ModuleMetrics>>,
}

/// Request bodies the trigger accepts: hyper's, or an in-memory one for
/// `shanhai run`.
pub trait RequestBody:
    Body<Data = Bytes, Error: std::error::Error + Send + Sync + 'static> + Send
{
}

impl<B: Body<Data = Bytes, Error: std::error::Error + Send + Sync + 'static> + Send> RequestBody
    for B
{
}

fn invoke_error(err: &InvokeError, module: &LoadedModule) -> ApiError {
    ApiError::from_invoke(err, module.name())
}

/// Reads the body up to the module's request limit: 413 beyond it.
async fn read_body(
    body: impl RequestBody,
    headers: &http::HeaderMap,
    module: &LoadedModule,
) -> Result<Bytes, ApiError> {
    let limit = module.limits().max_request_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body exceeds the module's {limit}-byte limit"),
        )
        .module(module.name())
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err)
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(err) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("reading the request body: {err}"),
        )
        .module(module.name())),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    // `to_vec` writes straight into the buffer; `to_string` goes through
    // `fmt`, a measurable share of a fast request.
    let body = serde_json::to_vec(value).expect("a JSON value serialises");
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Request ids: the client's `x-request-id` when it is short and printable,
/// otherwise a new one unique within this process and unlikely to repeat
/// across restarts.
struct RequestIds {
    prefix: u32,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self {
            prefix: (nanos as u32) ^ std::process::id().rotate_left(16),
            next: AtomicU64::new(1),
        }
    }

    fn for_request(&self, headers: &http::HeaderMap) -> Arc<str> {
        if let Some(given) = headers.get(&X_REQUEST_ID).and_then(|v| v.to_str().ok())
            && !given.is_empty()
            && given.len() <= 64
            && given.bytes().all(|b| b.is_ascii_graphic())
        {
            return Arc::from(given);
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // Written on the stack by hand: `write!` through `fmt` was a
        // measurable share of a fast request. 8 + 1 + 16 hex digits fit.
        let mut id = [0u8; 25];
        let mut len = write_hex(&mut id, u64::from(self.prefix), 8);
        id[len] = b'-';
        len += 1;
        len += write_hex(&mut id[len..], n, 1);
        Arc::from(std::str::from_utf8(&id[..len]).expect("hex digits are ASCII"))
    }
}

/// Writes `value` in lower-case hex, at least `min_digits` long (zeros in
/// front), at the start of `out`; returns the digits written.
fn write_hex(out: &mut [u8], value: u64, min_digits: usize) -> usize {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let significant = (64 - value.leading_zeros() as usize).div_ceil(4);
    let digits = significant.max(min_digits);
    for (i, slot) in out[..digits].iter_mut().enumerate() {
        let shift = 4 * (digits - 1 - i);
        *slot = DIGITS[((value >> shift) & 0xf) as usize];
    }
    digits
}

/// The host a request names, as `[modules.NAME] hosts` lists them: from the
/// URI's authority (HTTP/2, absolute-form) or the `Host` header, without
/// the port or a trailing dot, in lower case.
pub(crate) fn request_host<'r>(
    uri: &'r http::Uri,
    headers: &'r http::HeaderMap,
) -> Option<Cow<'r, str>> {
    let authority = match uri.authority() {
        Some(authority) => authority.as_str(),
        None => headers.get(header::HOST)?.to_str().ok()?,
    };
    let authority = authority.rsplit('@').next().unwrap_or_default();
    // `[::1]:8080` keeps its brackets; `name:8080` loses the port.
    let host = match authority.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            host
        }
        _ => authority,
    };
    let host = host.trim_end_matches('.');
    if host.is_empty() {
        None
    } else if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        // Most clients send the host in lower case: no copy.
        Some(Cow::Borrowed(host))
    }
}

#[cfg(test)]
mod tests {
    use super::{Ordering, RequestIds, X_REQUEST_ID, request_host};
    use crate::future_size;
    use crate::listener::TimedBody;

    #[test]
    fn request_ids_are_generated_unless_a_usable_one_is_given() {
        let ids = RequestIds::new();
        let empty = http::HeaderMap::new();
        let first = ids.for_request(&empty);
        let second = ids.for_request(&empty);
        let prefix = format!("{:08x}-", ids.prefix);
        assert_eq!(&*first, format!("{prefix}1"));
        assert_eq!(&*second, format!("{prefix}2"));
        // The largest counter still fits the id's buffer.
        ids.next.store(u64::MAX, Ordering::Relaxed);
        assert_eq!(
            &*ids.for_request(&empty),
            format!("{prefix}ffffffffffffffff")
        );
        // Short prefixes keep their 8 digits; counters have no padding.
        let padded = RequestIds {
            prefix: 0xab,
            next: std::sync::atomic::AtomicU64::new(0),
        };
        assert_eq!(&*padded.for_request(&empty), "000000ab-0");
        assert_eq!(&*padded.for_request(&empty), "000000ab-1");
        padded.next.store(0x10, Ordering::Relaxed);
        assert_eq!(&*padded.for_request(&empty), "000000ab-10");

        let mut given = http::HeaderMap::new();
        given.insert(&X_REQUEST_ID, "abc-123".parse().unwrap());
        assert_eq!(&*ids.for_request(&given), "abc-123");
        given.insert(&X_REQUEST_ID, "has space".parse().unwrap());
        assert!(ids.for_request(&given).starts_with(&prefix));
    }

    fn host_of(uri: &str, header: Option<&str>) -> Option<String> {
        let mut request = http::Request::builder().uri(uri);
        if let Some(header) = header {
            request = request.header("host", header);
        }
        let request = request.body(()).unwrap();
        request_host(request.uri(), request.headers()).map(std::borrow::Cow::into_owned)
    }

    #[test]
    fn request_hosts_are_normalised() {
        assert_eq!(
            host_of("/", Some("App.Example:8080")).as_deref(),
            Some("app.example")
        );
        assert_eq!(
            host_of("/", Some("app.example.")).as_deref(),
            Some("app.example")
        );
        assert_eq!(host_of("/", Some("[::1]:8080")).as_deref(), Some("[::1]"));
        assert_eq!(host_of("/", Some("[::1]")).as_deref(), Some("[::1]"));
        assert_eq!(
            host_of("http://u@site.example:81/x", Some("other")).as_deref(),
            Some("site.example")
        );
        assert_eq!(host_of("/", None), None);
        assert_eq!(host_of("/", Some("")), None);
    }

    /// Every request builds this future, each connection holds one, and
    /// hyper moves it once per request; the rare paths (a WebSocket
    /// upgrade, a CGI run, instantiating into an empty pool) are boxed so
    /// that they do not set its size. Unboxed, it is 4,208 bytes. Checked
    /// in optimised builds (the test suite's), as the WebSocket task's
    /// size is.
    #[test]
    #[cfg(all(not(debug_assertions), target_pointer_width = "64"))]
    fn the_request_future_leaves_the_rare_paths_boxed() {
        let size = future_size(&super::HttpTrigger::handle::<TimedBody>);
        assert!(
            size < 3584,
            "the request future is {size} bytes: a rare path is no longer boxed?"
        );
    }
}
