//! A small HTTP client for a gateway's admin API, shared by `deploy` and
//! `status`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Long enough for a large Go module's first compile on a small box.
const TIMEOUT: Duration = Duration::from_secs(300);

/// Talks to one admin API.
pub(crate) struct AdminClient {
    base: String,
    token: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// How the CLI authenticates to the admin API.
#[derive(clap::Args)]
pub(crate) struct AdminToken {
    /// Bearer token of the admin API.
    #[arg(
        long,
        global = true,
        env = "SHANHAI_ADMIN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Without --token, for an admin API on a loopback address: the file
    /// the gateway generated its token into (`admin.token_file`), if it
    /// exists.
    #[arg(long, global = true, default_value = ".shanhai/admin.token")]
    token_file: PathBuf,
}

impl AdminToken {
    /// The token to send to the admin API on `host`. The generated file is
    /// only read for a gateway on this machine: sending it elsewhere would
    /// hand a local secret to whoever runs that address.
    fn resolve(&self, host: &str) -> anyhow::Result<Option<String>> {
        if let Some(token) = self.token.clone().filter(|t| !t.is_empty()) {
            return Ok(Some(token));
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let local = host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !local {
            return Ok(None);
        }
        match std::fs::read_to_string(&self.token_file) {
            Ok(token) => Ok(Some(token.trim().to_owned())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).with_context(|| {
                format!("reading the admin token file {}", self.token_file.display())
            }),
        }
    }
}

impl AdminClient {
    /// A client for the admin API at `base` (`http://HOST:PORT`).
    pub(crate) fn new(base: &str, token: &AdminToken) -> anyhow::Result<Self> {
        let uri: Uri = base
            .parse()
            .with_context(|| format!("`{base}` is not a URL"))?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http") && uri.authority().is_some(),
            "`{base}`: expected http://HOST:PORT (the admin API speaks plain HTTP; reach a remote one through a tunnel or a TLS proxy)"
        );
        let token = token.resolve(uri.host().unwrap_or_default())?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.filter(|t| !t.is_empty()),
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// Sends a request and returns the JSON body of a successful answer;
    /// a failure carries the server's message.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let mut request = Request::builder().method(method.clone()).uri(&url);
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .with_context(|| format!("building the request to {url}"))?;
        let response = tokio::time::timeout(TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| anyhow::anyhow!("{method} {url}: no answer within {TIMEOUT:?}"))?
            .map_err(|err| {
                let hint = if err.is_connect() {
                    " (is a gateway running at that address, with its admin API on?)"
                } else {
                    ""
                };
                anyhow::Error::new(err).context(format!("{method} {url}{hint}"))
            })?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the answer of {method} {url}"))?
            .to_bytes();
        let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        if !status.is_success() {
            let message = json
                .as_ref()
                .and_then(|j| j["message"].as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
            let hint = if status == StatusCode::UNAUTHORIZED {
                " (pass --token, set SHANHAI_ADMIN_TOKEN, or run where --token-file can be read)"
            } else {
                ""
            };
            anyhow::bail!("{method} {url}: {status}: {message}{hint}");
        }
        json.with_context(|| format!("{method} {url}: the answer is not JSON"))
    }
}

/// A JSON number as a percentage: `50`, `12.5`.
pub(crate) fn percent(value: &serde_json::Value) -> String {
    match value.as_f64() {
        Some(p) if p.fract() == 0.0 => format!("{p:.0}%"),
        Some(p) => format!("{p}%"),
        None => "-".into(),
    }
}
