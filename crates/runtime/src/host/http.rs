//! `shanhai::http_fetch`: outbound HTTP requests to the hosts a module is
//! granted.
//!
//! The request is an [`HttpRequest`] envelope whose `uri` is an absolute
//! URL; the response is staged as an [`HttpResponse`]. Redirects are not
//! followed (a 3xx reaches the guest as is), so a granted host cannot
//! bounce a request to one that is not. The time limit is the smaller of
//! [`OutboundHttpSettings::timeout`] and what is left of the event's
//! deadline; the body is read up to
//! [`OutboundHttpSettings::max_response_bytes`].
//!
//! Two checks guard every request. The URL's host and port must match the
//! module's `http` grant ([`Grants::allows_http`]). Then the addresses the
//! host resolves to are checked where the connection is made
//! ([`GuardedConnector`]): a loopback, private, link-local or otherwise
//! [restricted](restricted_address) address is refused unless the grant
//! names that address itself, so a name whose DNS a module's author
//! controls cannot lead to the gateway's admin API, a cloud metadata
//! service or the LAN. The connection goes to the very address that was
//! checked (no second lookup); the `Host` header and the TLS server name
//! stay the URL's. Each module has its own client and connection pool, so
//! no module reuses a connection another module's grant allowed.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use shanhai_abi::grant::{Grants, restricted_address};
use shanhai_abi::wire::{Header, HttpRequest, HttpResponse};
use shanhai_abi::{HostStatus, IMPORT_MODULE, import};
use wasmtime::{Caller, Linker};

use super::{HostState, denied, fail, guest_bytes, log_limited, stage};

/// Limits of outbound HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundHttpSettings {
    /// Longest a request may take, connecting included.
    pub timeout: Duration,
    /// Largest response body; a bigger one fails with `too_large`.
    pub max_response_bytes: usize,
}

impl Default for OutboundHttpSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_response_bytes: 4 << 20,
        }
    }
}

/// Outbound HTTP for the whole process: the limits, and the TLS settings
/// every module's client shares.
#[derive(Debug)]
pub(crate) struct OutboundHttp {
    settings: OutboundHttpSettings,
    tls: rustls::ClientConfig,
}

impl OutboundHttp {
    pub(crate) fn new(settings: OutboundHttpSettings) -> Self {
        // ring is the one provider linked in; naming it keeps the client
        // working should another crate ever link a second one.
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls' default protocol versions")
        .with_webpki_roots()
        .with_no_client_auth();
        Self { settings, tls }
    }

    /// A client for one module, whose connections reach only what
    /// `grants` allows.
    pub(crate) fn client_for(&self, grants: &Grants) -> ModuleHttpClient {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(self.tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(GuardedConnector {
                grants: Arc::new(grants.clone()),
            });
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .build(connector);
        ModuleHttpClient(client)
    }
}

/// How long an idle connection to a granted host is kept for reuse.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per host and module.
const POOL_MAX_IDLE_PER_HOST: usize = 4;
/// Refused addresses named in one error message: the SDKs read at most
/// 1 KiB of it.
const MAX_ADDRESSES_NAMED: usize = 4;

/// One module's HTTP client, with its own connection pool.
pub(crate) struct ModuleHttpClient(Client<HttpsConnector<GuardedConnector>, Full<Bytes>>);

impl std::fmt::Debug for ModuleHttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ModuleHttpClient")
    }
}

/// Resolves the URL's host, keeps the addresses the module may reach
/// ([`allowed_addresses`]) and connects to one of them: the check and the
/// connection see the same address.
#[derive(Clone)]
pub(crate) struct GuardedConnector {
    grants: Arc<Grants>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<http::Uri> for GuardedConnector {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let grants = Arc::clone(&self.grants);
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or("the URL has no host")?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let resolved: Vec<SocketAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => tokio::net::lookup_host((host.as_str(), port))
                    .await?
                    .collect(),
            };
            let allowed = allowed_addresses(&grants, &host, port, &resolved)?;
            let mut last_error = None;
            for addr in allowed {
                match tokio::net::TcpStream::connect(addr).await {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        return Ok(TokioIo::new(stream));
                    }
                    Err(err) => last_error = Some(err),
                }
            }
            Err(last_error.map_or_else(|| "no address to connect to".into(), Into::into))
        })
    }
}

