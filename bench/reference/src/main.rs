//! `bench-reference`: the baseline that `scripts/bench.sh` measures the
//! gateway against, as reported in `docs/benchmarks.md`.
//!
//! It answers `POST /api/exec/add/add` exactly as the gateway does for the
//! Go `add` example module — a JSON array of two numbers in, their sum as a
//! JSON number out (`[2.5,3.7]` → `6.2`), `content-type: application/json`
//! and an `x-request-id` header — but computes the sum natively instead of
//! calling into WebAssembly. Everything else matches the gateway's listener
//! (`crates/gateway/src/server.rs`): a multi-thread tokio runtime, hyper-util's
//! auto (HTTP/1.1 + h2c) connection builder, `TCP_NODELAY`. The ratio of the
//! gateway's throughput to this server's is therefore the cost of routing
//! through the module registry and the wasm call.
//!
//! ```text
//! bench-reference --listen 127.0.0.1:8092
//! ```
//!
//! It prints `listening on http://ADDR` on stdout once it accepts connections.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// The route the gateway serves the Go `add` module's `add` export at.
const ADD_PATH: &str = "/api/exec/add/add";

/// The gateway's default per-module request limit; bodies past it get 413.
const MAX_BODY_BYTES: usize = 1 << 20;

fn main() {
    let listen = match parse_listen(std::env::args().skip(1)) {
        Ok(addr) => addr,
        Err(message) => {
            eprintln!("error: {message}\nusage: bench-reference [--listen ADDR]");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the async runtime");
    if let Err(err) = runtime.block_on(serve(listen)) {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}

fn parse_listen(mut args: impl Iterator<Item = String>) -> Result<SocketAddr, String> {
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 8092));
    while let Some(arg) = args.next() {
        let value = match arg.split_once('=') {
            Some(("--listen", value)) => value.to_owned(),
            _ if arg == "--listen" => args.next().ok_or("--listen needs an address")?,
            _ => return Err(format!("unknown argument `{arg}`")),
        };
        listen = value
            .parse()
            .map_err(|err| format!("--listen {value}: {err}"))?;
    }
    Ok(listen)
}

async fn serve(listen: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    // Scripts read the address from this line, as they do the gateway's.
    println!("listening on http://{}", listener.local_addr()?);
    let builder = auto::Builder::new(TokioExecutor::new());
    let ids = Arc::new(AtomicU64::new(1));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                // Usually fd exhaustion: back off instead of spinning.
                eprintln!("accept failed: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let ids = ids.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let id = ids.fetch_add(1, Ordering::Relaxed);
                async move { Ok::<_, Infallible>(handle(request, id).await) }
            });
            // Clients closing mid-request are expected under load.
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(request: Request<Incoming>, id: u64) -> Response<Full<Bytes>> {
    let mut response = if request.uri().path() != ADD_PATH {
        error(
            StatusCode::NOT_FOUND,
            "not_found",
            "only POST /api/exec/add/add is served",
        )
    } else if request.method() != Method::POST {
        error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "takes POST",
        )
    } else {
        match Limited::new(request.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
        {
            Ok(body) => match add(&body.to_bytes()) {
                Ok(sum) => json(StatusCode::OK, &sum),
                Err(message) => error(StatusCode::BAD_REQUEST, "bad_arguments", &message),
            },
            Err(err) => error(StatusCode::BAD_REQUEST, "bad_request", &err.to_string()),
        }
    };
    // The gateway tags every response; keep the bytes on the wire comparable.
    if let Ok(value) = HeaderValue::from_str(&format!("00000000-{id:x}")) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Sums a JSON array of two numbers, as the gateway's `exec` route does for
/// an `add(f64, f64) f64` export; a non-finite sum is `null`.
fn add(body: &[u8]) -> Result<serde_json::Value, String> {
    let values: Vec<serde_json::Value> = serde_json::from_slice(body)
        .map_err(|err| format!("body must be a JSON array of numbers: {err}"))?;
    let [a, b] = values.as_slice() else {
        return Err(format!(
            "`add` takes 2 argument(s) (f64, f64), got {}",
            values.len()
        ));
    };
    let number = |v: &serde_json::Value| {
        v.as_f64()
            .ok_or_else(|| format!("argument ({v}) is not a valid f64"))
    };
    let sum = number(a)? + number(b)?;
    Ok(
        serde_json::Number::from_f64(sum)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
    )
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response<Full<Bytes>> {
    json(
        status,
        &serde_json::json!({ "error": kind, "message": message }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_like_the_gateway() {
        assert_eq!(add(b"[2.5,3.7]").unwrap().to_string(), "6.2");
        assert_eq!(add(b"[1, 2]").unwrap().to_string(), "3.0");
        assert!(add(b"[1]").is_err());
        assert!(add(b"[\"1\", 2]").is_err());
        assert!(add(b"{").is_err());
    }

    #[test]
    fn parses_listen_flag() {
        let args = |a: &[&str]| {
            a.iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<_>>()
                .into_iter()
        };
        assert_eq!(parse_listen(args(&[])).unwrap().port(), 8092);
        assert_eq!(
            parse_listen(args(&["--listen", "127.0.0.1:0"]))
                .unwrap()
                .port(),
            0
        );
        assert_eq!(
            parse_listen(args(&["--listen=127.0.0.1:9"]))
                .unwrap()
                .port(),
            9
        );
        assert!(parse_listen(args(&["--port", "1"])).is_err());
    }
}
