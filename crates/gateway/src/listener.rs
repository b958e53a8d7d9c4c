//! What the HTTP and admin listeners share: the accept loop with its
//! connection caps, and the timers that stop a client from holding a
//! connection (and its file descriptor) without using it.
//!
//! - **Caps.** A listener holds at most `max_connections` connections, and
//!   at most `max_connections_per_ip` from one address. A connection over
//!   a cap is accepted, answered 503 `too_many_connections` when the socket
//!   takes it at once, and closed: the listener never stops accepting, so
//!   its backlog cannot fill with connections it would never look at. The
//!   caps count a connection until its socket closes, WebSocket
//!   connections that left hyper included.
//! - **Header timeout.** The request head must arrive within
//!   `header_timeout_ms` of the connection opening (or, for the next
//!   request on a kept-alive HTTP/1.1 connection, of the previous
//!   response's last write); the connection is closed otherwise, without
//!   an answer. A client that stops reading a response for that long is
//!   closed the same way.
//! - **Body timeout.** The whole request body must arrive within
//!   `body_timeout_ms` of the head; otherwise the request is answered 408
//!   `body_timeout` with the usual JSON error, and the connection closed.
//! - **Keep-alive timeout.** A connection with no request in flight and no
//!   byte moving either way for `keepalive_timeout_ms` is closed. A
//!   WebSocket connection has left hyper by then and is not watched: the
//!   WebSocket trigger has its own idle handling.
//!
//! Every socket is a file descriptor: [`raise_nofile_limit`] raises the
//! soft `RLIMIT_NOFILE` to the hard one at start, and the default caps are
//! derived from it so that connections alone can never exhaust it.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::config::ConfigError;
use crate::http::error::ApiError;

/// A listener's connection settings as the config gives them (`[server]`
/// and `[admin]` have the same keys).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListenerSettings {
    pub(crate) header_timeout_ms: u64,
    pub(crate) body_timeout_ms: u64,
    pub(crate) keepalive_timeout_ms: u64,
    /// `None`: derived from `RLIMIT_NOFILE`.
    pub(crate) max_connections: Option<usize>,
    /// `None`: a quarter of `max_connections`.
    pub(crate) max_connections_per_ip: Option<usize>,
}

impl ListenerSettings {
    /// Checks the values of section `section`.
    pub(crate) fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let positive = [
            ("header_timeout_ms", self.header_timeout_ms),
            ("body_timeout_ms", self.body_timeout_ms),
            ("keepalive_timeout_ms", self.keepalive_timeout_ms),
            (
                "max_connections",
                self.max_connections.map_or(1, |n| n as u64),
            ),
            (
                "max_connections_per_ip",
                self.max_connections_per_ip.map_or(1, |n| n as u64),
            ),
        ];
        match positive.iter().find(|(_, value)| *value == 0) {
            Some((key, _)) => Err(ConfigError::Invalid(format!(
                "{section}.{key} must be positive"
            ))),
            None => Ok(()),
        }
    }

    /// The limits, with the caps the config leaves out derived from
    /// `default_max_connections`.
    pub(crate) fn resolve(
        &self,
        name: &'static str,
        default_max_connections: usize,
    ) -> ConnectionLimits {
        let max_connections = self
            .max_connections
            .unwrap_or(default_max_connections)
            .max(1);
        ConnectionLimits {
            name,
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            body_timeout: Duration::from_millis(self.body_timeout_ms),
            keepalive_timeout: Duration::from_millis(self.keepalive_timeout_ms),
            max_connections,
            max_connections_per_ip: self
                .max_connections_per_ip
                .unwrap_or(max_connections / 4)
                .max(1),
        }
    }
}

/// One listener's limits, resolved.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimits {
    /// The listener, in logs and metrics: `http` or `admin`.
    pub(crate) name: &'static str,
    pub(crate) header_timeout: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) keepalive_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_ip: usize,
}

/// The file-descriptor limit the process runs with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NofileLimit {
    /// The soft limit found at start.
    pub(crate) before: u64,
    /// The soft limit now (the hard limit, when raising it worked).
    pub(crate) now: u64,
}

impl NofileLimit {
    /// The default `max_connections` of the HTTP listener: half the file
    /// descriptors, so that module files, the caches, the admin listener,
    /// TCP triggers, MQTT and outbound requests keep the other half.
    pub(crate) fn http_default(&self) -> usize {
        usize::try_from(self.now / 2).unwrap_or(usize::MAX).max(1)
    }

