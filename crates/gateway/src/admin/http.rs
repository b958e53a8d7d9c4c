//! The admin API over HTTP, with JSON bodies:
//!
//! | request | does |
//! | --- | --- |
//! | `GET /admin/modules` | every module |
//! | `GET /admin/modules/NAME` | one module |
//! | `PUT /admin/modules/NAME` | upload: the body is the wasm, `X-Shanhai-Signature` its signature |
//! | `DELETE /admin/modules/NAME` | remove the file and unmount |
//! | `POST /admin/modules/NAME/reload` | reload from the file |
//! | `PUT /admin/modules/NAME/canary?weight=PERCENT` | start a canary: the body is the wasm, `X-Shanhai-Signature` its signature |
//! | `GET /admin/modules/NAME/canary` | the canary and both versions' figures |
//! | `POST /admin/modules/NAME/canary/promote` | make the canary the stable version |
//! | `DELETE /admin/modules/NAME/canary` | roll the canary back |
//! | `PUT /admin/compiled/SHA256` | import code compiled elsewhere for the module with that SHA-256: the body is the `.cwasm`, `X-Shanhai-Signature` its `.cwasm.sig` |
//! | `GET /admin/config` | the config, secrets redacted |
//! | `GET /admin/openapi.json` | the OpenAPI document of this API |
//! | `GET /admin/stats?since=UNIX_MS` | the dashboard's figures and samples |
//! | `GET /admin/logs?after=SEQ&module=&level=&request_id=&wait_ms=` | the live log tail (long poll) |
//! | `GET /`, `GET /ui/...` | the dashboard's page (public: it holds no data) |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /healthz`, `GET /readyz` | liveness, readiness |
//!
//! With a token (configured, or generated into `admin.token_file`),
//! everything but `/healthz` and `/readyz` needs `Authorization: Bearer
//! TOKEN`; a request without it changes nothing. Every request must name
//! this listener in `Host` and come from no other web origin (see
//! [`super::auth`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use super::auth::AdminAuth;
use super::{Admin, AdminError, MAX_COMPILED_BYTES, MAX_MODULE_BYTES};
use crate::http::RequestBody;

/// The header carrying an upload's signature: the text of `FILE.sig`.
const SIGNATURE_HEADER: &str = "x-shanhai-signature";

/// The OpenAPI 3.1 document of this API (`docs/admin-openapi.json`).
pub(crate) const OPENAPI_JSON: &str = include_str!("../../../../docs/admin-openapi.json");

/// Every resource the admin listener serves, as an OpenAPI path template,
/// with the methods it takes. [`Route::allows`] reads it, and a test
/// compares it with [`OPENAPI_JSON`] both ways, so the router and the
/// document cannot drift apart.
pub(crate) const ROUTES: &[(&str, &[Method])] = &[
    ("/healthz", &[Method::GET]),
    ("/readyz", &[Method::GET]),
    ("/metrics", &[Method::GET]),
    ("/admin/modules", &[Method::GET]),
    (
        "/admin/modules/{name}",
        &[Method::GET, Method::PUT, Method::DELETE],
    ),
    ("/admin/modules/{name}/reload", &[Method::POST]),
    (
        "/admin/modules/{name}/canary",
        &[Method::GET, Method::PUT, Method::DELETE],
    ),
    ("/admin/modules/{name}/canary/promote", &[Method::POST]),
    ("/admin/compiled/{sha256}", &[Method::PUT]),
    ("/admin/config", &[Method::GET]),
    ("/admin/openapi.json", &[Method::GET]),
    ("/admin/stats", &[Method::GET]),
    ("/admin/logs", &[Method::GET]),
    ("/", &[Method::GET]),
    ("/ui", &[Method::GET]),
    ("/ui/{file}", &[Method::GET]),
];

/// Handles admin HTTP requests.
pub(crate) struct AdminHttp {
    admin: Arc<Admin>,
    auth: AdminAuth,
    metrics: PrometheusHandle,
    next_id: AtomicU64,
}

