//! The TCP stream trigger: listeners (`[tcp.NAME]`) that cut a byte stream
//! into frames and run a module on each.
//!
//! Frames of one connection are handled one at a time, in order, and each
//! reply is written before the next frame is read: a request/response
//! protocol like Modbus/TCP needs no more. A malformed or oversized frame,
//! a failed event, a client that completes no frame within the idle
//! timeout or does not take a reply within the write timeout: each closes
//! that connection with a log line; the listener and every other
//! connection carry on.

mod config;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use shanhai_abi::EventKind;
use shanhai_abi::wire::{TcpEvent, TcpEventType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use self::config::{Framing, TcpConfig};
use crate::config::ConfigError;
use crate::metered::{self, TriggerMetrics};
use crate::registry::{Lookup, ModuleRegistry};

/// Why a stream cannot be cut into frames; the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// The frame would exceed `max_frame_bytes`.
    #[error("frame of {0} bytes exceeds max_frame_bytes ({1})")]
    TooLarge(usize, usize),
    /// No delimiter within `max_frame_bytes`.
    #[error("no delimiter within max_frame_bytes ({0})")]
    NoDelimiter(usize),
    /// A Modbus header with a protocol id other than 0.
    #[error("Modbus protocol id {0} (must be 0)")]
    ModbusProtocol(u16),
    /// A Modbus length outside 2..=254.
    #[error("Modbus length {0} (must be 2 to 254)")]
    ModbusLength(u16),
}

/// A validated framing with its parameters.
#[derive(Debug, Clone)]
pub(crate) struct Framer {
    framing: Framing,
    length_bytes: usize,
    delimiter: Vec<u8>,
    max_frame: usize,
}

/// The MBAP header: transaction (2), protocol (2), length (2), unit (1).
const MBAP_BYTES: usize = 7;

/// Bytes received and not yet cut into frames, with how far the search
/// for a delimiter got, so that each byte is searched once however the
/// stream is split into reads.
#[derive(Debug, Default)]
pub(crate) struct Unframed {
    pub(crate) bytes: BytesMut,
    /// Every delimiter that starts before this offset has been looked for.
    scanned: usize,
}

impl Unframed {
    /// Whether no byte waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[cfg(test)]
thread_local! {
    /// Bytes the delimiter search has looked at, for the linearity test.
    static SEARCHED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl Framer {
    /// The framer of `[tcp.NAME]`, or why its settings are invalid.
    pub(crate) fn of(name: &str, config: &TcpConfig) -> Result<Self, ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(format!("tcp.{name}.{message}")));
        if config.max_frame_bytes == 0 {
            return invalid("max_frame_bytes must be positive".into());
        }
        if config.framing == Framing::Length && ![1, 2, 4].contains(&config.length_bytes) {
            return invalid(format!(
                "length_bytes is {}: use 1, 2 or 4",
                config.length_bytes
            ));
        }
        if config.framing == Framing::Delimiter && config.delimiter.is_empty() {
            return invalid("delimiter must not be empty".into());
        }
        Ok(Self {
            framing: config.framing,
            length_bytes: config.length_bytes,
            delimiter: config.delimiter.as_bytes().to_vec(),
            max_frame: config.max_frame_bytes,
        })
    }

