//! `bench-reference-ws`: the native baseline that `scripts/bench-ws.sh`
//! measures the gateway's WebSocket trigger against, as reported in
//! `docs/benchmarks.md`.
//!
//! It does what the gateway does for the Go `ws-echo` module — every text
//! or binary message goes back to its sender as it came — without any
//! WebSocket module. The listener matches the gateway's
//! (`crates/gateway/src/server.rs`): a multi-thread tokio runtime,
//! hyper-util's auto connection builder with upgrades, `TCP_NODELAY`; the
//! WebSocket protocol is tokio-tungstenite's, the library axum's WebSocket
//! support is built on. Any path is accepted.
//!
//! With `--fanout` it instead does what `bench/ws-fanout` does: every
//! connection joins one room when it opens, and a text message
//! `fanout:<payload>` sends `<payload>` to every member, sender included,
//! through a per-connection queue that the connection's task drains.
//!
//! `--read-buffer BYTES` sets tungstenite's read buffer, which it
//! allocates and zero-fills per connection on the first read: at its
//! default of 128 KiB that buffer is what an idle connection costs.
//!
//! ```text
//! bench-reference-ws --listen 127.0.0.1:8093 [--fanout] [--read-buffer 4096]
//! ```
//!
//! It prints `listening on http://ADDR` on stdout once it accepts connections.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Message, Role, WebSocketConfig};

const USAGE: &str = "usage: bench-reference-ws [--listen ADDR] [--fanout] [--read-buffer BYTES]";

/// What the server was asked to be.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Options {
    listen: SocketAddr,
    fanout: bool,
    read_buffer: Option<usize>,
}

/// The fan-out room: every connection's queue.
#[derive(Default)]
struct Room {
    next_id: AtomicU64,
    members: Mutex<HashMap<u64, mpsc::UnboundedSender<Message>>>,
}

fn main() {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the async runtime");
    if let Err(err) = runtime.block_on(serve(options)) {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        listen: SocketAddr::from(([127, 0, 0, 1], 8093)),
        fanout: false,
        read_buffer: None,
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or(format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--listen" => {
                let v = value()?;
                options.listen = v.parse().map_err(|err| format!("--listen {v}: {err}"))?;
            }
            "--read-buffer" => {
                let v = value()?;
                let bytes = v
                    .parse()
                    .map_err(|err| format!("--read-buffer {v}: {err}"))?;
                options.read_buffer = Some(bytes);
            }
            "--fanout" if inline.is_none() => options.fanout = true,
            _ => return Err(format!("unknown argument `{flag}`")),
        }
    }
    Ok(options)
}

async fn serve(options: Options) -> std::io::Result<()> {
    let listener = TcpListener::bind(options.listen).await?;
    // Scripts read the address from this line, as they do the gateway's.
    println!("listening on http://{}", listener.local_addr()?);
    let builder = auto::Builder::new(TokioExecutor::new());
    let room = Arc::new(Room::default());
    let mut config = WebSocketConfig::default();
    if let Some(bytes) = options.read_buffer {
        config = config.read_buffer_size(bytes);
    }
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
        let room = (options.fanout).then(|| room.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let room = room.clone();
                async move { Ok::<_, Infallible>(upgrade(request, room, config)) }
            });
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Answers the upgrade request and starts the connection's task.
fn upgrade(
    mut request: Request<Incoming>,
    room: Option<Arc<Room>>,
    config: WebSocketConfig,
) -> Response<Full<Bytes>> {
    let Some(key) = request.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return plain(StatusCode::BAD_REQUEST, "a WebSocket upgrade is expected");
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        match room {
            Some(room) => fanout(ws, &room).await,
            None => echo(ws).await,
        }
    });
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    response
}

type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// Sends every data message back. tungstenite answers pings and the
/// client's close frame itself, while the stream is polled.
async fn echo(mut ws: Ws) {
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
}

/// Joins the room, broadcasts `fanout:` messages, and writes what the
/// room queued for this connection.
async fn fanout(mut ws: Ws, room: &Room) {
    let id = room.next_id.fetch_add(1, Ordering::Relaxed);
    let (queue, mut queued) = mpsc::unbounded_channel();
    room.members.lock().unwrap().insert(id, queue);
    loop {
        tokio::select! {
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Some(payload) = text.as_str().strip_prefix("fanout:") {
                        let message = Message::text(payload);
                        for member in room.members.lock().unwrap().values() {
                            let _ = member.send(message.clone());
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            Some(message) = queued.recv() => {
                if ws.send(message).await.is_err() {
                    break;
                }
            }
        }
    }
    room.members.lock().unwrap().remove(&id);
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> impl Iterator<Item = String> {
        a.iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn parses_flags() {
        let defaults = parse_args(args(&[])).unwrap();
        assert_eq!(defaults.listen.port(), 8093);
        assert!(!defaults.fanout);
        assert_eq!(defaults.read_buffer, None);
        let set = parse_args(args(&[
            "--listen=127.0.0.1:0",
            "--fanout",
            "--read-buffer",
            "4096",
        ]))
        .unwrap();
        assert_eq!(set.listen.port(), 0);
        assert!(set.fanout);
        assert_eq!(set.read_buffer, Some(4096));
        assert!(parse_args(args(&["--read-buffer"])).is_err());
        assert!(parse_args(args(&["--fanout=1"])).is_err());
        assert!(parse_args(args(&["--nope"])).is_err());
    }
}
