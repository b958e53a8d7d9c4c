//! The server side of WebSocket framing (RFC 6455 §5): an incremental
//! [`Decoder`] for client-to-server frames and encoders for server-to-client
//! frames, plus the handshake's [`accept_key`].
//!
//! No extensions are ever negotiated, so every RSV bit must be zero. The
//! decoder enforces the message size limit from frame headers, before any
//! payload is buffered, so a hostile length costs nothing.

use base64::Engine as _;
use bytes::{Buf as _, Bytes, BytesMut};
use sha1::{Digest as _, Sha1};

/// The most payload a control frame may carry (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// The GUID that RFC 6455 §1.3 appends to the client's key.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A complete message or control frame received from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A text message, reassembled from its fragments and validated as UTF-8.
    Text(Bytes),
    /// A binary message, reassembled from its fragments.
    Binary(Bytes),
    /// A ping; the server answers with a pong carrying the same payload.
    Ping(Bytes),
    /// A pong, solicited or not.
    Pong(Bytes),
    /// A close frame: `None` when it had no payload (the peer's code is then
    /// 1005, "no status received"), else its code and UTF-8 reason.
    Close(Option<(u16, String)>),
}

/// Why the connection must be failed; [`ProtocolError::close_code`] gives the
/// status code to send in the server's close frame.
///
/// After a decoder returns an error its state is unspecified: close the
/// connection and do not call [`Decoder::decode`] again.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ProtocolError {
    /// A client frame without the mask bit (§5.1 requires it).
    #[error("client frame is not masked")]
    Unmasked,
    /// An RSV bit is set, but no extension was negotiated.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// An opcode in 0x3-0x7 or 0xB-0xF.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A control frame with more than 125 bytes of payload.
    #[error("control frame payload longer than 125 bytes")]
    ControlTooLong,
    /// A control frame without FIN.
    #[error("fragmented control frame")]
    ControlFragmented,
    /// A continuation frame while no fragmented message is in progress.
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is in progress.
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    /// A 64-bit payload length with its most significant bit set (§5.2).
    #[error("64-bit payload length with its most significant bit set")]
    InvalidLength,
    /// A close frame whose code may not be sent (see [`is_valid_close_code`]).
    #[error("invalid close code {0}")]
    BadCloseCode(u16),
    /// A close frame with a one-byte payload: too long to be empty, too short
    /// to hold a code.
    #[error("close frame with a one-byte payload")]
    BadClosePayload,
    /// A text message or close reason that is not UTF-8.
    #[error("invalid UTF-8 in a text message or close reason")]
    InvalidUtf8,
    /// A message whose reassembled size would exceed the decoder's limit.
    #[error("message larger than the limit of {limit} bytes")]
    TooLarge {
        /// The decoder's `max_message_bytes`.
        limit: usize,
    },
}

impl ProtocolError {
    /// The RFC 6455 §7.4.1 status code to close the connection with: 1007 for
    /// invalid UTF-8, 1009 for a message too large, 1002 for the rest.
    pub(crate) fn close_code(&self) -> u16 {
        match self {
            Self::InvalidUtf8 => 1007,
            Self::TooLarge { .. } => 1009,
            _ => 1002,
        }
    }
}

/// A frame's opcode, with the reserved ones already rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Result<Self, ProtocolError> {
        Ok(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            other => return Err(ProtocolError::ReservedOpcode(other)),
        })
    }

    fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// The kind of a data message being reassembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MessageKind {
    Text,
    Binary,
}

/// A validated frame header whose bytes, mask key included, are all buffered.
#[derive(Debug)]
struct Header {
    fin: bool,
    opcode: Opcode,
    mask: [u8; 4],
    /// Bytes from the frame's start to its payload.
    header_len: usize,
    payload_len: usize,
}

/// Incremental decoder of client-to-server frames, one per connection.
///
/// Feed it the bytes read from the socket; it returns whole messages, after
/// reassembling fragments, and control frames as soon as they arrive, even
/// between the fragments of a message.
#[derive(Debug)]
pub(crate) struct Decoder {
    max_message_bytes: usize,
    /// The kind of the fragmented message in progress, if any.
    kind: Option<MessageKind>,
    /// The fragments received so far. Empty, and unallocated, while idle: an
    /// idle connection should cost no heap memory here.
    partial: BytesMut,
    /// How much of `partial` is known to be valid UTF-8, so that a text
    /// message is checked once overall, and fails as soon as a fragment
    /// cannot be the start of valid text. At most `max_message_bytes`,
    /// which `new` caps at `u32::MAX` (no wasm32 module could take a
    /// larger message): 4 bytes, so that the decoder, part of every idle
    /// connection's task, fits a smaller allocation.
    utf8_checked: u32,
}