    /// Takes the next whole frame from the front of `unframed`: `None` when
    /// more bytes are needed. Fails as soon as the bytes show the frame is
    /// bad.
    pub(crate) fn next_frame(&self, unframed: &mut Unframed) -> Result<Option<Bytes>, FrameError> {
        let buf = &mut unframed.bytes;
        match self.framing {
            Framing::Length => {
                let n = self.length_bytes;
                if buf.len() < n {
                    return Ok(None);
                }
                let len = buf[..n]
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
                if len > self.max_frame {
                    return Err(FrameError::TooLarge(len, self.max_frame));
                }
                if buf.len() < n + len {
                    return Ok(None);
                }
                buf.advance(n);
                Ok(Some(buf.split_to(len).freeze()))
            }
            Framing::Delimiter => {
                let d = &self.delimiter;
                // Only where a delimiter could start that was not looked at
                // yet: a frame trickling in byte by byte costs linear time.
                let from = unframed.scanned.min(buf.len());
                let unsearched = &buf[from..];
                #[cfg(test)]
                SEARCHED.with(|n| n.set(n.get() + unsearched.len()));
                let found = unsearched
                    .windows(d.len())
                    .position(|w| w == d.as_slice())
                    .map(|at| from + at);
                match found {
                    Some(at) if at > self.max_frame => {
                        Err(FrameError::TooLarge(at, self.max_frame))
                    }
                    Some(at) => {
                        let frame = buf.split_to(at).freeze();
                        buf.advance(d.len());
                        unframed.scanned = 0;
                        Ok(Some(frame))
                    }
                    None if buf.len() > self.max_frame + d.len() => {
                        Err(FrameError::NoDelimiter(self.max_frame))
                    }
                    None => {
                        unframed.scanned = buf.len().saturating_sub(d.len() - 1);
                        Ok(None)
                    }
                }
            }
            Framing::Modbus => {
                if buf.len() < MBAP_BYTES {
                    return Ok(None);
                }
                let protocol = u16::from_be_bytes([buf[2], buf[3]]);
                if protocol != 0 {
                    return Err(FrameError::ModbusProtocol(protocol));
                }
                let length = u16::from_be_bytes([buf[4], buf[5]]);
                if !(2..=254).contains(&length) {
                    return Err(FrameError::ModbusLength(length));
                }
                let total = 6 + usize::from(length);
                if total > self.max_frame {
                    return Err(FrameError::TooLarge(total, self.max_frame));
                }
                if buf.len() < total {
                    return Ok(None);
                }
                Ok(Some(buf.split_to(total).freeze()))
            }
        }
    }

    /// Frames a reply the way requests are framed.
    pub(crate) fn encode(&self, reply: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        if reply.len() > self.max_frame {
            return Err(FrameError::TooLarge(reply.len(), self.max_frame));
        }
        match self.framing {
            Framing::Length => {
                let n = self.length_bytes;
                if n < 8 && reply.len() >> (8 * n) != 0 {
                    return Err(FrameError::TooLarge(reply.len(), (1 << (8 * n)) - 1));
                }
                out.extend_from_slice(&(reply.len() as u64).to_be_bytes()[8 - n..]);
                out.extend_from_slice(reply);
            }
            Framing::Delimiter => {
                out.extend_from_slice(reply);
                out.extend_from_slice(&self.delimiter);
            }
            Framing::Modbus => out.extend_from_slice(reply),
        }
        Ok(())
    }
}

/// The running TCP listeners.
pub(crate) struct TcpTrigger {
    addrs: Vec<(String, SocketAddr)>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// One listener's settings, shared by its connections.
struct Listener {
    name: Arc<str>,
    module: Arc<str>,
    framer: Framer,
    idle_timeout: Option<Duration>,
    write_timeout: Duration,
    connections: Arc<Semaphore>,
    max_connections: usize,
    metrics: TriggerMetrics,
}

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

impl TcpTrigger {
    /// Binds every `[tcp.NAME]` listener (a listener that cannot bind fails
    /// the start) and starts accepting.
    pub(crate) async fn start(
        registry: Arc<ModuleRegistry>,
        config: &crate::config::Config,
    ) -> anyhow::Result<Self> {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut addrs = Vec::new();
        for (name, tcp) in &config.tcp {
            let framer = Framer::of(name, tcp)?;
            let socket = TcpListener::bind(tcp.listen).await.map_err(|err| {
                anyhow::anyhow!("binding tcp.{name}.listen {}: {err}", tcp.listen)
            })?;
            let addr = socket.local_addr()?;
            tracing::info!(listener = %name, module = %tcp.module, %addr, framing = ?tcp.framing, "TCP listener started");
            addrs.push((name.clone(), addr));
            let listener = Arc::new(Listener {
                name: Arc::from(name.as_str()),
                module: Arc::from(tcp.module.as_str()),
                framer,
                idle_timeout: tcp.idle_timeout(),
                write_timeout: tcp.write_timeout(),
                connections: Arc::new(Semaphore::new(tcp.max_connections)),
                max_connections: tcp.max_connections,
                metrics: TriggerMetrics::new("tcp"),
            });
            tasks.spawn(accept(socket, listener, registry.clone(), stopped.clone()));
        }
        Ok(Self { addrs, stop, tasks })
    }

