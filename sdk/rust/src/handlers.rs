//! [`Handlers`]: the table of user code a module registers, and the traits
//! that let handlers return plain values or `Result`s.

use std::collections::BTreeMap;
use std::fmt::{self, Display};

use http::{Request, Response};

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

type HttpHandler = Box<dyn Fn(Request<Vec<u8>>) -> Result<Response<Vec<u8>>, String>>;
type ByteFunction = Box<dyn Fn(&[u8]) -> Result<Vec<u8>, String>>;

/// The user code of a module: at most one HTTP handler and any number of
/// byte functions, each under a name.
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
}

impl fmt::Debug for Handlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handlers")
            .field("http", &self.has_http())
            .field("functions", &self.functions.keys().collect::<Vec<_>>())
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
            r#"Handlers { http: false, functions: ["b"] }"#
        );
        assert_eq!(handlers.function_names().collect::<Vec<_>>(), ["b"]);
    }
}
