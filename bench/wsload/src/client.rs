//! The client side of RFC 6455, only as much as the benchmarks need: the
//! opening handshake, masked frames to the server, and an incremental
//! decoder of the server's frames.
//!
//! Per connection the client keeps a `TcpStream`, a read buffer that is
//! empty until the server sends something, and a small task, so that tens
//! of thousands of connections fit in a few tens of megabytes.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::{Buf as _, Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinSet};

/// The handshake key of every connection: the sample nonce of RFC 6455
/// §1.3. Servers only check its form, and a fixed key makes the expected
/// `Sec-WebSocket-Accept` a constant, so the client needs no SHA-1.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// `Sec-WebSocket-Accept` for [`KEY`], from the same section of the RFC.
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Largest handshake response accepted.
const MAX_RESPONSE_BYTES: usize = 16 << 10;

/// Largest message accepted from a server; the benchmarks send small ones.
const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// How long one connection attempt, handshake included, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Frame opcodes (RFC 6455 §5.2).
pub(crate) mod opcode {
    pub(crate) const CONTINUATION: u8 = 0x0;
    pub(crate) const TEXT: u8 = 0x1;
    pub(crate) const CLOSE: u8 = 0x8;
    pub(crate) const PING: u8 = 0x9;
    pub(crate) const PONG: u8 = 0xA;
}

/// Where to connect: a `ws://HOST:PORT/PATH` URL, resolved once.
#[derive(Debug)]
pub(crate) struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
}

impl Target {
    /// Parses and resolves `url` (`ws://` only; TLS is out of scope).
    pub(crate) async fn resolve(url: &str) -> anyhow::Result<Arc<Self>> {
        let Some(rest) = url.strip_prefix("ws://") else {
            bail!("{url}: only ws:// URLs are supported");
        };
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if host.is_empty() {
            bail!("{url}: no host");
        }
        let lookup = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:80")
        };
        let addr = tokio::net::lookup_host(&lookup)
            .await
            .with_context(|| format!("resolving {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        Ok(Arc::new(Self {
            addr,
            host: host.to_owned(),
            path: if path.is_empty() { "/" } else { path }.to_owned(),
        }))
    }
}

/// Connects and completes the opening handshake. Returns the stream and
/// whatever the server sent after its response (frames, possibly).
pub(crate) async fn connect(target: &Target) -> anyhow::Result<(TcpStream, BytesMut)> {
    tokio::time::timeout(CONNECT_TIMEOUT, handshake(target))
        .await
        .unwrap_or_else(|_| bail!("no handshake within {CONNECT_TIMEOUT:?}"))
}

async fn handshake(target: &Target) -> anyhow::Result<(TcpStream, BytesMut)> {
    let mut stream = TcpStream::connect(target.addr).await?;
    stream.set_nodelay(true)?;
    // A reset instead of a FIN when the process exits or drops the stream:
    // no TIME_WAIT, so runs back to back do not run out of ports.
    stream.set_zero_linger()?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        target.path, target.host
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = BytesMut::with_capacity(512);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            check_response(&buf[..end])?;
            buf.advance(end + 4);
            if buf.is_empty() {
                // Idle connections keep no read buffer.
                buf = BytesMut::new();
            }
            return Ok((stream, buf));
        }
        if buf.len() > MAX_RESPONSE_BYTES {
            bail!("handshake response longer than {MAX_RESPONSE_BYTES} bytes");
        }
        buf.reserve(512);
        if stream.read_buf(&mut buf).await? == 0 {
            bail!("connection closed during the handshake");
        }
    }
}

fn check_response(head: &[u8]) -> anyhow::Result<()> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 101") {
        bail!("handshake refused: {status}");
    }
    let accept = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|(_, value)| value.trim());
    if accept != Some(ACCEPT) {
        bail!("handshake answered with Sec-WebSocket-Accept {accept:?}, expected {ACCEPT}");
    }
    Ok(())
}

/// Connections opened by [`open_all`], and what failed.
pub(crate) struct Opened {
    pub(crate) streams: Vec<(TcpStream, BytesMut)>,
    pub(crate) failed: usize,
    pub(crate) first_error: Option<String>,
    pub(crate) seconds: f64,
}