    /// Each listener's name and bound address.
    pub(crate) fn addrs(&self) -> &[(String, SocketAddr)] {
        &self.addrs
    }

    /// Stops accepting and closes idle connections; the future finishes
    /// once every connection has (a frame being handled finishes first).
    pub(crate) fn stop(mut self) -> impl Future<Output = ()> {
        let _ = self.stop.send(true);
        async move { while self.tasks.join_next().await.is_some() {} }
    }
}

async fn accept(
    socket: TcpListener,
    listener: Arc<Listener>,
    registry: Arc<ModuleRegistry>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        let (stream, remote) = tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(listener = &*listener.name, error = %err, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            _ = stop.changed() => break,
        };
        let Ok(permit) = listener.connections.clone().try_acquire_owned() else {
            tracing::warn!(
                listener = &*listener.name,
                %remote,
                max_connections = listener.max_connections,
                "refusing a TCP connection: the listener holds max_connections"
            );
            metrics::counter!("shanhai_tcp_refused_total", "listener" => listener.name.to_string())
                .increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            id: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
            remote: remote.to_string(),
            listener: listener.clone(),
            events: 0,
        };
        let registry = registry.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            connection.run(stream, &registry, stop).await;
            drop(permit);
        });
    }
    while connections.join_next().await.is_some() {}
}

struct Connection {
    id: u64,
    remote: String,
    listener: Arc<Listener>,
    events: u64,
}

impl Connection {
    async fn run(
        mut self,
        mut stream: TcpStream,
        registry: &ModuleRegistry,
        mut stop: watch::Receiver<bool>,
    ) {
        let name = self.listener.name.to_string();
        metrics::gauge!("shanhai_tcp_connections", "listener" => name.clone()).increment(1.0);
        let reason = match self.event(registry, TcpEventType::Open, b"").await {
            Ok(greeting) => match self.write(&mut stream, greeting.as_deref()).await {
                Ok(()) => self.serve(&mut stream, registry, &mut stop).await,
                Err(reason) => reason,
            },
            Err(reason) => reason,
        };
        let _ = stream.shutdown().await;
        metrics::gauge!("shanhai_tcp_connections", "listener" => name.clone()).decrement(1.0);
        metrics::counter!("shanhai_tcp_closed_total", "listener" => name, "reason" => reason.label())
            .increment(1);
        let _ = self.event(registry, TcpEventType::Close, b"").await;
    }