impl Decoder {
    /// A decoder that fails any data message larger than `max_message_bytes`
    /// once reassembled. Control frames are not counted: they are at most 125
    /// bytes each and never buffered across calls.
    pub(crate) fn new(max_message_bytes: usize) -> Self {
        Self {
            max_message_bytes: max_message_bytes.min(u32::MAX as usize),
            kind: None,
            partial: BytesMut::new(),
            utf8_checked: 0,
        }
    }

    /// Consumes bytes from the front of `buf` and returns the next complete
    /// message or control frame, or `Ok(None)` when more bytes are needed.
    ///
    /// An incomplete frame is left in `buf` untouched; complete non-final data
    /// fragments are consumed and appended to the message being reassembled.
    /// The size limit is checked as soon as a frame's length is known, so a
    /// frame declaring too large a payload fails before it is buffered.
    ///
    /// `buf` is never reserved into: how much to read ahead is the caller's
    /// choice, so a peer cannot make the server allocate by declaring a
    /// length it never sends.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, ProtocolError> {
        loop {
            let Some(header) = self.parse_header(buf)? else {
                return Ok(None);
            };
            if buf.len() - header.header_len < header.payload_len {
                return Ok(None);
            }
            buf.advance(header.header_len);
            let mut payload = buf.split_to(header.payload_len);
            unmask(&mut payload, header.mask);

            let kind = match header.opcode {
                Opcode::Ping => return Ok(Some(Incoming::Ping(payload.freeze()))),
                Opcode::Pong => return Ok(Some(Incoming::Pong(payload.freeze()))),
                Opcode::Close => return parse_close(&payload).map(Some),
                Opcode::Text if header.fin => {
                    validate_utf8(&payload, &mut 0, true)?;
                    return Ok(Some(Incoming::Text(payload.freeze())));
                }
                Opcode::Binary if header.fin => {
                    return Ok(Some(Incoming::Binary(payload.freeze())));
                }
                Opcode::Text => MessageKind::Text,
                Opcode::Binary => MessageKind::Binary,
                Opcode::Continuation => match self.kind {
                    Some(kind) => kind,
                    // Already rejected by `parse_header`.
                    None => return Err(ProtocolError::UnexpectedContinuation),
                },
            };
            self.kind = Some(kind);
            // Copied rather than kept as a view of `buf`, so that the
            // partial message never pins the caller's read buffer.
            self.partial.extend_from_slice(&payload);
            if kind == MessageKind::Text {
                let mut checked = self.utf8_checked as usize;
                validate_utf8(&self.partial, &mut checked, header.fin)?;
                self.utf8_checked =
                    u32::try_from(checked).expect("a partial message fits max_message_bytes");
            }
            if header.fin {
                // `take` leaves an unallocated `BytesMut` behind.
                let message = std::mem::take(&mut self.partial).freeze();
                self.kind = None;
                self.utf8_checked = 0;
                return Ok(Some(match kind {
                    MessageKind::Text => Incoming::Text(message),
                    MessageKind::Binary => Incoming::Binary(message),
                }));
            }
        }
    }

    /// Whether no fragmented message is being reassembled, so that the
    /// decoder holds no heap memory.
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        self.kind.is_none()
    }

    /// How many bytes of a fragmented message are held, for memory accounting.
    #[cfg(test)]
    pub(crate) fn buffered_len(&self) -> usize {
        self.partial.len()
    }

    /// Validates the header at the front of `buf`, failing as soon as the
    /// bytes present show an error, and returns it once its mask key is in.
    fn parse_header(&self, buf: &[u8]) -> Result<Option<Header>, ProtocolError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(ProtocolError::ReservedBits);
        }
        let fin = b0 & 0x80 != 0;
        let opcode = Opcode::from_bits(b0 & 0x0F)?;
        if b1 & 0x80 == 0 {
            return Err(ProtocolError::Unmasked);
        }
        let len7 = b1 & 0x7F;
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::ControlFragmented);
            }
            if usize::from(len7) > MAX_CONTROL_PAYLOAD {
                return Err(ProtocolError::ControlTooLong);
            }
        } else {
            match (opcode, self.kind) {
                (Opcode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
                (Opcode::Text | Opcode::Binary, Some(_)) => {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                _ => {}
            }
        }

        // Non-minimal length encodings are accepted: they are harmless.
        let (payload_len, len_bytes) = match len7 {
            126 => match buf.get(2..4) {
                Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 2),
                _ => return Ok(None),
            },
            127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                Some(bytes) => (u64::from_be_bytes(bytes), 8),
                None => return Ok(None),
            },
            n => (u64::from(n), 0),
        };
        if payload_len >> 63 != 0 {
            return Err(ProtocolError::InvalidLength);
        }
        let too_large = ProtocolError::TooLarge {
            limit: self.max_message_bytes,
        };
        if !opcode.is_control() {
            // Saturating, and compared as u64, so no length can wrap around.
            let total = (self.partial.len() as u64).saturating_add(payload_len);
            if total > self.max_message_bytes as u64 {
                return Err(too_large);
            }
        }
        let payload_len = usize::try_from(payload_len).map_err(|_| too_large)?;

        let header_len = 2 + len_bytes + 4;
        let Some(&[m0, m1, m2, m3]) = buf.get(header_len - 4..header_len) else {
            return Ok(None);
        };
        Ok(Some(Header {
            fin,
            opcode,
            mask: [m0, m1, m2, m3],
            header_len,
            payload_len,
        }))
    }
}