/// Opens `n` connections, `concurrency` handshakes at a time.
pub(crate) async fn open_all(target: &Arc<Target>, n: usize, concurrency: usize) -> Opened {
    let started = Instant::now();
    let mut opened = Opened {
        streams: Vec::with_capacity(n),
        failed: 0,
        first_error: None,
        seconds: 0.0,
    };
    let mut record = |result: Result<anyhow::Result<(TcpStream, BytesMut)>, JoinError>| match result
    {
        Ok(Ok(stream)) => opened.streams.push(stream),
        Ok(Err(err)) => {
            opened.failed += 1;
            opened.first_error.get_or_insert_with(|| format!("{err:#}"));
        }
        Err(err) => {
            opened.failed += 1;
            opened.first_error.get_or_insert_with(|| err.to_string());
        }
    };
    let mut pending = JoinSet::new();
    for _ in 0..n {
        if pending.len() >= concurrency.max(1)
            && let Some(result) = pending.join_next().await
        {
            record(result);
        }
        let target = target.clone();
        pending.spawn(async move { connect(&target).await });
    }
    while let Some(result) = pending.join_next().await {
        record(result);
    }
    opened.seconds = started.elapsed().as_secs_f64();
    opened
}

/// Mask keys for client frames. RFC 6455 wants them unpredictable to
/// defeat cache poisoning through proxies; a load generator talking to its
/// own server on loopback only needs them to vary (xorshift64).
pub(crate) struct Masks(u64);

impl Masks {
    /// A sequence seeded with `seed` (any value).
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next mask key.
    pub(crate) fn next_key(&mut self) -> [u8; 4] {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 as u32).to_le_bytes()
    }
}

/// Appends one final, masked frame to `out`.
pub(crate) fn encode_frame(opcode: u8, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
}

/// A message from the server: a whole data message, or a control frame.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) opcode: u8,
    pub(crate) payload: Bytes,
}

/// Decodes the server's frames, reassembling fragmented messages.
#[derive(Default)]
pub(crate) struct Reader {
    partial: Option<(u8, BytesMut)>,
}

