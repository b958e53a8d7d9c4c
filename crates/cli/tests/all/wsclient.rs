//! A raw WebSocket client for the tests: it speaks the handshake and frames
//! itself, so a test can send exactly the bytes RFC 6455 forbids (unmasked
//! frames, reserved bits, bad UTF-8) and see every frame the gateway sends,
//! pings included.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CONTINUATION: u8 = 0x0;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// A frame from the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn text(&self) -> String {
        String::from_utf8(self.payload.clone()).expect("a text frame is UTF-8")
    }

    /// A close frame's code and reason.
    pub fn close(&self) -> (u16, String) {
        assert_eq!(self.opcode, CLOSE, "not a close frame: {self:?}");
        if self.payload.len() < 2 {
            return (1005, String::new());
        }
        (
            u16::from_be_bytes([self.payload[0], self.payload[1]]),
            String::from_utf8_lossy(&self.payload[2..]).into_owned(),
        )
    }
}

pub struct WsClient {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Answer pings while waiting for messages.
    pub auto_pong: bool,
}

/// An upgrade the gateway refused: the HTTP status and body.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl WsClient {
    pub async fn connect(addr: SocketAddr, path: &str) -> Self {
        Self::try_connect(addr, path, &[])
            .await
            .unwrap_or_else(|refused| panic!("upgrade to {path} refused: {refused:?}"))
    }

    pub async fn try_connect(
        addr: SocketAddr,
        path: &str,
        extra_headers: &[(&str, &str)],
    ) -> Result<Self, Refused> {
        Self::handshake(addr, path, extra_headers, &[]).await
    }

    /// Connects and sends `texts` as masked text frames in the same write
    /// as the upgrade request, before the 101 arrives: the gateway reads
    /// them together with the request.
    pub async fn connect_sending(addr: SocketAddr, path: &str, texts: &[&str]) -> Self {
        let early: Vec<u8> = texts
            .iter()
            .flat_map(|text| encode(true, 0, TEXT, text.as_bytes(), true))
            .collect();
        Self::handshake(addr, path, &[], &early)
            .await
            .unwrap_or_else(|refused| panic!("upgrade to {path} refused: {refused:?}"))
    }

    async fn handshake(
        addr: SocketAddr,
        path: &str,
        extra_headers: &[(&str, &str)],
        early: &[u8],
    ) -> Result<Self, Refused> {
        let mut stream = TcpStream::connect(addr).await.expect("connecting");
        stream.set_nodelay(true).unwrap();
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        );
        let has = |name: &str| {
            extra_headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        if !has("sec-websocket-key") {
            request.push_str("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
        }
        if !has("sec-websocket-version") {
            request.push_str("Sec-WebSocket-Version: 13\r\n");
        }
        for (name, value) in extra_headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(early);
        stream.write_all(&bytes).await.unwrap();
        // Read the response head.
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk))
                .await
                .expect("no upgrade response")
                .unwrap();
            assert!(n > 0, "connection closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let rest = buf[head_end..].to_vec();
        if status != 101 {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            let mut body = rest;
            while body.len() < length {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            return Err(Refused {
                status,
                head,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        assert!(
            head.to_ascii_lowercase()
                .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "wrong accept key: {head}"
        );
        Ok(Self {
            stream,
            buf: rest,
            auto_pong: true,
        })
    }

    /// Sends one frame, masked unless `masked` is false; `rsv` sets the
    /// reserved bits.
    pub async fn send_raw(&mut self, fin: bool, rsv: u8, opcode: u8, payload: &[u8], masked: bool) {
        let frame = encode(fin, rsv, opcode, payload, masked);
        // The gateway may already have closed: a failed write shows up as
        // the close frame or EOF the test reads next.
        let _ = self.stream.write_all(&frame).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send_raw(true, 0, TEXT, text.as_bytes(), true).await;
    }

    pub async fn send_binary(&mut self, data: &[u8]) {
        self.send_raw(true, 0, BINARY, data, true).await;
    }

    pub async fn send_close(&mut self, code: u16, reason: &str) {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        self.send_raw(true, 0, CLOSE, &payload, true).await;
    }

    /// The next frame, or `None` at EOF. Panics after `timeout`.
    pub async fn next_frame_within(&mut self, timeout: Duration) -> Option<Frame> {
        tokio::time::timeout(timeout, self.next_frame())
            .await
            .expect("no frame from the gateway in time")
    }

    /// The next frame, or `None` at EOF.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 16384];
            let n = self.stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next data or close frame, answering pings on the way (unless
    /// `auto_pong` is off, when pings are skipped unanswered).
    pub async fn recv(&mut self) -> Frame {
        loop {
            let frame = self
                .next_frame_within(Duration::from_secs(30))
                .await
                .expect("the gateway closed the connection without a close frame");
            match frame.opcode {
                PING => {
                    if self.auto_pong {
                        let payload = frame.payload.clone();
                        self.send_raw(true, 0, PONG, &payload, true).await;
                    }
                }
                PONG => {}
                _ => return frame,
            }
        }
    }

    /// The next text message.
    pub async fn recv_text(&mut self) -> String {
        let frame = self.recv().await;
        assert_eq!(frame.opcode, TEXT, "expected text, got {frame:?}");
        frame.text()
    }

    /// Sends `text` and returns the text reply.
    pub async fn ask(&mut self, text: &str) -> String {
        self.send_text(text).await;
        self.recv_text().await
    }

    /// Waits for the close frame (skipping data), returns its code and
    /// reason; then checks the gateway closes the TCP connection.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            let frame = self.recv().await;
            if frame.opcode == CLOSE {
                return frame.close();
            }
        }
    }
}

/// One client frame, masked unless `masked` is false; `rsv` sets the
/// reserved bits.
fn encode(fin: bool, rsv: u8, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut frame = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => frame.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        frame.extend_from_slice(payload);
    }
    frame
}

fn parse(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0F;
    assert_eq!(buf[1] & 0x80, 0, "the server masked a frame");
    let (len, mut at) = match buf[1] & 0x7F {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            (
                u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                10,
            )
        }
        n => (n as usize, 2),
    };
    if buf.len() < at + len {
        return None;
    }
    let payload = buf[at..at + len].to_vec();
    at += len;
    Some((
        Frame {
            fin,
            opcode,
            payload,
        },
        at,
    ))
}