/// XORs `payload` with the repeating 4-byte `mask`, eight bytes at a time.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let [a, b, c, d] = mask;
    let wide = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let (words, tail) = payload.as_chunks_mut::<8>();
    for word in words {
        *word = (u64::from_ne_bytes(*word) ^ wide).to_ne_bytes();
    }
    // `tail` starts at a multiple of 8, hence of 4: the mask restarts there.
    for (byte, m) in tail.iter_mut().zip(mask.iter().cycle()) {
        *byte ^= m;
    }
}

/// Checks `bytes[*checked..]` as UTF-8 and advances `checked` past what is
/// valid. Unless `complete`, the bytes may end inside a character, which the
/// next fragment may finish.
fn validate_utf8(bytes: &[u8], checked: &mut usize, complete: bool) -> Result<(), ProtocolError> {
    match std::str::from_utf8(&bytes[*checked..]) {
        Ok(_) => {
            *checked = bytes.len();
            Ok(())
        }
        Err(e) if !complete && e.error_len().is_none() => {
            *checked += e.valid_up_to();
            Ok(())
        }
        Err(_) => Err(ProtocolError::InvalidUtf8),
    }
}

/// Parses an unmasked close payload (§5.5.1).
fn parse_close(payload: &[u8]) -> Result<Incoming, ProtocolError> {
    match *payload {
        [] => Ok(Incoming::Close(None)),
        [_] => Err(ProtocolError::BadClosePayload),
        [hi, lo, ref reason @ ..] => {
            let code = u16::from_be_bytes([hi, lo]);
            if !is_valid_close_code(code) {
                return Err(ProtocolError::BadCloseCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Incoming::Close(Some((code, reason.to_owned()))))
        }
    }
}

/// Appends one unmasked, final frame with `opcode` and `payload` to `out`.
fn encode_frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    let len = payload.len();
    out.reserve(10 + len);
    out.push(0x80 | opcode);
    if let Ok(short) = u8::try_from(len)
        && short <= 125
    {
        out.push(short);
    } else if let Ok(medium) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&medium.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Appends a text frame (FIN set, unmasked) carrying `payload` to `out`; the
/// caller guarantees that `payload` is UTF-8.
pub(crate) fn encode_text(payload: &[u8], out: &mut Vec<u8>) {
    encode_frame(0x1, payload, out);
}

/// Appends a binary frame (FIN set, unmasked) carrying `payload` to `out`.
pub(crate) fn encode_binary(payload: &[u8], out: &mut Vec<u8>) {
    encode_frame(0x2, payload, out);
}

/// Appends a ping frame to `out`. A control frame carries at most 125 bytes,
/// so `payload` is truncated to its first 125: a valid frame beats a panic.
pub(crate) fn encode_ping(payload: &[u8], out: &mut Vec<u8>) {
    encode_frame(0x9, truncate_control(payload), out);
}

/// Appends a pong frame to `out`, `payload` truncated to 125 bytes as in
/// [`encode_ping`]. Echoing a decoded ping's payload never truncates.
pub(crate) fn encode_pong(payload: &[u8], out: &mut Vec<u8>) {
    encode_frame(0xA, truncate_control(payload), out);
}

fn truncate_control(payload: &[u8]) -> &[u8] {
    &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)]
}