    /// The default `max_connections` of the admin listener: 64, or an
    /// eighth of the descriptors when that is fewer.
    pub(crate) fn admin_default(&self) -> usize {
        usize::try_from(self.now / 8)
            .unwrap_or(usize::MAX)
            .clamp(1, 64)
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (a busy gateway needs
/// descriptors; the default soft limit is often 1024) and returns it.
// `rlim_t` is 32 bits on some targets we ship (armv7): the conversions are
// not useless there.
#[allow(unsafe_code, clippy::useless_conversion)]
pub(crate) fn raise_nofile_limit() -> NofileLimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through the pointer, which
    // points to a live local of that type.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        // Unknown: assume the common default.
        return NofileLimit {
            before: 1024,
            now: 1024,
        };
    }
    let before = u64::from(limit.rlim_cur);
    // An unlimited hard limit cannot be the soft one on Linux (setrlimit
    // refuses more than fs.nr_open).
    let mut target = if limit.rlim_max == libc::RLIM_INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .unwrap_or(1 << 20)
    } else {
        u64::from(limit.rlim_max)
    };
    if target <= before {
        return NofileLimit {
            before,
            now: before,
        };
    }
    target = target.min(u64::from(libc::rlim_t::MAX));
    let raised = libc::rlimit {
        rlim_cur: libc::rlim_t::try_from(target).unwrap_or(limit.rlim_cur),
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads one `rlimit` through the pointer, which
    // points to a live local of that type.
    let now = if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        target
    } else {
        before
    };
    NofileLimit { before, now }
}

/// The connections a listener holds: in all and by remote address.
struct ConnectionTable {
    limits: Arc<ConnectionLimits>,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Total,
    PerIp,
    /// The process is out of file descriptors.
    Descriptors,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Self::Total => "max_connections",
            Self::PerIp => "max_connections_per_ip",
            Self::Descriptors => "file_descriptors",
        }
    }
}

impl ConnectionTable {
    /// Counts a new connection from `ip`, or says which cap it is over.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        let ip = ip.to_canonical();
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if self.total.load(Ordering::Relaxed) >= self.limits.max_connections {
            return Err(Refusal::Total);
        }
        let held = per_ip.entry(ip).or_insert(0);
        if *held >= self.limits.max_connections_per_ip {
            return Err(Refusal::PerIp);
        }
        *held += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(ConnectionSlot {
            table: self.clone(),
            ip,
        })
    }
}

/// One counted connection; dropping it (with the socket) frees its place.
struct ConnectionSlot {
    table: Arc<ConnectionTable>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut per_ip = self.table.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = per_ip.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                per_ip.remove(&self.ip);
            }
        }
        self.table.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the keep-alive and header watchdog needs to know of a connection.
/// Requests only store into it: the watchdog's one timer wakes at the
/// earliest deadline it last computed and reads it then, so a request
/// costs no timer of its own.
struct Activity {
    opened: Instant,
    /// Milliseconds after `opened` when a byte last moved, or a request
    /// last finished.
    last: AtomicU64,
    /// Milliseconds after `opened` when the wait for the next request head
    /// began: 0, then the last write of each response on HTTP/1.1.
    head_wait: AtomicU64,
    in_flight: AtomicUsize,
    /// Whether requests arrive as HTTP/2 streams (known from the first),
    /// whose connection has no "next head" to wait for.
    multiplexed: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            last: AtomicU64::new(0),
            head_wait: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            multiplexed: AtomicBool::new(false),
        }
    }

    fn since_opened(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.last.store(self.since_opened(), Ordering::Relaxed);
    }

    /// A response (or part of one) went out: the keep-alive clock and the
    /// next head's clock start again.
    fn touch_response(&self) {
        let ms = self.since_opened();
        self.last.store(ms, Ordering::Relaxed);
        self.head_wait.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.opened + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    /// When the next request head is due, if one is awaited.
    fn head_due(&self, header_timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 || self.multiplexed.load(Ordering::Relaxed) {
            return None;
        }
        let waiting_since = Duration::from_millis(self.head_wait.load(Ordering::Relaxed));
        Some(self.opened + waiting_since + header_timeout)
    }

    fn begin_request(self: &Arc<Self>, version: http::Version) -> RequestGuard {
        if version == http::Version::HTTP_2 {
            self.multiplexed.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        RequestGuard(self.clone())
    }
}

/// A request in flight; the connection is not idle while one exists.
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        // The response is about to be written: the keep-alive clock starts
        // now, not when the request's last byte arrived.
        self.0.touch_response();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy)]