    async fn serve(
        &mut self,
        stream: &mut TcpStream,
        registry: &ModuleRegistry,
        stop: &mut watch::Receiver<bool>,
    ) -> Closed {
        let mut input = Unframed::default();
        // The idle clock runs until a whole frame arrives: bytes that never
        // make one do not hold the connection open.
        let idle_by = |timeout: Duration| Instant::now() + timeout;
        let mut deadline = self.listener.idle_timeout.map(idle_by);
        loop {
            let mut framed = false;
            loop {
                let frame = match self.listener.framer.next_frame(&mut input) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(err) => {
                        tracing::warn!(listener = &*self.listener.name, connection = self.id, remote = %self.remote, "closing a TCP connection: {err}");
                        return Closed::BadFrame;
                    }
                };
                framed = true;
                let reply = match self.event(registry, TcpEventType::Frame, &frame).await {
                    Ok(reply) => reply,
                    Err(reason) => return reason,
                };
                if let Err(reason) = self.write(stream, reply.as_deref()).await {
                    return reason;
                }
            }
            if framed {
                // From the last reply: the module's time is not the client's.
                deadline = self.listener.idle_timeout.map(idle_by);
            }
            if input.is_empty() {
                input = Unframed::default();
            }
            let read = async {
                match deadline {
                    Some(deadline) => {
                        tokio::time::timeout_at(deadline, stream.read_buf(&mut input.bytes))
                            .await
                            .unwrap_or(Err(std::io::ErrorKind::TimedOut.into()))
                    }
                    None => stream.read_buf(&mut input.bytes).await,
                }
            };
            tokio::select! {
                read = read => match read {
                    Ok(0) if input.is_empty() => return Closed::Peer,
                    Ok(0) => {
                        tracing::warn!(listener = &*self.listener.name, connection = self.id, remote = %self.remote, buffered = input.bytes.len(), "TCP connection closed inside a frame");
                        return Closed::Truncated;
                    }
                    Ok(_) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::TimedOut => {
                        tracing::debug!(listener = &*self.listener.name, connection = self.id, remote = %self.remote, buffered = input.bytes.len(), "closing a TCP connection that completed no frame within idle_timeout_ms");
                        return Closed::Idle;
                    }
                    Err(_) => return Closed::Peer,
                },
                _ = stop.changed() => return Closed::Shutdown,
            }
        }
    }

    async fn write(&self, stream: &mut TcpStream, reply: Option<&[u8]>) -> Result<(), Closed> {
        let Some(reply) = reply.filter(|r| !r.is_empty()) else {
            return Ok(());
        };
        let mut out = Vec::with_capacity(reply.len() + 8);
        if let Err(err) = self.listener.framer.encode(reply, &mut out) {
            tracing::warn!(
                listener = &*self.listener.name,
                module = &*self.listener.module,
                connection = self.id,
                "closing a TCP connection: the module's reply cannot be framed: {err}"
            );
            return Err(Closed::BadReply);
        }
        match tokio::time::timeout(self.listener.write_timeout, stream.write_all(&out)).await {
            Ok(written) => written.map_err(|_| Closed::Peer),
            Err(_) => {
                tracing::warn!(
                    listener = &*self.listener.name,
                    module = &*self.listener.module,
                    connection = self.id,
                    remote = %self.remote,
                    write_timeout_ms = self.listener.write_timeout.as_millis() as u64,
                    "closing a TCP connection: the client did not take a reply within write_timeout_ms"
                );
                Err(Closed::WriteTimeout)
            }
        }
    }

    /// Runs the module on one event. `Ok` carries the output of an open or
    /// frame event; `Err` says the connection must close.
    async fn event(
        &mut self,
        registry: &ModuleRegistry,
        kind: TcpEventType,
        data: &[u8],
    ) -> Result<Option<Vec<u8>>, Closed> {
        self.events += 1;
        let request_id: Arc<str> = Arc::from(format!(
            "tcp-{}-{}.{}",
            self.listener.name, self.id, self.events
        ));
        let module = &self.listener.module;
        let selected = match registry
            .select_ready(module, Some(&self.id.to_le_bytes()))
            .await
        {
            Lookup::Found(selected) => selected,
            lookup => {
                let why = match lookup {
                    Lookup::Loading(_) => "is still loading",
                    _ => "is not loaded",
                };
                tracing::warn!(
                    listener = &*self.listener.name,
                    module = &**module,
                    request_id = &*request_id,
                    "closing a TCP connection: the module {why}"
                );
                return Err(Closed::Unloaded);
            }
        };
        let envelope = TcpEvent {
            event: kind,
            connection: self.id,
            listener: &self.listener.name,
            remote_addr: &self.remote,
            request_id: &request_id,
            data,
        }
        .encode();
        // Close events are not requests: they are not counted.
        let result = if kind == TcpEventType::Close {
            selected
                .module
                .invoke_event(EventKind::Tcp, &envelope, request_id.clone())
                .await
        } else {
            metered::invoke(
                &self.listener.metrics,
                &selected.module,
                EventKind::Tcp,
                &envelope,
                request_id.clone(),
            )
            .await
            .0
        };
        match result {
            Ok(output) => Ok(Some(output)),
            Err(_) if kind == TcpEventType::Close => Ok(None),
            Err(err) => {
                tracing::warn!(
                    listener = &*self.listener.name,
                    module = &**module,
                    connection = self.id,
                    request_id = &*request_id,
                    kind = err.kind(),
                    "closing a TCP connection: the module failed: {err}"
                );
                Err(Closed::ModuleFailed)
            }
        }
    }
}

/// Why a TCP connection ended, for `shanhai_tcp_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    Peer,
    Truncated,
    Idle,
    WriteTimeout,
    BadFrame,
    BadReply,
    ModuleFailed,
    Unloaded,
    Shutdown,
}

impl Closed {
    fn label(self) -> &'static str {
        match self {
            Self::Peer => "peer",
            Self::Truncated => "truncated",
            Self::Idle => "idle",
            Self::WriteTimeout => "write_timeout",
            Self::BadFrame => "bad_frame",
            Self::BadReply => "bad_reply",
            Self::ModuleFailed => "module_failed",
            Self::Unloaded => "unloaded",
            Self::Shutdown => "shutdown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framer(framing: Framing, max: usize) -> Framer {
        Framer {
            framing,
            length_bytes: 2,
            delimiter: b"\r\n".to_vec(),
            max_frame: max,
        }
    }