/// The addresses of `resolved` the module may connect to: every public
/// one, and a restricted one only when the grant names it. `Err` when
/// none is left.
fn allowed_addresses(
    grants: &Grants,
    host: &str,
    port: u16,
    resolved: &[SocketAddr],
) -> Result<Vec<SocketAddr>, AddressRefused> {
    let mut refused = Vec::new();
    let mut allowed = Vec::new();
    for addr in resolved {
        match restricted_address(addr.ip()) {
            Some(kind) if !grants.names_http_address(addr.ip(), port) => {
                refused.push((addr.ip(), kind));
            }
            _ => allowed.push(*addr),
        }
    }
    if allowed.is_empty() {
        return Err(AddressRefused {
            host: host.to_owned(),
            port,
            refused,
        });
    }
    Ok(allowed)
}

/// Every address a host resolved to is restricted, and the grant names
/// none of them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AddressRefused {
    host: String,
    port: u16,
    refused: Vec<(IpAddr, &'static str)>,
}

impl std::fmt::Display for AddressRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            host,
            port,
            refused,
            ..
        } = self;
        if refused.is_empty() {
            return write!(
                f,
                "outbound HTTP to {host}:{port} refused: {host} has no address"
            );
        }
        write!(
            f,
            "outbound HTTP to {host}:{port} refused: {host} resolves to "
        )?;
        for (i, (ip, kind)) in refused.iter().take(MAX_ADDRESSES_NAMED).enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            write!(f, "{separator}{ip} ({kind})")?;
        }
        if refused.len() > MAX_ADDRESSES_NAMED {
            write!(f, " and {} more", refused.len() - MAX_ADDRESSES_NAMED)?;
        }
        let (ip, _) = refused[0];
        let example = SocketAddr::new(ip, *port);
        write!(
            f,
            "; such an address is reached only through a grant that names it (grants.http = [\"{example}\"])"
        )
    }
}

impl std::error::Error for AddressRefused {}

/// A request as the guest asked for it, copied out of guest memory.
struct Outbound {
    method: http::Method,
    uri: http::Uri,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

/// Decodes and checks a request; `Err` is the status, its message staged.
fn outbound(state: &mut HostState, bytes: &[u8]) -> Result<Outbound, i32> {
    let invalid = |state: &mut HostState, message: String| {
        Err(fail(state, HostStatus::InvalidArgument, message))
    };
    let request = match HttpRequest::decode(bytes) {
        Ok(request) => request,
        Err(err) => return invalid(state, format!("bad request envelope: {err}")),
    };
    let mut url = match url::Url::parse(request.uri) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => url,
        Ok(url) => {
            return invalid(
                state,
                format!("`{}` is not an http:// or https:// URL with a host", url),
            );
        }
        Err(err) => {
            return invalid(
                state,
                format!("`{}` is not an absolute URL: {err}", request.uri),
            );
        }
    };
    let Ok(method) = http::Method::from_bytes(request.method.as_bytes()) else {
        return invalid(state, format!("`{}` is not an HTTP method", request.method));
    };
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(80);
    if !state.module.grants.allows_http(host, port) {
        let detail = format!("outbound HTTP to {host}:{port} is not granted (grants.http)");
        return Err(denied(state, "http", detail));
    }
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = request
        .headers
        .iter()
        // The client sets Host from the URL; a guest's own could
        // disagree with the host the grant was checked against.
        .filter(|h| !h.name.eq_ignore_ascii_case(b"host"))
        .map(|h| (h.name.to_vec(), h.value.to_vec()))
        .collect();
    // Credentials in the URL become basic authentication, as browsers and
    // Go's net/http send them.
    if !url.username().is_empty() || url.password().is_some() {
        let credentials = format!("{}:{}", url.username(), url.password().unwrap_or(""));
        let credentials = percent_decode(&credentials);
        let value = format!("Basic {}", base64(&credentials));
        headers.push((b"authorization".to_vec(), value.into_bytes()));
        let _ = url.set_username("");
        let _ = url.set_password(None);
    }
    url.set_fragment(None);
    let Ok(uri) = url.as_str().parse::<http::Uri>() else {
        return invalid(state, format!("`{url}` is not a URL the client can send"));
    };
    Ok(Outbound {
        method,
        uri,
        headers,
        body: request.body.to_vec(),
    })
}