enum Expired {
    Header,
    KeepAlive,
}

impl Expired {
    fn label(self) -> &'static str {
        match self {
            Self::Header => "header_timeout",
            Self::KeepAlive => "keepalive_timeout",
        }
    }
}

/// Finishes when the connection has been idle too long: no request head
/// within the header timeout of opening or, on HTTP/1.1, of the previous
/// response's last write (a silent socket, a stalled head, a kept-alive
/// connection that sends nothing more), or no request in flight and no
/// byte moving for the keep-alive timeout. One timer per connection,
/// woken at the earliest deadline: hyper's own header timer cost a timer
/// registration and an allocation on every request.
async fn watchdog(activity: &Activity, limits: &ConnectionLimits) -> Expired {
    loop {
        let now = Instant::now();
        let mut next = now + limits.keepalive_timeout;
        if let Some(head_by) = activity.head_due(limits.header_timeout) {
            if now >= head_by {
                return Expired::Header;
            }
            next = next.min(head_by);
        }
        if activity.in_flight.load(Ordering::Relaxed) == 0 {
            let idle_by = activity.last() + limits.keepalive_timeout;
            if now >= idle_by {
                return Expired::KeepAlive;
            }
            next = next.min(idle_by);
        }
        tokio::time::sleep_until(next).await;
    }
}

/// A connection's socket: notes every byte that moves while it serves
/// HTTP, and holds the connection's place in the caps for as long as the
/// socket lives (after a WebSocket upgrade too).
pub(crate) struct CountedStream {
    stream: TcpStream,
    /// The HTTP phase's idle tracking; `None` once the stream has left
    /// HTTP (a WebSocket upgrade), when nothing reads it any more.
    activity: Option<Arc<Activity>>,
    _slot: ConnectionSlot,
}

impl CountedStream {
    /// Called by whoever takes the stream over after an upgrade: the
    /// listener's watchdog is gone with the HTTP connection, so the
    /// tracking it read is dropped here rather than kept, 64 bytes, for
    /// the life of every WebSocket.
    pub(crate) fn leave_http(&mut self) {
        self.activity = None;
    }

    fn touch(&self) {
        if let Some(activity) = &self.activity {
            activity.touch();
        }
    }

    fn touch_written(&self) {
        if let Some(activity) = &self.activity {
            activity.touch_response();
        }
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch_written();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch_written();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// The body did not arrive within `body_timeout_ms`.
    #[error("the request body did not arrive within {} ms (body_timeout_ms)", .0.as_millis())]
    Timeout(Duration),
    /// The connection failed.
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

/// A request body that must arrive whole by a deadline.
pub(crate) struct TimedBody {
    inner: Incoming,
    deadline: Instant,
    limit: Duration,
    /// Made on the first wait: a body that arrives with its head needs no
    /// timer.
    sleep: Option<Pin<Box<Sleep>>>,
    expired: Arc<AtomicBool>,
}

impl TimedBody {
    fn new(inner: Incoming, limit: Duration, expired: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            deadline: Instant::now() + limit,
            limit,
            sleep: None,
            expired,
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.expired.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(BodyError::Timeout(this.limit))));
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BodyError::Read)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyError::Timeout(this.limit))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Logs refused connections without letting a flood of them flood the
/// log: the first, then at most one line every 10 s with the count.
struct RefusalLog {
    refused: AtomicU64,
    last_line: Mutex<Option<Instant>>,
}

impl RefusalLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn refused(&self, limits: &ConnectionLimits, remote: SocketAddr, why: Refusal) {
        metrics::counter!("shanhai_connections_refused_total", "listener" => limits.name, "reason" => why.label())
            .increment(1);
        let count = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < Self::EVERY) {
            return;
        }
        *last = Some(Instant::now());
        self.refused.store(0, Ordering::Relaxed);
        let cap = match why {
            Refusal::Total => limits.max_connections,
            Refusal::PerIp => limits.max_connections_per_ip,
            Refusal::Descriptors => 0,
        };
        tracing::warn!(
            listener = limits.name,
            %remote,
            cap = why.label(),
            limit = cap,
            refused = count,
            "refusing connections over the cap (503 and closed)"
        );
    }
}