/// Appends a close frame with `code` and `reason` to `out`, the reason
/// truncated on a character boundary so the payload fits in 125 bytes.
///
/// `code` should satisfy [`is_valid_close_code`]; debug builds assert it.
pub(crate) fn encode_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    debug_assert!(
        is_valid_close_code(code),
        "close code {code} may not be sent"
    );
    let reason = &reason[..reason.floor_char_boundary(MAX_CONTROL_PAYLOAD - 2)];
    let mut payload = [0; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
    encode_frame(0x8, &payload[..2 + reason.len()], out);
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`: the base64 of
/// the SHA-1 of the key followed by the RFC 6455 GUID.
pub(crate) fn accept_key(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(ACCEPT_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha1.finalize())
}

/// Whether `code` may appear in a close frame: the defined codes 1000-1003
/// and 1007-1014, and the registered and private ranges 3000-4999. 1004 is
/// reserved, and 1005, 1006 and 1015 only ever describe a closure locally.
pub(crate) fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The mask key of RFC 6455 §5.7's examples.
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A client frame with every header field under the test's control.
    fn raw_frame(b0: u8, masked: bool, len: LenEncoding, mask: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let mask_bit = if masked { 0x80 } else { 0 };
        let mut out = vec![b0];
        match len {
            LenEncoding::Minimal if payload.len() <= 125 => {
                out.push(mask_bit | payload.len() as u8);
            }
            LenEncoding::Minimal if payload.len() <= 0xFFFF => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            }
            LenEncoding::Minimal | LenEncoding::Long => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
            }
        }
        if masked {
            out.extend_from_slice(&mask);
        }
        let start = out.len();
        out.extend_from_slice(payload);
        if masked {
            unmask(&mut out[start..], mask);
        }
        out
    }

    #[derive(Clone, Copy)]
    enum LenEncoding {
        Minimal,
        /// Always the 64-bit form, to check non-minimal lengths.
        Long,
    }

    /// A masked client frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let b0 = if fin { 0x80 } else { 0 } | opcode;
        raw_frame(b0, true, LenEncoding::Minimal, MASK, payload)
    }

    /// Decodes all of `input` at once, expecting no bytes left over.
    fn decode_all(decoder: &mut Decoder, input: &[u8]) -> Result<Vec<Incoming>, ProtocolError> {
        decode_chunks(decoder, std::iter::once(input))
    }

    fn decode_chunks<'a>(
        decoder: &mut Decoder,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<Incoming>, ProtocolError> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(message) = decoder.decode(&mut buf)? {
                out.push(message);
            }
        }
        assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
        Ok(out)
    }

    fn decode_one(input: &[u8]) -> Result<Incoming, ProtocolError> {
        let mut messages = decode_all(&mut Decoder::new(1 << 20), input)?;
        assert_eq!(messages.len(), 1, "{messages:?}");
        Ok(messages.remove(0))
    }

    fn error_of(input: &[u8]) -> ProtocolError {
        let mut buf = BytesMut::from(input);
        let mut decoder = Decoder::new(1 << 20);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => panic!("no error for {input:x?}"),
                Err(e) => return e,
            }
        }
    }

    /// Turns a server frame from the encoders into the same frame masked, as
    /// a client would send it, so the decoder can check the encoders.
    fn mask_server_frame(server: &[u8]) -> Vec<u8> {
        let header_len = match server[1] {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        assert_eq!(server[1] & 0x80, 0, "server frames are never masked");
        let mut out = server[..header_len].to_vec();
        out[1] |= 0x80;
        out.extend_from_slice(&MASK);
        let start = out.len();
        out.extend_from_slice(&server[header_len..]);
        unmask(&mut out[start..], MASK);
        out
    }

    #[test]
    fn rfc_examples_decode() {
        // §5.7: a masked "Hello".
        let hello = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            decode_one(&hello),
            Ok(Incoming::Text(Bytes::from_static(b"Hello")))
        );
    }

    #[test]
    fn data_round_trips_in_all_length_encodings() {
        for len in [0, 1, 7, 8, 9, 125, 126, 127, 65535, 65536, 70001] {
            let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            for (opcode, encode) in [
                (0x1, encode_text as fn(&[u8], &mut Vec<u8>)),
                (0x2, encode_binary),
            ] {
                let expected = if opcode == 0x1 {
                    Incoming::Text(Bytes::from(payload.clone()))
                } else {
                    Incoming::Binary(Bytes::from(payload.clone()))
                };
                assert_eq!(
                    decode_one(&frame(true, opcode, &payload)),
                    Ok(expected.clone())
                );
                let mut server = Vec::new();
                encode(&payload, &mut server);
                let header_len = match len {
                    0..=125 => 2,
                    126..=65535 => 4,
                    _ => 10,
                };
                assert_eq!(server.len(), header_len + len);
                assert_eq!(server[0], 0x80 | opcode);
                assert_eq!(decode_one(&mask_server_frame(&server)), Ok(expected));
            }
        }
    }

    #[test]
    fn length_header_bytes_are_exact() {
        let mut out = Vec::new();
        encode_binary(&[0; 126], &mut out);
        assert_eq!(out[..4], [0x82, 126, 0x00, 0x7E]);
        out.clear();
        encode_binary(&[0; 65536], &mut out);
        assert_eq!(out[..10], [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        out.clear();
        encode_text(b"", &mut out);
        assert_eq!(out, [0x81, 0]);
    }

    #[test]
    fn non_minimal_lengths_are_accepted() {
        let input = raw_frame(0x82, true, LenEncoding::Long, MASK, b"abc");
        assert_eq!(
            decode_one(&input),
            Ok(Incoming::Binary(Bytes::from_static(b"abc")))
        );
    }

    #[test]
    fn control_frames_round_trip() {
        for len in [0, 1, 125] {
            let payload = vec![0xA5; len];
            let bytes = Bytes::from(payload.clone());
            assert_eq!(
                decode_one(&frame(true, 0x9, &payload)),
                Ok(Incoming::Ping(bytes.clone()))
            );
            assert_eq!(
                decode_one(&frame(true, 0xA, &payload)),
                Ok(Incoming::Pong(bytes.clone()))
            );

            let mut server = Vec::new();
            encode_ping(&payload, &mut server);
            assert_eq!(server[0], 0x89);
            assert_eq!(
                decode_one(&mask_server_frame(&server)),
                Ok(Incoming::Ping(bytes.clone()))
            );
            server.clear();
            encode_pong(&payload, &mut server);
            assert_eq!(server[0], 0x8A);
            assert_eq!(
                decode_one(&mask_server_frame(&server)),
                Ok(Incoming::Pong(bytes))
            );
        }
    }

    #[test]
    fn ping_and_pong_payloads_are_truncated_to_125_bytes() {
        let mut out = Vec::new();
        encode_ping(&[1; 200], &mut out);
        assert_eq!(out[1], 125);
        assert_eq!(out.len(), 2 + 125);
        out.clear();
        encode_pong(&[1; 126], &mut out);
        assert_eq!(out.len(), 2 + 125);
    }

    #[test]
    fn close_frames_round_trip() {
        assert_eq!(
            decode_one(&frame(true, 0x8, b"")),
            Ok(Incoming::Close(None))
        );
        let mut payload = 1000u16.to_be_bytes().to_vec();
        assert_eq!(
            decode_one(&frame(true, 0x8, &payload)),
            Ok(Incoming::Close(Some((1000, String::new()))))
        );
        payload.extend_from_slice("bye ✓".as_bytes());
        assert_eq!(
            decode_one(&frame(true, 0x8, &payload)),
            Ok(Incoming::Close(Some((1000, "bye ✓".to_owned()))))
        );

        let mut server = Vec::new();
        encode_close(4001, "going away", &mut server);
        assert_eq!(server[..4], [0x88, 12, 0x0F, 0xA1]);
        assert_eq!(
            decode_one(&mask_server_frame(&server)),
            Ok(Incoming::Close(Some((4001, "going away".to_owned()))))
        );
    }

    #[test]
    fn close_reason_is_truncated_on_a_char_boundary() {
        // 'é' is two bytes: 61 of them fit in 123 bytes, 62 would not.
        let reason = "é".repeat(100);
        let mut out = Vec::new();
        encode_close(1001, &reason, &mut out);
        assert!(out.len() <= 2 + 125);
        assert_eq!(
            decode_one(&mask_server_frame(&out)),
            Ok(Incoming::Close(Some((1001, "é".repeat(61)))))
        );

        out.clear();
        let ascii = "x".repeat(123);
        encode_close(1000, &ascii, &mut out);
        assert_eq!(out.len(), 2 + 125);
        out.clear();
        encode_close(1000, &"x".repeat(124), &mut out);
        assert_eq!(out.len(), 2 + 125);
    }

    #[test]
    fn fragments_reassemble_around_interleaved_control_frames() {
        let mut input = frame(false, 0x1, "hé".as_bytes());
        input.extend(frame(true, 0x9, b"ping"));
        // A fragment boundary inside a two-byte character is fine.
        input.extend(frame(false, 0x0, &"llo ✓".as_bytes()[..5]));
        input.extend(frame(true, 0xA, b""));
        input.extend(frame(true, 0x0, &"llo ✓".as_bytes()[5..]));
        input.extend(frame(false, 0x2, b"\x00\x01"));
        input.extend(frame(true, 0x0, b"\x02"));

        let mut decoder = Decoder::new(64);
        let mut buf = BytesMut::from(&input[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Some(Incoming::Ping(Bytes::from_static(b"ping"))))
        );
        assert!(!decoder.is_idle());
        assert_eq!(decoder.buffered_len(), "hé".len());
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Some(Incoming::Pong(Bytes::new())))
        );
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Some(Incoming::Text(Bytes::from("héllo ✓"))))
        );
        assert!(decoder.is_idle());
        assert_eq!(decoder.partial.capacity(), 0, "memory released");
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Some(Incoming::Binary(Bytes::from_static(b"\x00\x01\x02"))))
        );
        assert!(decoder.is_idle());
        assert_eq!(decoder.partial.capacity(), 0);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert!(buf.is_empty());
    }

    #[test]
    fn empty_fragments_are_allowed() {
        let mut input = frame(false, 0x2, b"");
        input.extend(frame(false, 0x0, b""));
        input.extend(frame(true, 0x0, b""));
        assert_eq!(decode_one(&input), Ok(Incoming::Binary(Bytes::new())));
    }

    #[test]
    fn incomplete_frames_consume_nothing() {
        let whole = frame(true, 0x2, &[7; 300]);
        for cut in 0..whole.len() {
            let mut decoder = Decoder::new(1024);
            let mut buf = BytesMut::from(&whole[..cut]);
            assert_eq!(decoder.decode(&mut buf), Ok(None), "cut at {cut}");
            assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn complete_fragments_are_consumed_while_waiting() {
        let mut input = frame(false, 0x2, b"abc");
        let second = frame(true, 0x0, b"def");
        input.extend_from_slice(&second[..3]);
        let mut decoder = Decoder::new(1024);
        let mut buf = BytesMut::from(&input[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(&buf[..], &second[..3]);
        assert_eq!(decoder.buffered_len(), 3);
        buf.extend_from_slice(&second[3..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Some(Incoming::Binary(Bytes::from_static(b"abcdef"))))
        );
    }

    /// Frames of every kind, fragmented and not, for the feeding tests.
    fn mixed_stream() -> Vec<u8> {
        let mut input = frame(true, 0x1, "whole ✓".as_bytes());
        input.extend(frame(false, 0x2, &[1; 200]));
        input.extend(frame(true, 0x9, b"p"));
        input.extend(frame(false, 0x0, &[2; 70000]));
        input.extend(frame(true, 0x0, &[3; 5]));
        input.extend(frame(true, 0xA, &[9; 125]));
        input.extend(frame(false, 0x1, &"✓✓".as_bytes()[..4]));
        input.extend(frame(true, 0x0, &"✓✓".as_bytes()[4..]));
        input.extend(frame(true, 0x2, b""));
        input.extend(frame(true, 0x8, b"\x03\xe8done"));
        input
    }

    #[test]
    fn byte_at_a_time_matches_whole_buffer() {
        let input = mixed_stream();
        let whole = decode_all(&mut Decoder::new(1 << 17), &input).unwrap();
        assert_eq!(whole.len(), 7);
        assert_eq!(whole[6], Incoming::Close(Some((1000, "done".to_owned()))));
        let bytewise = decode_chunks(&mut Decoder::new(1 << 17), input.chunks(1)).unwrap();
        assert_eq!(whole, bytewise);
    }

    #[test]
    fn errors_and_their_close_codes() {
        use ProtocolError::*;
        let check = |input: &[u8], expected: ProtocolError, code: u16| {
            let error = error_of(input);
            assert_eq!(
                error,
                expected,
                "input {:x?}",
                &input[..input.len().min(16)]
            );
            assert_eq!(error.close_code(), code, "{error}");
        };
        let header = |b0: u8, b1: u8| [b0, 0x80 | b1, 0, 0, 0, 0];
        let close = |code: u16| frame(true, 0x8, &code.to_be_bytes());

        check(
            &raw_frame(0x82, false, LenEncoding::Minimal, MASK, b"x"),
            Unmasked,
            1002,
        );
        for b0 in [0xC2, 0xA2, 0x92, 0xF1] {
            check(&header(b0, 0), ReservedBits, 1002);
        }
        for opcode in (0x3..=0x7).chain(0xB..=0xF) {
            check(&header(0x80 | opcode, 0), ReservedOpcode(opcode), 1002);
        }
        check(&frame(true, 0x9, &[0; 126]), ControlTooLong, 1002);
        check(&header(0x8A, 127), ControlTooLong, 1002);
        check(&frame(false, 0x9, b""), ControlFragmented, 1002);
        check(&frame(false, 0x8, b""), ControlFragmented, 1002);
        check(&frame(true, 0x0, b"x"), UnexpectedContinuation, 1002);
        check(&frame(false, 0x0, b"x"), UnexpectedContinuation, 1002);
        let after =
            |first: u8, second: u8| [frame(false, first, b"a"), frame(true, second, b"b")].concat();
        check(&after(0x1, 0x1), ExpectedContinuation, 1002);
        check(&after(0x2, 0x1), ExpectedContinuation, 1002);
        check(&after(0x1, 0x2), ExpectedContinuation, 1002);
        check(
            &[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0],
            InvalidLength,
            1002,
        );
        check(&frame(true, 0x8, &[0x03]), BadClosePayload, 1002);
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
            check(&close(code), BadCloseCode(code), 1002);
        }
        check(&frame(true, 0x8, b"\x03\xe8\xff"), InvalidUtf8, 1007);
        check(&frame(true, 0x1, b"\xc3"), InvalidUtf8, 1007);
        // An encoded surrogate.
        check(&frame(true, 0x1, b"\xed\xa0\x80"), InvalidUtf8, 1007);
        let truncated = [frame(false, 0x1, b"ok"), frame(true, 0x0, b"\xe2\x9c")].concat();
        check(&truncated, InvalidUtf8, 1007);
        let limit = 1 << 20;
        check(
            &frame(true, 0x2, &vec![0; limit + 1]),
            TooLarge { limit },
            1009,
        );
        // After a valid frame, errors still surface.
        check(
            &[close(1000), frame(true, 0xA, &[0; 200])].concat(),
            ControlTooLong,
            1002,
        );
    }

    #[test]
    fn invalid_utf8_fails_before_the_message_completes() {
        // The first fragment can never start valid text.
        let input = frame(false, 0x1, b"ok\xff");
        let mut buf = BytesMut::from(&input[..]);
        assert_eq!(
            Decoder::new(64).decode(&mut buf),
            Err(ProtocolError::InvalidUtf8)
        );
        // Whereas a truncated character may still be completed.
        let input = frame(false, 0x1, b"ok\xe2\x9c");
        let mut buf = BytesMut::from(&input[..]);
        assert_eq!(Decoder::new(64).decode(&mut buf), Ok(None));
    }

    #[test]
    fn hostile_length_fails_from_the_header_alone() {
        // A 2^62 length, and nothing after the header: the error cannot have
        // waited for, or reserved room for, the payload.
        let mut header = vec![0x82, 0xFF];
        header.extend_from_slice(&(1u64 << 62).to_be_bytes());
        let mut buf = BytesMut::from(&header[..]);
        let capacity = buf.capacity();
        let mut decoder = Decoder::new(1 << 20);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(ProtocolError::TooLarge { limit: 1 << 20 })
        );
        assert_eq!(buf.capacity(), capacity);
        assert_eq!(decoder.partial.capacity(), 0);

        // The same with the 16-bit form against a small limit.
        let mut buf = BytesMut::from(&[0x82, 0xFE, 0x01, 0x00][..]);
        assert_eq!(
            Decoder::new(255).decode(&mut buf),
            Err(ProtocolError::TooLarge { limit: 255 })
        );
    }

    #[test]
    fn limit_applies_to_the_reassembled_message() {
        let mut input = frame(false, 0x2, &[0; 6]);
        input.extend(frame(true, 0x9, &[0; 100]));
        input.extend(frame(true, 0x0, &[0; 4]));
        assert_eq!(
            decode_all(&mut Decoder::new(10), &input).map(|m| m.len()),
            Ok(2)
        );
        let mut input = frame(false, 0x2, &[0; 6]);
        // Only the header of the fragment that overflows is needed.
        input.extend_from_slice(&frame(true, 0x0, &[0; 5])[..2]);
        assert_eq!(
            decode_all(&mut Decoder::new(10), &input),
            Err(ProtocolError::TooLarge { limit: 10 })
        );
    }

    #[test]
    fn idle_decoder_holds_no_heap_memory() {
        let decoder = Decoder::new(1 << 20);
        assert!(decoder.is_idle());
        assert_eq!(decoder.partial.capacity(), 0);
        assert!(std::mem::size_of::<Decoder>() <= 64);
    }

    #[test]
    fn accept_key_matches_the_rfc_example() {
        // RFC 6455 §1.3 and §4.2.2.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            accept_key(b"wDqumtseNBJdhkihL6PW7w=="),
            "0FFP+2nmNIf/h+4BP36k9uzrYGk="
        );
    }

    #[test]
    fn close_code_validity() {
        let valid: Vec<u16> = (0..=u16::MAX).filter(|&c| is_valid_close_code(c)).collect();
        let expected: Vec<u16> = (1000..=1003)
            .chain(1007..=1014)
            .chain(3000..=4999)
            .collect();
        assert_eq!(valid, expected);
    }

    #[test]
    fn unmask_matches_a_byte_loop_at_every_length() {
        let mask = [1, 2, 4, 8];
        for len in 0..40 {
            let original: Vec<u8> = (0..len as u8).collect();
            let mut fast = original.clone();
            unmask(&mut fast, mask);
            let slow: Vec<u8> = original
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }

    fn control_strategy() -> impl Strategy<Value = (Vec<u8>, Incoming)> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..=125)
                .prop_map(|p| (frame(true, 0x9, &p), Incoming::Ping(Bytes::from(p)))),
            prop::collection::vec(any::<u8>(), 0..=125)
                .prop_map(|p| (frame(true, 0xA, &p), Incoming::Pong(Bytes::from(p)))),
            Just((frame(true, 0x8, b""), Incoming::Close(None))),
            (
                prop::sample::select(vec![1000u16, 1001, 1003, 1007, 1011, 1014, 3000, 4999]),
                "\\PC{0,20}",
            )
                .prop_map(|(code, reason)| {
                    let mut payload = code.to_be_bytes().to_vec();
                    payload.extend_from_slice(reason.as_bytes());
                    (
                        frame(true, 0x8, &payload),
                        Incoming::Close(Some((code, reason))),
                    )
                }),
        ]
    }

    /// One data message, fragmented at random points with control frames
    /// between the fragments, or a lone control frame: its bytes and what
    /// the decoder should return for them, in order.
    fn item_strategy() -> impl Strategy<Value = (Vec<u8>, Vec<Incoming>)> {
        let data = prop_oneof![
            "\\PC{0,40}".prop_map(|s| (0x1u8, s.into_bytes())),
            prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| (0x2u8, b)),
        ];
        let message = (
            data,
            prop::collection::vec(any::<prop::sample::Index>(), 0..4),
            prop::collection::vec(control_strategy(), 0..4),
        )
            .prop_map(|((opcode, payload), cuts, controls)| {
                let mut cuts: Vec<usize> =
                    cuts.iter().map(|i| i.index(payload.len() + 1)).collect();
                cuts.sort_unstable();
                cuts.insert(0, 0);
                cuts.push(payload.len());
                let pieces = cuts.len() - 1;
                let mut bytes = Vec::new();
                let mut expected = Vec::new();
                let mut controls = controls.into_iter();
                for i in 0..pieces {
                    let last = i + 1 == pieces;
                    let op = if i == 0 { opcode } else { 0x0 };
                    bytes.extend(frame(last, op, &payload[cuts[i]..cuts[i + 1]]));
                    if !last && let Some((control, incoming)) = controls.next() {
                        bytes.extend(control);
                        expected.push(incoming);
                    }
                }
                let payload = Bytes::from(payload);
                expected.push(if opcode == 0x1 {
                    Incoming::Text(payload)
                } else {
                    Incoming::Binary(payload)
                });
                (bytes, expected)
            });
        prop_oneof![
            3 => message,
            1 => control_strategy().prop_map(|(bytes, incoming)| (bytes, vec![incoming])),
        ]
    }

    /// Splits `input` at the given points into chunks.
    fn split_at_points<'a>(input: &'a [u8], points: &[prop::sample::Index]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = points.iter().map(|i| i.index(input.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.insert(0, 0);
        cuts.push(input.len());
        cuts.windows(2).map(|w| &input[w[0]..w[1]]).collect()
    }

    /// A frame with arbitrary header bits, mostly well formed so that the
    /// decoder gets past the first checks.
    fn fuzz_frame_strategy() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<bool>(),
            prop_oneof![4 => Just(0u8), 1 => 0u8..8],
            prop_oneof![4 => prop::sample::select(vec![0u8, 1, 2, 8, 9, 10]), 1 => 0u8..16],
            prop_oneof![9 => Just(true), 1 => Just(false)],
            any::<bool>(),
            any::<[u8; 4]>(),
            prop::collection::vec(any::<u8>(), 0..200),
        )
            .prop_map(|(fin, rsv, opcode, masked, long, mask, payload)| {
                let b0 = if fin { 0x80 } else { 0 } | rsv << 4 | opcode;
                let len = if long {
                    LenEncoding::Long
                } else {
                    LenEncoding::Minimal
                };
                raw_frame(b0, masked, len, mask, &payload)
            })
    }

    /// Feeds chunks until an error, checking only that nothing panics and
    /// that the decoder respects its limit.
    fn feed_without_panic(max: usize, chunks: &[&[u8]]) {
        let mut decoder = Decoder::new(max);
        let mut buf = BytesMut::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(Incoming::Text(m) | Incoming::Binary(m))) => {
                        assert!(m.len() <= max);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => return,
                }
                assert!(decoder.buffered_len() <= max);
            }
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(
            input in prop::collection::vec(any::<u8>(), 0..1024),
            points in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
            max in 0usize..512,
        ) {
            feed_without_panic(max, &split_at_points(&input, &points));
        }

        #[test]
        fn random_frames_never_panic(
            frames in prop::collection::vec(fuzz_frame_strategy(), 0..8),
            points in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
            max in 0usize..512,
        ) {
            let input = frames.concat();
            feed_without_panic(max, &split_at_points(&input, &points));
        }

        #[test]
        fn valid_frames_decode_the_same_however_split(
            items in prop::collection::vec(item_strategy(), 0..8),
            points in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let input: Vec<u8> = items.iter().flat_map(|(bytes, _)| bytes.clone()).collect();
            let expected: Vec<Incoming> = items.into_iter().flat_map(|(_, msgs)| msgs).collect();
            let mut decoder = Decoder::new(1024);
            let decoded = decode_chunks(&mut decoder, split_at_points(&input, &points));
            prop_assert_eq!(decoded, Ok(expected));
            prop_assert!(decoder.is_idle());
            prop_assert_eq!(decoder.partial.capacity(), 0);
        }
    }
}