/// `%XX` escapes decoded, as userinfo is percent-encoded in a URL.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Why a request failed.
enum SendError {
    /// No address of the host may be reached.
    Refused(AddressRefused),
    /// Any other failure: the status and the message for the guest.
    Failed(HostStatus, String),
}

/// Sends the request and reads the response within the limits.
async fn send(
    client: &ModuleHttpClient,
    settings: &OutboundHttpSettings,
    request: Outbound,
    deadline: Instant,
) -> Result<Vec<u8>, SendError> {
    let timeout = settings
        .timeout
        .min(deadline.saturating_duration_since(Instant::now()));
    let uri = request.uri.clone();
    let mut builder = http::Request::builder()
        .method(request.method)
        .uri(request.uri);
    for (name, value) in request.headers {
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&name),
            http::HeaderValue::from_bytes(&value),
        ) else {
            return Err(SendError::Failed(
                HostStatus::InvalidArgument,
                "a request header is malformed".into(),
            ));
        };
        builder = builder.header(name, value);
    }
    let request = builder
        .body(Full::new(Bytes::from(request.body)))
        .map_err(|err| {
            SendError::Failed(HostStatus::InvalidArgument, format!("bad request: {err}"))
        })?;
    let failed = |what: &str, err: &dyn std::error::Error| {
        SendError::Failed(
            HostStatus::Unavailable,
            format!("request to {uri} {what}: {}", error_chain(err)),
        )
    };
    let too_large = |limit: usize| {
        SendError::Failed(
            HostStatus::TooLarge,
            format!("the response body exceeds {limit} bytes"),
        )
    };
    let read = async {
        let response = client
            .0
            .request(request)
            .await
            .map_err(|err| match refusal(&err) {
                Some(refused) => SendError::Refused(refused.clone()),
                None => failed("failed", &err),
            })?;
        let (parts, mut body) = response.into_parts();
        let limit = settings.max_response_bytes;
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large(limit));
        }
        let mut collected = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|err| failed("failed", &err))?;
            if let Ok(chunk) = frame.into_data() {
                if collected.len() + chunk.len() > limit {
                    return Err(too_large(limit));
                }
                collected.extend_from_slice(&chunk);
            }
        }
        let headers: Vec<_> = parts
            .headers
            .iter()
            .map(|(name, value)| Header {
                name: name.as_str().as_bytes(),
                value: value.as_bytes(),
            })
            .collect();
        Ok(HttpResponse {
            status: parts.status.as_u16(),
            headers,
            body: &collected,
        }
        .encode())
    };
    // The timeout covers the body as well as the headers.
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| {
            Err(SendError::Failed(
                HostStatus::Unavailable,
                format!("request to {uri} timed out"),
            ))
        })
}

/// The address refusal somewhere in `err`'s chain of causes.
fn refusal<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a AddressRefused> {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if let Some(refused) = err.downcast_ref::<AddressRefused>() {
            return Some(refused);
        }
        cause = err.source();
    }
    None
}