/// The admin resources, from a request path.
enum Route<'a> {
    Health,
    Ready,
    Metrics,
    Modules,
    Module(&'a str),
    Reload(&'a str),
    Canary(&'a str),
    Promote(&'a str),
    Compiled(&'a str),
    Config,
    OpenApi,
    Stats,
    Logs,
    Ui(&'a str),
    NotFound,
}

impl<'a> Route<'a> {
    fn of(path: &'a str) -> Self {
        if super::ui::is_ui_path(path) {
            return Self::Ui(path);
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match segments.as_slice() {
            ["healthz"] => Self::Health,
            ["readyz"] => Self::Ready,
            ["metrics"] => Self::Metrics,
            ["admin", "modules"] | ["admin", "modules", ""] => Self::Modules,
            ["admin", "modules", name] => Self::Module(name),
            ["admin", "modules", name, "reload"] => Self::Reload(name),
            ["admin", "modules", name, "canary"] => Self::Canary(name),
            ["admin", "modules", name, "canary", "promote"] => Self::Promote(name),
            ["admin", "compiled", sha256] => Self::Compiled(sha256),
            ["admin", "config"] => Self::Config,
            ["admin", "openapi.json"] => Self::OpenApi,
            ["admin", "stats"] => Self::Stats,
            ["admin", "logs"] => Self::Logs,
            _ => Self::NotFound,
        }
    }

    /// The resource's path template in [`ROUTES`].
    fn template(&self) -> Option<&'static str> {
        Some(match self {
            Self::Health => "/healthz",
            Self::Ready => "/readyz",
            Self::Metrics => "/metrics",
            Self::Modules => "/admin/modules",
            Self::Module(_) => "/admin/modules/{name}",
            Self::Reload(_) => "/admin/modules/{name}/reload",
            Self::Canary(_) => "/admin/modules/{name}/canary",
            Self::Promote(_) => "/admin/modules/{name}/canary/promote",
            Self::Compiled(_) => "/admin/compiled/{sha256}",
            Self::Config => "/admin/config",
            Self::OpenApi => "/admin/openapi.json",
            Self::Stats => "/admin/stats",
            Self::Logs => "/admin/logs",
            Self::Ui("/") => "/",
            Self::Ui("/ui") => "/ui",
            Self::Ui(_) => "/ui/{file}",
            Self::NotFound => return None,
        })
    }

    /// The methods a resource takes, from [`ROUTES`].
    fn allows(&self) -> &'static [Method] {
        self.template()
            .and_then(|template| ROUTES.iter().find(|(path, _)| *path == template))
            .map_or(&[], |(_, methods)| methods)
    }
}

/// An error response: the HTTP trigger's JSON shape.
struct Failure {
    status: StatusCode,
    kind: &'static str,
    message: String,
    module: Option<String>,
}

impl From<AdminError> for Failure {
    fn from(err: AdminError) -> Self {
        let status = match &err {
            AdminError::BadName(_) | AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::UnknownModule(_) => StatusCode::NOT_FOUND,
            AdminError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::LoadFailed { .. } | AdminError::CompiledRefused(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            AdminError::Conflict { .. } => StatusCode::CONFLICT,
            AdminError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self {
            status,
            kind: err.kind(),
            module: err.module().map(str::to_owned),
            message: err.to_string(),
        }
    }
}

impl Failure {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            module: None,
        }
    }
}

impl AdminHttp {
    pub(crate) fn new(admin: Arc<Admin>, auth: AdminAuth, metrics: PrometheusHandle) -> Self {
        Self {
            admin,
            auth,
            metrics,
            next_id: AtomicU64::new(1),
        }
    }

    /// Handles one request; every failure is a JSON error response.
    pub(crate) async fn handle(&self, request: Request<impl RequestBody>) -> Response<Full<Bytes>> {
        let request_id = format!("admin-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let has_body = !request.body().is_end_stream();
        let mut response = match self.dispatch(request).await {
            Ok(response) => response,
            Err(failure) => {
                if failure.status.is_server_error() {
                    tracing::warn!(%method, path, kind = failure.kind, "admin request failed: {}", failure.message);
                }
                let mut response = json(
                    failure.status,
                    &serde_json::json!({
                        "error": failure.kind,
                        "message": failure.message,
                        "module": failure.module,
                        "request_id": request_id,
                    }),
                );
                let headers = response.headers_mut();
                if failure.status == StatusCode::UNAUTHORIZED {
                    headers.insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"shanhai-admin\""),
                    );
                }
                // RFC 9110 §15.5.6: a 405 names the methods the resource takes.
                if failure.status == StatusCode::METHOD_NOT_ALLOWED {
                    let allowed: Vec<&str> = Route::of(&path)
                        .allows()
                        .iter()
                        .map(Method::as_str)
                        .collect();
                    if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
                        headers.insert(header::ALLOW, value);
                    }
                }
                // The body may be unread (a refused upload): the connection
                // cannot carry another request after it.
                if has_body {
                    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                response
            }
        };
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-request-id", value);
        }
        response
    }

    async fn dispatch(
        &self,
        request: Request<impl RequestBody>,
    ) -> Result<Response<Full<Bytes>>, Failure> {
        if let Err(refusal) = self.auth.check_origin(request.headers()) {
            tracing::warn!(
                kind = refusal.kind,
                path = request.uri().path(),
                "admin request refused: {}",
                refusal.message
            );
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                refusal.kind,
                refusal.message,
            ));
        }
        let route = Route::of(request.uri().path());
        let public = matches!(route, Route::Health | Route::Ready | Route::Ui(_));
        if !public && !self.auth.allows(request.headers()) {
            return Err(Failure::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the admin API needs `Authorization: Bearer TOKEN` with the configured token",
            ));
        }
        let allowed = route.allows();
        if !allowed.is_empty() && !allowed.contains(request.method()) {
            let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
            let mut failure = Failure::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} takes {}", request.uri().path(), names.join(", ")),
            );
            failure.module = match route {
                Route::Module(name)
                | Route::Reload(name)
                | Route::Canary(name)
                | Route::Promote(name) => Some(name.to_owned()),
                _ => None,
            };
            return Err(failure);
        }
        let admin = &self.admin;
        match route {
            Route::Health => Ok(text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n")),
            Route::Ready => {
                let (ready, body) = admin.readiness();
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                Ok(json(status, &body))
            }
            Route::Metrics => Ok(text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics.render(),
            )),
            Route::Modules => Ok(json(StatusCode::OK, &admin.list())),
            Route::Config => Ok(json(StatusCode::OK, &admin.config())),
            Route::OpenApi => Ok(text(StatusCode::OK, "application/json", OPENAPI_JSON)),
            Route::Stats => {
                let since = query_number(request.uri().query(), "since")?;
                Ok(json(StatusCode::OK, &admin.stats(since.unwrap_or(0))))
            }
            Route::Logs => {
                let query = super::logtail::LogQuery::parse(
                    request.uri().query(),
                    admin.log_poll_timeout(),
                )
                .map_err(AdminError::BadRequest)?;
                match admin.log_poll(&query).await {
                    Some(batch) => Ok(json(StatusCode::OK, &batch)),
                    None => Err(Failure::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too_many_clients",
                        "too many log tail clients wait already (admin.dashboard.max_log_clients); try again later",
                    )),
                }
            }
            Route::Ui(path) => match admin.dashboard_enabled().then(|| super::ui::serve(path)) {
                Some(Some(response)) => Ok(response),
                _ => Err(Failure::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no dashboard file at {path} (admin.dashboard.enabled)"),
                )),
            },
            Route::Module(name) => match *request.method() {
                Method::GET => Ok(json(StatusCode::OK, &admin.get(name)?)),
                Method::DELETE => Ok(json(StatusCode::OK, &admin.delete(name).await?)),
                _ => {
                    let name = name.to_owned();
                    let (wasm, signature) = read_upload(request, MAX_MODULE_BYTES).await?;
                    Ok(json(
                        StatusCode::OK,
                        &admin.upload(&name, wasm, signature).await?,
                    ))
                }
            },
            Route::Reload(name) => Ok(json(StatusCode::OK, &admin.reload(name).await?)),
            Route::Canary(name) => match *request.method() {
                Method::GET => {
                    let module = admin.get(name)?;
                    Ok(json(StatusCode::OK, &module.canary_view()))
                }
                Method::DELETE => Ok(json(StatusCode::OK, &admin.canary_rollback(name).await?)),
                _ => {
                    let name = name.to_owned();
                    let query = request.uri().query().map(str::to_owned);
                    // The body is read first, so a refusal reaches a client
                    // still sending it.
                    let (wasm, signature) = read_upload(request, MAX_MODULE_BYTES).await?;
                    let weight = query_weight(query.as_deref())?;
                    Ok(json(
                        StatusCode::OK,
                        &admin.canary_deploy(&name, wasm, signature, weight).await?,
                    ))
                }
            },
            Route::Promote(name) => Ok(json(StatusCode::OK, &admin.canary_promote(name).await?)),
            Route::Compiled(sha256) => {
                let sha256 = sha256.to_owned();
                let (code, signature) = read_upload(request, MAX_COMPILED_BYTES).await?;
                Ok(json(
                    StatusCode::OK,
                    &admin.import_compiled(&sha256, code, signature).await?,
                ))
            }
            Route::NotFound => Err(Failure::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "no admin resource at {}; see /admin/modules",
                    request.uri().path()
                ),
            )),
        }
    }
}

