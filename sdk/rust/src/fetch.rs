//! Outbound HTTP through the host (`http_fetch`), with the `http` crate's
//! [`Request`] and [`Response`], as the HTTP trigger uses them.

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use shanhai_abi::import;
use shanhai_abi::wire::{Header, HttpRequest, HttpResponse};

use crate::{Error, HostError, host};

/// Sends `request` through the host and returns the response: a module
/// has no sockets of its own, so this is how it calls other services.
///
/// The request's URI must be absolute (`http://` or `https://`), and its
/// host on the module's `http` grant: `"host"` (ports 80 and 443),
/// `"host:port"`, `"host:*"` (any port), or `"*.domain"` (any subdomain)
/// with those port forms. A name never leads to a loopback, private or
/// link-local address; only an entry naming the address does:
///
/// ```toml
/// [modules.weather.grants]
/// http = ["api.weather.example", "127.0.0.1:8081", "*.internal.example"]
/// ```
///
/// The body is sent whole and the response arrives whole; redirects are
/// the host's to follow or not, and a `host` header in `request` is sent
/// as given.
///
/// ```
/// use shanhai_sdk::http::Request;
///
/// # fn f() -> Result<(), shanhai_sdk::Error> {
/// let request = Request::get("https://api.weather.example/today")
///     .header("accept", "application/json")
///     .body("")
///     .expect("a valid request");
/// let response = shanhai_sdk::fetch(request)?;
/// shanhai_sdk::info!("{}: {}", response.status(), String::from_utf8_lossy(response.body()));
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`HostError::Denied`] when the URL's host is not granted (the
/// [`Error`]'s message names it); [`HostError::InvalidArgument`] for a
/// URL that is not absolute; [`HostError::Unavailable`] when the
/// connection fails or times out; [`HostError::TooLarge`] when the
/// response exceeds the host's limit.
pub fn fetch<B: AsRef<[u8]>>(request: Request<B>) -> Result<Response<Vec<u8>>, Error> {
    let uri = request.uri().to_string();
    let envelope = HttpRequest {
        method: request.method().as_str(),
        uri: &uri,
        request_id: "",
        remote_addr: "",
        headers: request
            .headers()
            .iter()
            .map(|(name, value)| Header {
                name: name.as_str().as_bytes(),
                value: value.as_bytes(),
            })
            .collect(),
        body: request.body().as_ref(),
    }
    .encode();
    let len =
        host::http_fetch(&envelope).map_err(|kind| host::explain(import::HTTP_FETCH, kind))?;
    let bytes =
        host::read_staged(len).map_err(|kind| Error::new(import::HTTP_FETCH, kind, None))?;
    let malformed = |what: String| {
        Error::new(
            import::HTTP_FETCH,
            HostError::Internal,
            Some(format!("malformed response: {what}")),
        )
    };
    let wire = HttpResponse::decode(&bytes).map_err(|e| malformed(e.to_string()))?;
    let mut response = Response::new(wire.body.to_vec());
    *response.status_mut() =
        StatusCode::from_u16(wire.status).map_err(|e| malformed(e.to_string()))?;
    for header in &wire.headers {
        let name = HeaderName::from_bytes(header.name).map_err(|e| malformed(e.to_string()))?;
        let value = HeaderValue::from_bytes(header.value).map_err(|e| malformed(e.to_string()))?;
        response.headers_mut().append(name, value);
    }
    Ok(response)
}