impl Reader {
    /// The next message from the front of `buf`, or `None` until more
    /// bytes arrive.
    pub(crate) fn next_message(&mut self, buf: &mut BytesMut) -> io::Result<Option<Message>> {
        loop {
            if buf.len() < 2 {
                return Ok(None);
            }
            let (b0, b1) = (buf[0], buf[1]);
            if b1 & 0x80 != 0 {
                return Err(invalid("the server sent a masked frame"));
            }
            let (len, header) = match b1 & 0x7f {
                126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
                127 if buf.len() >= 10 => {
                    let mut len = [0; 8];
                    len.copy_from_slice(&buf[2..10]);
                    (u64::from_be_bytes(len), 10)
                }
                126 | 127 => return Ok(None),
                n => (u64::from(n), 2),
            };
            if len > MAX_MESSAGE_BYTES as u64 {
                return Err(invalid("a frame longer than 16 MiB"));
            }
            let len = len as usize;
            if buf.len() < header + len {
                buf.reserve(header + len - buf.len());
                return Ok(None);
            }
            buf.advance(header);
            let payload = buf.split_to(len);
            let (fin, op) = (b0 & 0x80 != 0, b0 & 0x0f);
            if op >= 0x8 {
                return Ok(Some(Message {
                    opcode: op,
                    payload: payload.freeze(),
                }));
            }
            match (op, self.partial.take()) {
                (opcode::CONTINUATION, Some((kind, mut data))) => {
                    data.extend_from_slice(&payload);
                    if fin {
                        return Ok(Some(Message {
                            opcode: kind,
                            payload: data.freeze(),
                        }));
                    }
                    self.partial = Some((kind, data));
                }
                (opcode::CONTINUATION, None) => {
                    return Err(invalid("a continuation frame without a message"));
                }
                (kind, None) if fin => {
                    return Ok(Some(Message {
                        opcode: kind,
                        payload: payload.freeze(),
                    }));
                }
                (kind, None) => self.partial = Some((kind, payload)),
                (_, Some(_)) => return Err(invalid("a data frame inside a fragmented message")),
            }
        }
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// How [`drive`] treats a connection.
pub(crate) struct Drive {
    /// Seeds the connection's mask keys.
    pub(crate) seed: u64,
    /// Answer pings with pongs. Off where another thread writes to the
    /// socket, so that frames never interleave.
    pub(crate) answer_pings: bool,
    /// Payloads to send as text messages, if the connection sends.
    pub(crate) outgoing: Option<mpsc::UnboundedReceiver<Vec<u8>>>,
}

/// Runs a connection until it ends: passes each data message to `on_data`,
/// sends what arrives on `outgoing`, answers pings and the server's close.
/// Returns `Ok` when the server closed the connection.
pub(crate) async fn drive(
    mut stream: TcpStream,
    mut buf: BytesMut,
    mut how: Drive,
    mut on_data: impl FnMut(Message),
) -> io::Result<()> {
    let mut reader = Reader::default();
    let mut masks = Masks::new(how.seed);
    let mut frame = Vec::new();
    loop {
        while let Some(message) = reader.next_message(&mut buf)? {
            frame.clear();
            match message.opcode {
                opcode::PING if how.answer_pings => {
                    encode_frame(opcode::PONG, &message.payload, masks.next_key(), &mut frame);
                    stream.write_all(&frame).await?;
                }
                opcode::CLOSE => {
                    let code = message.payload.get(..2).unwrap_or(&[0x03, 0xe8]);
                    encode_frame(opcode::CLOSE, code, masks.next_key(), &mut frame);
                    let _ = stream.write_all(&frame).await;
                    return Ok(());
                }
                op if op < 0x8 => on_data(message),
                _ => {}
            }
        }
        if buf.is_empty() && buf.capacity() > 4096 {
            buf = BytesMut::new();
        }
        buf.reserve(256);
        let outgoing = async {
            match how.outgoing.as_mut() {
                Some(outgoing) => outgoing.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = stream.read_buf(&mut buf) => {
                if read? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            Some(payload) = outgoing => {
                frame.clear();
                encode_frame(opcode::TEXT, &payload, masks.next_key(), &mut frame);
                stream.write_all(&frame).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unmasked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => frame.push(n as u8),
            n => {
                frame.push(126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn masks_frames_like_the_rfc_example() {
        // RFC 6455 §5.7: a masked "Hello".
        let mut frame = Vec::new();
        encode_frame(opcode::TEXT, b"Hello", [0x37, 0xfa, 0x21, 0x3d], &mut frame);
        assert_eq!(
            frame,
            [
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
        let mut long = Vec::new();
        encode_frame(opcode::TEXT, &[0; 300], [0; 4], &mut long);
        assert_eq!(long[..4], [0x81, 0x80 | 126, 0x01, 0x2c]);
        assert_eq!(long.len(), 4 + 4 + 300);
    }

    #[test]
    fn reads_whole_split_and_fragmented_messages() {
        let mut wire = unmasked(opcode::TEXT, false, b"Hel");
        wire.extend(unmasked(opcode::PING, true, b"p"));
        wire.extend(unmasked(opcode::CONTINUATION, true, b"lo"));
        wire.extend(unmasked(opcode::TEXT, true, &[b'x'; 200]));
        let mut reader = Reader::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        // One byte at a time: every partial state is visited.
        for byte in wire {
            buf.extend_from_slice(&[byte]);
            while let Some(message) = reader.next_message(&mut buf).unwrap() {
                got.push((message.opcode, message.payload));
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (opcode::PING, Bytes::from_static(b"p")));
        assert_eq!(got[1], (opcode::TEXT, Bytes::from_static(b"Hello")));
        assert_eq!(got[2].1.len(), 200);
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_masked_server_frames() {
        let mut buf = BytesMut::from(&[0x81, 0x81, 0, 0, 0, 0, b'x'][..]);
        assert!(Reader::default().next_message(&mut buf).is_err());
    }

    #[test]
    fn checks_the_handshake_response() {
        let ok = format!("HTTP/1.1 101 Switching Protocols\r\nsec-websocket-accept: {ACCEPT}");
        assert!(check_response(ok.as_bytes()).is_ok());
        assert!(check_response(b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1").is_err());
        assert!(
            check_response(b"HTTP/1.1 101 Switching Protocols\r\nsec-websocket-accept: x").is_err()
        );
    }
}
