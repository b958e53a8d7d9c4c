//! The JSON error shape every failure answers with.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use shanhai_runtime::InvokeError;

use crate::registry::Lookup;

/// A failed request: status, stable kind, message and the module involved.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) message: String,
    pub(crate) module: Option<String>,
    /// Seconds for `Retry-After` on 503s.
    pub(crate) retry_after: Option<u32>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            module: None,
            retry_after: None,
        }
    }

    /// 404 `unknown_module`: no module of that name is loaded.
    pub(crate) fn unknown_module(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_module",
            format!("no module named `{name}` is loaded"),
        )
        .module(name)
    }

    /// 503 `loading`: the module is still loading at start; retry soon.
    pub(crate) fn loading(name: &str) -> Self {
        let mut err = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "loading",
            format!("module `{name}` is still loading; retry shortly"),
        )
        .module(name);
        err.retry_after = Some(1);
        err
    }

    /// The answer to a lookup that found no module serving: 503 while it
    /// loads, 404 when there is none.
    pub(crate) fn not_serving<T>(lookup: Lookup<T>, name: &str) -> Result<T, Self> {
        match lookup {
            Lookup::Found(found) => Ok(found),
            Lookup::Loading(name) => Err(Self::loading(&name)),
            Lookup::Missing => Err(Self::unknown_module(name)),
        }
    }

    pub(crate) fn module(mut self, name: &str) -> Self {
        self.module = Some(name.to_owned());
        self
    }

    /// Maps an invocation failure to its HTTP status.
    pub(crate) fn from_invoke(err: &InvokeError, module: &str) -> Self {
        let status = match err {
            InvokeError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            InvokeError::QueueFull(_)
            | InvokeError::QueueTimeout(_)
            | InvokeError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            InvokeError::NotFound(_) | InvokeError::NoHandler(_) => StatusCode::NOT_FOUND,
            InvokeError::BadArguments(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut api = Self::new(status, err.kind(), err.to_string()).module(module);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            api.retry_after = Some(1);
        }
        api
    }

    pub(crate) fn into_response(self, request_id: &str) -> Response<Full<Bytes>> {
        let body = serde_json::json!({
            "error": self.kind,
            "message": self.message,
            "module": self.module,
            "request_id": request_id,
        });
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::UPGRADE_REQUIRED {
            // RFC 6455 §4.4: say which WebSocket version we speak.
            headers.insert("sec-websocket-version", HeaderValue::from_static("13"));
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