/// Answers a connection over a cap without waiting for it: 503 if the
/// socket takes the bytes at once, then closed.
fn refuse(stream: TcpStream, why: Refusal, limits: &ConnectionLimits) {
    let message = match why {
        Refusal::Total => format!(
            "the {} listener holds its maximum of {} connections",
            limits.name, limits.max_connections
        ),
        Refusal::PerIp => format!(
            "the {} listener holds its maximum of {} connections from one address",
            limits.name, limits.max_connections_per_ip
        ),
        Refusal::Descriptors => "the gateway is out of file descriptors".to_owned(),
    };
    let body = serde_json::json!({
        "error": "too_many_connections",
        "message": message,
        "module": null,
        "request_id": null,
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(response.as_bytes());
    // A request already received is read away, so that closing sends a
    // FIN after the 503 rather than a reset that could discard it.
    let mut discard = [0u8; 4096];
    let _ = stream.try_read(&mut discard);
}

/// Whether an accept failed for want of file descriptors.
fn out_of_descriptors(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(code) if code == libc::EMFILE || code == libc::ENFILE)
}

/// Accepts connections and serves each request with `handler` until told
/// to stop; returns the handle that drains the connections still open.
pub(crate) async fn accept_loop<F, R>(
    listener: TcpListener,
    limits: ConnectionLimits,
    handler: F,
    mut stop: watch::Receiver<bool>,
) -> GracefulShutdown
where
    F: Fn(Request<TimedBody>, SocketAddr) -> R + Clone + Send + Sync + 'static,
    R: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let limits = Arc::new(limits);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No hyper header timer: the watchdog enforces the header timeout,
    // with one timer per connection instead of one per request.
    builder.http1().header_read_timeout(None);
    let builder = Arc::new(builder);
    let table = Arc::new(ConnectionTable {
        limits: limits.clone(),
        total: AtomicUsize::new(0),
        per_ip: Mutex::new(HashMap::new()),
    });
    let refusals = RefusalLog {
        refused: AtomicU64::new(0),
        last_line: Mutex::new(None),
    };
    // Held so that, out of descriptors, one can be given back to accept
    // (and close) the connection at the head of the backlog, instead of
    // leaving every client waiting there.
    let mut spare = std::fs::File::open("/dev/null").ok();
    let connections = GracefulShutdown::new();
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) if out_of_descriptors(&err) => {
                    tracing::warn!(listener = limits.name, error = %err, "accept failed: out of file descriptors; closing the waiting connection");
                    drop(spare.take());
                    tokio::select! {
                        biased;
                        Ok((stream, remote)) = listener.accept() => {
                            refuse(stream, Refusal::Descriptors, &limits);
                            refusals.refused(&limits, remote, Refusal::Descriptors);
                        }
                        () = std::future::ready(()) => {}
                    }
                    spare = std::fs::File::open("/dev/null").ok();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(err) => {
                    tracing::warn!(listener = limits.name, error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stop.changed() => return connections,
        };
        let slot = match table.admit(remote.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                refuse(stream, why, &limits);
                refusals.refused(&limits, remote, why);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let io = CountedStream {
            stream,
            activity: Some(activity.clone()),
            _slot: slot,
        };
        let service = {
            let (handler, activity, limits) = (handler.clone(), activity.clone(), limits.clone());
            service_fn(move |request: Request<Incoming>| {
                let guard = activity.begin_request(request.version());
                let expired = Arc::new(AtomicBool::new(false));
                let request =
                    request.map(|body| TimedBody::new(body, limits.body_timeout, expired.clone()));
                Served {
                    response: handler(request, remote),
                    finish: Some(Finish {
                        guard,
                        expired,
                        limits: limits.clone(),
                        remote,
                    }),
                }
            })
        };
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let connection = connections.watch(connection);
        let limits = limits.clone();
        tokio::spawn(async move {
            tokio::select! {
                served = connection => if let Err(err) = served {
                    tracing::debug!(listener = limits.name, %remote, error = %err, "connection ended with an error");
                },
                expired = watchdog(&activity, &limits) => {
                    tracing::debug!(listener = limits.name, %remote, reason = expired.label(), "closing an idle connection");
                    metrics::counter!("shanhai_connections_closed_total", "listener" => limits.name, "reason" => expired.label())
                        .increment(1);
                }
            }
        });
    }
}

pin_project_lite::pin_project! {
    /// A request's handler future, and what the listener does once it is
    /// answered. A named future rather than an `async` block: a block that
    /// awaits a future it captured stores it twice (the capture and the
    /// await), and hyper moves this future once per request: the gateway's
    /// was 6,992 bytes as a block, and is the handler's 3,464 and 56 here.
    struct Served<R> {
        #[pin]
        response: R,
        finish: Option<Finish>,
    }
}

/// What [`Served`] needs once the handler has answered.
struct Finish {
    guard: RequestGuard,
    expired: Arc<AtomicBool>,
    limits: Arc<ConnectionLimits>,
    remote: SocketAddr,
}

impl<R: Future<Output = Response<Full<Bytes>>>> Future for Served<R> {
    type Output = Result<Response<Full<Bytes>>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.response.poll(cx));
        let finish = this.finish.take().expect("Served polled after it answered");
        if finish.expired.load(Ordering::Relaxed) {
            response = body_timeout_response(&response, &finish.limits, finish.remote);
        }
        // The guard drops here, as the response is about to be written.
        drop(finish.guard);
        Poll::Ready(Ok(response))
    }
}