    fn frames(framer: &Framer, bytes: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut buf = Unframed {
            bytes: BytesMut::from(bytes),
            scanned: 0,
        };
        let mut out = Vec::new();
        while let Some(frame) = framer.next_frame(&mut buf)? {
            out.push(frame.to_vec());
        }
        Ok(out)
    }

    #[test]
    fn length_prefixed_frames_split_and_encode() {
        let f = framer(Framing::Length, 16);
        assert_eq!(
            frames(&f, b"\x00\x02hi\x00\x00\x00\x03abc\x00").unwrap(),
            vec![b"hi".to_vec(), b"".to_vec(), b"abc".to_vec()]
        );
        assert_eq!(frames(&f, b"\x00\x11"), Err(FrameError::TooLarge(17, 16)));
        let mut out = Vec::new();
        f.encode(b"xyz", &mut out).unwrap();
        assert_eq!(out, b"\x00\x03xyz");
    }

    #[test]
    fn delimited_frames_split_and_encode() {
        let f = framer(Framing::Delimiter, 8);
        assert_eq!(
            frames(&f, b"one\r\ntwo\r\nthr").unwrap(),
            vec![b"one".to_vec(), b"two".to_vec()]
        );
        assert_eq!(
            frames(&f, b"0123456789abc"),
            Err(FrameError::NoDelimiter(8))
        );
        let mut out = Vec::new();
        f.encode(b"ok", &mut out).unwrap();
        assert_eq!(out, b"ok\r\n");
    }

    #[test]
    fn modbus_adus_are_checked() {
        let f = framer(Framing::Modbus, 260);
        // Read holding registers 0..2 of unit 1, transaction 7.
        let request = [0, 7, 0, 0, 0, 6, 1, 3, 0, 0, 0, 2];
        let mut two = request.to_vec();
        two.extend_from_slice(&request);
        assert_eq!(
            frames(&f, &two).unwrap(),
            vec![request.to_vec(), request.to_vec()]
        );
        // Byte by byte, the frame appears only when whole.
        let mut buf = Unframed::default();
        for (i, b) in request.iter().enumerate() {
            buf.bytes.extend_from_slice(&[*b]);
            let got = f.next_frame(&mut buf).unwrap();
            assert_eq!(got.is_some(), i == request.len() - 1);
        }
        assert_eq!(
            frames(&f, &[0, 1, 0, 9, 0, 6, 1, 3]),
            Err(FrameError::ModbusProtocol(9))
        );
        assert_eq!(
            frames(&f, &[0, 1, 0, 0, 1, 0, 1, 3]),
            Err(FrameError::ModbusLength(256))
        );
        assert_eq!(
            frames(&f, &[0, 1, 0, 0, 0, 1, 1]),
            Err(FrameError::ModbusLength(1))
        );
    }

    #[test]
    fn delimiter_search_is_linear_in_bytes_received() {
        let mut f = framer(Framing::Delimiter, 2 << 20);
        f.delimiter = b"\r\n".to_vec();
        // A 256 KiB frame arriving one byte per read, its delimiter split
        // across two reads, then a second frame in the same buffer.
        let frame = vec![b'x'; 256 << 10];
        let mut stream = frame.clone();
        stream.extend_from_slice(b"\r\nnext\r\n");
        SEARCHED.with(|n| n.set(0));
        let started = std::time::Instant::now();
        let mut buf = Unframed::default();
        let mut got = Vec::new();
        for byte in &stream {
            buf.bytes.extend_from_slice(&[*byte]);
            while let Some(frame) = f.next_frame(&mut buf).unwrap() {
                got.push(frame);
            }
        }
        assert_eq!(got, vec![Bytes::from(frame), Bytes::from_static(b"next")]);
        // Each byte is looked at about once (plus the delimiter's length
        // again per read): rescanning the buffer would be ~3 * 10^10.
        let searched = SEARCHED.with(|n| n.get());
        assert!(searched <= 3 * stream.len(), "searched {searched} bytes");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
}
