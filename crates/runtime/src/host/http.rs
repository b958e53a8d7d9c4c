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

use std::time::{Duration, Instant};

use shanhai_abi::wire::{Header, HttpRequest, HttpResponse};
use shanhai_abi::{HostStatus, IMPORT_MODULE, import};
use wasmtime::{Caller, Linker};

use super::{HostState, denied, fail, guest_bytes, stage};

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

/// The process's HTTP client for guests.
#[derive(Debug)]
pub(crate) struct OutboundHttp {
    client: reqwest::Client,
    settings: OutboundHttpSettings,
}

impl OutboundHttp {
    pub(crate) fn new(settings: OutboundHttpSettings) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.timeout)
            .build()
            .expect("building the outbound HTTP client");
        Self { client, settings }
    }
}

/// A request as the guest asked for it, copied out of guest memory.
struct Outbound {
    method: reqwest::Method,
    url: reqwest::Url,
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
    let url = match reqwest::Url::parse(request.uri) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => url,
        Ok(url) => {
            return invalid(
                state,
                format!("scheme `{}` is not http or https", url.scheme()),
            );
        }
        Err(err) => {
            return invalid(
                state,
                format!("`{}` is not an absolute URL: {err}", request.uri),
            );
        }
    };
    let Ok(method) = reqwest::Method::from_bytes(request.method.as_bytes()) else {
        return invalid(state, format!("`{}` is not an HTTP method", request.method));
    };
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(80);
    if !state.module.grants.allows_http(host, port) {
        let detail = format!("outbound HTTP to {host}:{port} is not granted (grants.http)");
        return Err(denied(state, "http", detail));
    }
    Ok(Outbound {
        method,
        url,
        headers: request
            .headers
            .iter()
            // The client sets Host from the URL; a guest's own could
            // disagree with the host the grant was checked against.
            .filter(|h| !h.name.eq_ignore_ascii_case(b"host"))
            .map(|h| (h.name.to_vec(), h.value.to_vec()))
            .collect(),
        body: request.body.to_vec(),
    })
}

/// Sends the request and reads the response within the limits.
async fn send(
    http: &OutboundHttp,
    request: Outbound,
    deadline: Instant,
) -> Result<Vec<u8>, (HostStatus, String)> {
    let timeout = http
        .settings
        .timeout
        .min(deadline.saturating_duration_since(Instant::now()));
    let url = request.url.clone();
    let mut builder = http
        .client
        .request(request.method, request.url)
        .timeout(timeout)
        .body(request.body);
    for (name, value) in request.headers {
        let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(&name),
            reqwest::header::HeaderValue::from_bytes(&value),
        ) else {
            return Err((
                HostStatus::InvalidArgument,
                "a request header is malformed".into(),
            ));
        };
        builder = builder.header(name, value);
    }
    let unavailable = |err: reqwest::Error| {
        let what = if err.is_timeout() {
            "timed out"
        } else {
            "failed"
        };
        (
            HostStatus::Unavailable,
            format!("request to {url} {what}: {err}"),
        )
    };
    let read = async {
        let mut response = builder.send().await.map_err(unavailable)?;
        let limit = http.settings.max_response_bytes;
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err((
                HostStatus::TooLarge,
                format!("the response body exceeds {limit} bytes"),
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
            if body.len() + chunk.len() > limit {
                return Err((
                    HostStatus::TooLarge,
                    format!("the response body exceeds {limit} bytes"),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let headers: Vec<_> = response
            .headers()
            .iter()
            .map(|(name, value)| Header {
                name: name.as_str().as_bytes(),
                value: value.as_bytes(),
            })
            .collect();
        Ok(HttpResponse {
            status: response.status().as_u16(),
            headers,
            body: &body,
        }
        .encode())
    };
    // The timeout covers the body as well as the headers.
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| {
            Err((
                HostStatus::Unavailable,
                format!("request to {url} timed out"),
            ))
        })
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
                let services = state.module.services.clone();
                let http = services
                    .http
                    .get_or_init(|| OutboundHttp::new(OutboundHttpSettings::default()));
                let result = send(http, request, state.event.deadline).await;
                let state = caller.data_mut();
                match result {
                    Ok(response) => stage(state, response),
                    Err((status, message)) => fail(state, status, message),
                }
            })
        },
    )?;
    Ok(())
}