/// The answer to a request whose body timed out, whatever the handler made
/// of the failed read: 408 `body_timeout`, and the connection closes (the
/// rest of the body may still be on its way).
fn body_timeout_response(
    handled: &Response<Full<Bytes>>,
    limits: &ConnectionLimits,
    remote: SocketAddr,
) -> Response<Full<Bytes>> {
    let request_id = handled.headers().get("x-request-id").cloned();
    let id = request_id
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::debug!(listener = limits.name, %remote, request_id = id, "request body timed out");
    metrics::counter!("shanhai_connections_closed_total", "listener" => limits.name, "reason" => "body_timeout")
        .increment(1);
    let mut response = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        BodyError::Timeout(limits.body_timeout).to_string(),
    )
    .into_response(id);
    let headers = response.headers_mut();
    if let Some(value) = request_id {
        headers.insert("x-request-id", value);
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize) -> Arc<ConnectionLimits> {
        Arc::new(
            ListenerSettings {
                header_timeout_ms: 1,
                body_timeout_ms: 1,
                keepalive_timeout_ms: 1,
                max_connections: Some(total),
                max_connections_per_ip: Some(per_ip),
            }
            .resolve("test", 1),
        )
    }

    /// hyper moves the service's future once per request: it holds the
    /// handler's future once, beside what the listener needs after it (an
    /// `async` block awaiting a captured future held it twice).
    #[test]
    fn a_served_request_holds_its_handler_future_once() {
        let handler = async {
            let held = [7u8; 2048];
            tokio::task::yield_now().await;
            Response::new(Full::new(Bytes::copy_from_slice(&held)))
        };
        let handler_size = std::mem::size_of_val(&handler);
        assert!(handler_size >= 2048);
        let served = Served {
            response: handler,
            finish: None,
        };
        assert!(
            std::mem::size_of_val(&served) <= handler_size + std::mem::size_of::<Finish>() + 8,
            "{} bytes around a {handler_size}-byte handler future",
            std::mem::size_of_val(&served)
        );
    }

    #[test]
    fn caps_count_by_address_and_free_on_drop() {
        let limits = limits(3, 2);
        let table = Arc::new(ConnectionTable {
            limits,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = table.admit(a).unwrap();
        // The same address as an IPv4-mapped IPv6 one counts as itself.
        let second = table.admit("::ffff:10.0.0.1".parse().unwrap()).unwrap();
        assert!(matches!(table.admit(a), Err(Refusal::PerIp)));
        let third = table.admit(b).unwrap();
        assert!(matches!(table.admit(b), Err(Refusal::Total)));
        drop(first);
        assert!(table.admit(a).is_ok());
        drop((second, third));
        assert_eq!(table.total.load(Ordering::Relaxed), 0);
        assert!(table.per_ip.lock().unwrap().is_empty());
    }

    #[test]
    fn derived_caps_stay_below_the_descriptor_limit() {
        let limit = NofileLimit {
            before: 256,
            now: 256,
        };
        let settings = ListenerSettings {
            header_timeout_ms: 1,
            body_timeout_ms: 1,
            keepalive_timeout_ms: 1,
            max_connections: None,
            max_connections_per_ip: None,
        };
        let http = settings.resolve("http", limit.http_default());
        let admin = settings.resolve("admin", limit.admin_default());
        assert_eq!(
            (http.max_connections, http.max_connections_per_ip),
            (128, 32)
        );
        assert_eq!(
            (admin.max_connections, admin.max_connections_per_ip),
            (32, 8)
        );
        assert!(http.max_connections + admin.max_connections < 256);
        assert!(settings.validate("server").is_ok());
        let zero = ListenerSettings {
            max_connections_per_ip: Some(0),
            ..settings
        };
        let err = zero.validate("server").unwrap_err().to_string();
        assert!(err.contains("server.max_connections_per_ip"), "{err}");
    }
}