/// `err` and its causes, `: `-separated (hyper's own message is terse).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        text.push_str(": ");
        text.push_str(&err.to_string());
        cause = err.source();
    }
    text
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        IMPORT_MODULE,
        import::HTTP_FETCH,
        |mut caller: Caller<'_, HostState>, (ptr, len): (i32, i32)| {
            Box::new(async move {
                caller.data_mut().event.staged = None;
                let (bytes, state) = match guest_bytes(&mut caller, ptr, len) {
                    Ok(found) => found,
                    Err(status) => return status as i32,
                };
                let bytes = bytes.to_vec();
                let request = match outbound(state, &bytes) {
                    Ok(request) => request,
                    Err(status) => return status,
                };
                let module = Arc::clone(&state.module);
                let http = module
                    .services
                    .http
                    .get_or_init(|| OutboundHttp::new(OutboundHttpSettings::default()));
                let client = module
                    .http_client
                    .get_or_init(|| http.client_for(&module.grants));
                let result = send(client, &http.settings, request, state.event.deadline).await;
                let state = caller.data_mut();
                match result {
                    Ok(response) => stage(state, response),
                    Err(SendError::Refused(refused)) => {
                        let message = refused.to_string();
                        if log_limited(state, "http-address") {
                            let addresses: Vec<String> = refused
                                .refused
                                .iter()
                                .map(|(ip, _)| ip.to_string())
                                .collect();
                            tracing::warn!(
                                module = &*state.module.name,
                                request_id = &*state.event.request_id,
                                host = refused.host,
                                port = refused.port,
                                addresses = addresses.join(", "),
                                "{message}"
                            );
                        }
                        fail(state, HostStatus::Denied, message)
                    }
                    Err(SendError::Failed(status, message)) => fail(state, status, message),
                }
            })
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(http: &[&str]) -> Grants {
        Grants {
            http: http.iter().map(|entry| entry.to_string()).collect(),
            ..Grants::default()
        }
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn restricted_addresses_are_dropped_unless_named() {
        let name_only = grants(&["db.example:5432"]);
        let resolved = addrs(&["10.0.0.5:5432", "[fd00::5]:5432"]);
        let refused = allowed_addresses(&name_only, "db.example", 5432, &resolved).unwrap_err();
        assert_eq!(refused.refused.len(), 2);
        let message = refused.to_string();
        assert!(
            message.contains("10.0.0.5 (a private address)"),
            "{message}"
        );
        assert!(message.contains("fd00::5"), "{message}");
        assert!(message.contains("10.0.0.5:5432"), "{message}");

        let named = grants(&["db.example:5432", "10.0.0.5:5432"]);
        assert_eq!(
            allowed_addresses(&named, "db.example", 5432, &resolved).unwrap(),
            addrs(&["10.0.0.5:5432"])
        );
        // The address is named for another port only.
        let other_port = grants(&["db.example:5432", "10.0.0.5:6543"]);
        assert!(allowed_addresses(&other_port, "db.example", 5432, &resolved).is_err());

        // Public addresses stay; restricted ones beside them are dropped.
        let mixed = addrs(&[
            "127.0.0.1:443",
            "93.184.215.14:443",
            "[::ffff:169.254.169.254]:443",
        ]);
        assert_eq!(
            allowed_addresses(&grants(&["example.org"]), "example.org", 443, &mixed).unwrap(),
            addrs(&["93.184.215.14:443"])
        );
    }

    #[test]
    fn a_long_refusal_names_a_few_addresses() {
        let resolved: Vec<SocketAddr> = (1..=20)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 80)))
            .collect();
        let refused = allowed_addresses(&grants(&["many.example"]), "many.example", 80, &resolved)
            .unwrap_err();
        let message = refused.to_string();
        assert!(message.contains("and 16 more"), "{message}");
        assert!(message.len() < 1024, "{message}");
    }

    #[test]
    fn credentials_become_basic_authentication() {
        assert_eq!(base64(b"user:pw"), "dXNlcjpwdw==");
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(percent_decode("a%40b:p%2"), b"a@b:p%2");
    }
}