/// The number in query parameter `name`, when there is one.
fn query_number(query: Option<&str>, name: &str) -> Result<Option<u64>, Failure> {
    let Some(value) = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    else {
        return Ok(None);
    };
    value.parse().map(Some).map_err(|_| {
        AdminError::BadRequest(format!("{name}: `{value}` is not a whole number")).into()
    })
}

/// The `weight` query parameter of a canary upload, in percent.
fn query_weight(query: Option<&str>) -> Result<f64, Failure> {
    let value = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("weight="))
        .ok_or_else(|| {
            AdminError::BadRequest(
                "a canary needs its share of traffic: ?weight=PERCENT (above 0, at most 100)"
                    .into(),
            )
        })?;
    value
        .parse()
        .map_err(|_| AdminError::BadRequest(format!("weight: `{value}` is not a number")).into())
}

/// The body (a module or compiled code, within `limit` bytes) and
/// signature header of an upload.
async fn read_upload(
    request: Request<impl RequestBody>,
    limit: usize,
) -> Result<(Vec<u8>, Option<String>), Failure> {
    let (parts, body) = request.into_parts();
    let signature = match parts.headers.get(SIGNATURE_HEADER) {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| {
                    AdminError::BadRequest(format!("{SIGNATURE_HEADER} is not printable text"))
                })?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(AdminError::TooLarge(limit).into());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok((collected.to_bytes().into(), signature)),
        Err(err)
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(AdminError::TooLarge(limit).into())
        }
        Err(err) => Err(AdminError::BadRequest(format!("reading the body: {err}")).into()),
    }
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).expect("admin responses serialise");
    text(status, "application/json", body)
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// `(template, METHOD)` for every operation of the OpenAPI document.
    fn documented() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let paths = doc["paths"].as_object().expect("paths");
        let mut operations = BTreeSet::new();
        for (path, item) in paths {
            for method in item.as_object().unwrap().keys() {
                if [
                    "get", "put", "post", "delete", "patch", "head", "options", "trace",
                ]
                .contains(&method.as_str())
                {
                    operations.insert((path.clone(), method.to_ascii_uppercase()));
                }
            }
        }
        operations
    }

    fn served() -> BTreeSet<(String, String)> {
        ROUTES
            .iter()
            .flat_map(|(path, methods)| {
                methods
                    .iter()
                    .map(|method| (path.to_string(), method.to_string()))
            })
            .collect()
    }

    #[test]
    fn the_openapi_document_has_every_route_and_no_other() {
        let (documented, served) = (documented(), served());
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty(),
            "served but not in docs/admin-openapi.json: {undocumented:?}"
        );
        assert!(
            unserved.is_empty(),
            "in docs/admin-openapi.json but not served: {unserved:?}"
        );
    }

    #[test]
    fn every_route_template_reaches_its_route() {
        for (template, methods) in ROUTES {
            let path = template
                .replace("{name}", "hello")
                .replace("{sha256}", &"ab".repeat(32))
                .replace("{file}", "app.js");
            let route = Route::of(&path);
            assert_eq!(route.template(), Some(*template), "{path}");
            assert_eq!(route.allows(), *methods, "{path}");
        }
        for path in [
            "/admin",
            "/admin/modules/a/b",
            "/admin/openapi.yaml",
            "/uix",
        ] {
            assert!(Route::of(path).template().is_none(), "{path}");
            assert!(Route::of(path).allows().is_empty(), "{path}");
        }
    }
}
