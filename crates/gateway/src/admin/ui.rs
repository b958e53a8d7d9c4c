//! The web dashboard: plain HTML, CSS and ES modules from `admin/ui/`,
//! embedded in the binary (no build step, no CDN, no external fonts) and
//! served by the admin listener at `/ui/`, with `/` redirecting there.
//!
//! The assets hold no data, so they are public; every figure the page shows
//! comes from the admin API with the same bearer token as any other client
//! (the page keeps it in `sessionStorage`). A strict Content-Security-Policy
//! lets the page load only its own scripts and styles and talk only to its
//! own origin.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::{Deserialize, Serialize};

/// `[admin.dashboard]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Serve the dashboard at `/ui/` (the admin API itself is unaffected).
    pub enabled: bool,
    /// Log tail polls (`GET /admin/logs`) waiting at once; more get 503
    /// `too_many_clients`.
    pub max_log_clients: usize,
    /// Log lines the live tail keeps in memory; a browser further behind
    /// misses the older ones (counted as dropped).
    pub log_buffer_lines: usize,
    /// How long a log tail poll waits for a new line, in milliseconds.
    pub log_poll_timeout_ms: u64,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_log_clients: 8,
            log_buffer_lines: 2000,
            log_poll_timeout_ms: 20_000,
        }
    }
}

/// The embedded files: name under `/ui/`, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("ui/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("ui/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("ui/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("ui/api.js"),
    ),
    (
        "chart.js",
        "text/javascript; charset=utf-8",
        include_bytes!("ui/chart.js"),
    ),
    (
        "views.js",
        "text/javascript; charset=utf-8",
        include_bytes!("ui/views.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("ui/favicon.svg"),
    ),
];

/// Only this origin's scripts, styles and API; no frames, no plugins.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Whether `path` belongs to the dashboard (`/`, `/ui`, `/ui/...`).
pub(crate) fn is_ui_path(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

/// The answer to a `GET` of a dashboard path: a redirect, an asset, or
/// `None` when there is no such file.
pub(crate) fn serve(path: &str) -> Option<Response<Full<Bytes>>> {
    if path == "/" || path == "/ui" {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::FOUND;
        response
            .headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/ui/"));
        return Some(response);
    }
    let name = match path.strip_prefix("/ui/")? {
        "" => "index.html",
        name => name,
    };
    let (_, content_type, bytes) = ASSETS.iter().find(|(file, _, _)| *file == name)?;
    let mut response = Response::new(Full::new(Bytes::from_static(bytes)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Assets change with the binary: revalidate rather than serve stale.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(response)
}

/// The embedded assets' total size, in bytes.
#[cfg(test)]
fn total_bytes() -> usize {
    ASSETS.iter().map(|(_, _, bytes)| bytes.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_served_and_small() {
        assert_eq!(serve("/").unwrap().status(), StatusCode::FOUND);
        let index = serve("/ui/").unwrap();
        assert_eq!(index.status(), StatusCode::OK);
        assert!(
            index.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("connect-src 'self'")
        );
        assert!(serve("/ui/app.js").is_some());
        assert!(serve("/ui/../mod.rs").is_none());
        assert!(serve("/ui/nothing.js").is_none());
        // The docs promise small assets: keep them under 64 KiB.
        assert!(total_bytes() < 64 * 1024, "{} bytes", total_bytes());
    }
}
