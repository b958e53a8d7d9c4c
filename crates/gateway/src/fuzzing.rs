//! The properties the fuzz targets in `fuzz/` check on the gateway's
//! parsers of untrusted bytes: WebSocket frames, TCP framing, MQTT topic
//! filters and templates, and the config file. The targets and the corpus
//! regression test (`tests/fuzz_corpus.rs`) call these same functions, so
//! every input the fuzzer keeps is checked by `cargo test` too. Not part of
//! the gateway's API: it exists to reach crate-private parsers.
//!
//! Each function takes arbitrary bytes and panics when a property fails;
//! `docs/fuzzing.md` lists what each one asserts.

use bytes::BytesMut;

use crate::config::{Config, TcpConfig, topic_filter_error};
use crate::mqtt::topic::{TopicTemplate, captures, invalid_filter, wildcards};
use crate::tcp::{FrameError, Framer, Framing, Unframed};
use crate::ws::codec::{self, Decoder, Incoming, ProtocolError};

/// A small deterministic generator of chunk sizes and cut points, seeded by
/// the input, so that one input always splits the same way.
struct Splitter(u32);

impl Splitter {
    fn new(seed: u8) -> Self {
        Self(u32::from(seed).wrapping_mul(2_654_435_761) | 1)
    }

    /// A number in `1..=max`.
    fn next(&mut self, max: usize) -> usize {
        // xorshift32
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        1 + self.0 as usize % max.max(1)
    }

    /// `bytes` in chunks of 1 to 16 bytes.
    fn chunks<'a>(&mut self, mut bytes: &'a [u8]) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let (chunk, rest) = bytes.split_at(self.next(16).min(bytes.len()));
            out.push(chunk);
            bytes = rest;
        }
        out
    }
}

/// What a WebSocket decoder made of a stream: the messages, then either the
/// bytes it left in the buffer (an incomplete frame) or the error.
#[derive(Debug, PartialEq)]
struct WsRun {
    messages: Vec<Incoming>,
    end: Result<Vec<u8>, ProtocolError>,
}

fn ws_decode<'a>(max: usize, chunks: impl IntoIterator<Item = &'a [u8]>) -> WsRun {
    let mut decoder = Decoder::new(max);
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(err) => {
                    return WsRun {
                        messages,
                        end: Err(err),
                    };
                }
            }
        }
    }
    WsRun {
        messages,
        end: Ok(buf.to_vec()),
    }
}

/// The payload bytes a message carried on the wire.
fn ws_payload_len(message: &Incoming) -> usize {
    match message {
        Incoming::Text(b) | Incoming::Binary(b) | Incoming::Ping(b) | Incoming::Pong(b) => b.len(),
        Incoming::Close(None) => 0,
        Incoming::Close(Some((_, reason))) => 2 + reason.len(),
    }
}

/// A masked client frame.
fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    out.push(if fin { 0x80 } else { 0 } | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
}

/// A frame from the server's encoders, checked (final, unmasked, no RSV
/// bits, the shortest length form, the length it declares) and turned into
/// the masked client frame with the same content.
fn mask_server_frame(frame: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let [b0, b1, rest @ ..] = frame else {
        panic!("a server frame shorter than two bytes: {frame:x?}");
    };
    assert_eq!(b0 & 0xF0, 0x80, "a server frame must be final, RSV clear");
    assert_eq!(b1 & 0x80, 0, "a server frame must not be masked");
    let (len, payload) = match b1 & 0x7F {
        126 => {
            let (len, payload) = rest.split_at(2);
            let len = u64::from(u16::from_be_bytes([len[0], len[1]]));
            assert!(len > 125, "length {len} not in its shortest form");
            (len, payload)
        }
        127 => {
            let (len, payload) = rest.split_at(8);
            let len = u64::from_be_bytes(len.try_into().unwrap());
            assert!(len > 0xFFFF, "length {len} not in its shortest form");
            (len, payload)
        }
        n => (u64::from(n), rest),
    };
    assert_eq!(len, payload.len() as u64, "declared length differs");
    let mut out = Vec::new();
    client_frame(true, b0 & 0x0F, payload, mask, &mut out);
    out
}

/// The WebSocket decoder (`ws/codec.rs`) on a client byte stream.
///
/// Input: two bytes of message limit (0 to 4095), a seed, then the stream.
/// Asserts that the stream decodes the same whole and in random chunks;
/// that no message exceeds its limit (data: the limit, control: 125 bytes),
/// text and close reasons are UTF-8 and close codes valid; that the
/// payloads returned never exceed the bytes consumed, and an incomplete
/// frame is left untouched; and that every decoded message, re-encoded as
/// client frames (data fragmented, at random cuts) and through the
/// server's encoders, decodes back to itself.
pub fn ws_codec(data: &[u8]) {
    let [lo, hi, seed, stream @ ..] = data else {
        return;
    };
    let max = usize::from(u16::from_le_bytes([*lo, *hi]) & 0x0FFF);
    let mut split = Splitter::new(*seed);

    let whole = ws_decode(max, [stream]);
    let chunked = ws_decode(max, split.chunks(stream));
    assert_eq!(
        whole, chunked,
        "decoding depends on how the stream is split"
    );

    let payloads: usize = whole.messages.iter().map(ws_payload_len).sum();
    match &whole.end {
        Ok(left) => {
            assert!(stream.ends_with(left), "the incomplete frame was changed");
            let consumed = stream.len() - left.len();
            assert!(
                payloads + 2 * whole.messages.len() <= consumed,
                "{payloads} payload bytes in {} messages from {consumed} bytes",
                whole.messages.len()
            );
        }
        Err(_) => assert!(payloads + 2 * whole.messages.len() <= stream.len()),
    }
    for message in &whole.messages {
        match message {
            Incoming::Text(m) => {
                assert!(m.len() <= max);
                assert!(std::str::from_utf8(m).is_ok(), "text not UTF-8");
            }
            Incoming::Binary(m) => assert!(m.len() <= max),
            Incoming::Ping(p) | Incoming::Pong(p) => assert!(p.len() <= 125),
            Incoming::Close(Some((code, reason))) => {
                assert!(codec::is_valid_close_code(*code), "close code {code}");
                assert!(reason.len() <= 123);
            }
            Incoming::Close(None) => {}
        }
    }

    let mask = [seed.wrapping_mul(31), *lo, *hi, seed ^ 0x5A];
    let between = Incoming::Ping(bytes::Bytes::from_static(b"between"));
    let mut as_client = Vec::new();
    let mut expected = Vec::new();
    for message in &whole.messages {
        match message {
            Incoming::Text(m) | Incoming::Binary(m) => {
                let opcode = if matches!(message, Incoming::Text(_)) {
                    0x1
                } else {
                    0x2
                };
                // Two fragments with a ping between them, cut anywhere
                // (even inside a UTF-8 character), or one frame.
                let cut = split.next(m.len() + 1) - 1;
                if cut == 0 {
                    client_frame(true, opcode, m, mask, &mut as_client);
                } else {
                    client_frame(false, opcode, &m[..cut], mask, &mut as_client);
                    client_frame(true, 0x9, b"between", mask, &mut as_client);
                    client_frame(true, 0x0, &m[cut..], mask, &mut as_client);
                    expected.push(between.clone());
                }
            }
            Incoming::Ping(p) => client_frame(true, 0x9, p, mask, &mut as_client),
            Incoming::Pong(p) => client_frame(true, 0xA, p, mask, &mut as_client),
            Incoming::Close(None) => client_frame(true, 0x8, b"", mask, &mut as_client),
            Incoming::Close(Some((code, reason))) => {
                let mut payload = code.to_be_bytes().to_vec();
                payload.extend_from_slice(reason.as_bytes());
                client_frame(true, 0x8, &payload, mask, &mut as_client);
            }
        }
        expected.push(message.clone());
    }
    let again = ws_decode(max, split.chunks(&as_client));
    assert_eq!(
        again,
        WsRun {
            messages: expected,
            end: Ok(Vec::new())
        },
        "re-encoded client frames"
    );

    for message in &whole.messages {
        let mut frame = Vec::new();
        match message {
            Incoming::Text(m) => codec::encode_text(m, &mut frame),
            Incoming::Binary(m) => codec::encode_binary(m, &mut frame),
            Incoming::Ping(p) => codec::encode_ping(p, &mut frame),
            Incoming::Pong(p) => codec::encode_pong(p, &mut frame),
            Incoming::Close(Some((code, reason))) => codec::encode_close(*code, reason, &mut frame),
            Incoming::Close(None) => continue,
        }
        let client = mask_server_frame(&frame, mask);
        let decoded = ws_decode(max, [client.as_slice()]);
        assert_eq!(decoded.end, Ok(Vec::new()), "a server frame did not decode");
        assert_eq!(
            decoded.messages,
            std::slice::from_ref(message),
            "server encoder"
        );
    }
}

/// What a framer made of a stream: the frames, then either the bytes left
/// (an incomplete frame) or the error.
#[derive(Debug, PartialEq)]
struct TcpRun {
    frames: Vec<Vec<u8>>,
    end: Result<Vec<u8>, FrameError>,
}

fn tcp_frames<'a>(framer: &Framer, chunks: impl IntoIterator<Item = &'a [u8]>) -> TcpRun {
    let mut buf = Unframed::default();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.bytes.extend_from_slice(chunk);
        loop {
            match framer.next_frame(&mut buf) {
                Ok(Some(frame)) => frames.push(frame.to_vec()),
                Ok(None) => break,
                Err(err) => {
                    return TcpRun {
                        frames,
                        end: Err(err),
                    };
                }
            }
        }
    }
    TcpRun {
        frames,
        end: Ok(buf.bytes.to_vec()),
    }
}

/// The TCP framers (`tcp.rs`) on a client byte stream.
///
/// Input: the framing (byte % 3: length, delimiter, Modbus), a parameter
/// (length prefix of 1, 2 or 4 bytes; delimiter of 1 to 4 bytes, taken
/// from the stream's start), two bytes of `max_frame_bytes` (0 to 1023), a
/// seed, then the stream. Asserts that the stream frames the same whole
/// and in random chunks (a delimiter found too late may be refused as
/// `TooLarge` or `NoDelimiter` depending on when it arrives); that no frame
/// exceeds `max_frame_bytes`; that encoding the frames as replies gives
/// back exactly the bytes consumed (so no frame is longer than its input);
/// that a delimited frame ends at the first delimiter; that a Modbus frame
/// has protocol 0 and the length it declares; and that what is left is
/// really incomplete.
pub fn tcp_framer(data: &[u8]) {
    let [kind, param, lo, hi, seed, stream @ ..] = data else {
        return;
    };
    let framing = match kind % 3 {
        0 => Framing::Length,
        1 => Framing::Delimiter,
        _ => Framing::Modbus,
    };
    let mut stream = stream;
    let mut delimiter = String::from("\n");
    if framing == Framing::Delimiter {
        let n = 1 + usize::from(param % 4);
        let Some((d, rest)) = stream.split_at_checked(n) else {
            return;
        };
        let Ok(d) = std::str::from_utf8(d) else {
            return;
        };
        delimiter = d.to_owned();
        stream = rest;
    }
    let config = TcpConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        module: "m".into(),
        framing,
        length_bytes: [1, 2, 4][usize::from(param % 3)],
        delimiter: delimiter.clone(),
        max_frame_bytes: usize::from(u16::from_le_bytes([*lo, *hi]) & 0x03FF),
        idle_timeout_ms: 0,
        write_timeout_ms: 1,
        max_connections: 1,
    };
    let Ok(framer) = Framer::of("fuzz", &config) else {
        assert_eq!(config.max_frame_bytes, 0, "a valid config was refused");
        return;
    };
    let max = config.max_frame_bytes;
    let delimiter = delimiter.as_bytes();

    let whole = tcp_frames(&framer, [stream]);
    let chunked = tcp_frames(&framer, Splitter::new(*seed).chunks(stream));
    match (&whole.end, &chunked.end) {
        (
            Err(FrameError::TooLarge(..) | FrameError::NoDelimiter(_)),
            Err(FrameError::TooLarge(..) | FrameError::NoDelimiter(_)),
        ) if framing == Framing::Delimiter => assert_eq!(whole.frames, chunked.frames),
        _ => assert_eq!(whole, chunked, "framing depends on how the stream is split"),
    }

    let mut reencoded = Vec::new();
    for frame in &whole.frames {
        assert!(frame.len() <= max, "a frame of {} bytes", frame.len());
        let start = reencoded.len();
        framer
            .encode(frame, &mut reencoded)
            .expect("a received frame can be sent back");
        let wire = &reencoded[start..];
        match framing {
            Framing::Delimiter => assert_eq!(
                wire.windows(delimiter.len()).position(|w| w == delimiter),
                Some(frame.len()),
                "a frame does not end at the first delimiter"
            ),
            Framing::Modbus => {
                assert_eq!(frame[2..4], [0, 0]);
                let length = usize::from(u16::from_be_bytes([frame[4], frame[5]]));
                assert!((2..=254).contains(&length));
                assert_eq!(frame.len(), 6 + length);
            }
            Framing::Length => {}
        }
    }
    assert!(
        stream.starts_with(&reencoded),
        "the frames, encoded again, are not the bytes they came from"
    );
    if let Ok(left) = &whole.end {
        assert_eq!(reencoded.len() + left.len(), stream.len());
        match framing {
            Framing::Length => {
                let n = config.length_bytes;
                if left.len() >= n {
                    let len = left[..n]
                        .iter()
                        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
                    assert!(len <= max && left.len() < n + len);
                }
            }
            Framing::Delimiter => {
                assert!(!left.windows(delimiter.len()).any(|w| w == delimiter));
                assert!(left.len() <= max + delimiter.len());
            }
            Framing::Modbus => {
                if left.len() >= 7 {
                    let length = usize::from(u16::from_be_bytes([left[4], left[5]]));
                    assert!(left.len() < 6 + length);
                }
            }
        }
    }
}

/// Whether `filter` matches `topic`, straight from MQTT 3.1.1 §4.7: `+` is
/// one level, `#` (the last level) the rest including none, and a topic
/// starting with `$` matches no filter starting with a wildcard.
fn reference_topic_matches(filter: &str, topic: &str) -> bool {
    fn levels(filter: &[&str], topic: &[&str]) -> bool {
        match (filter.split_first(), topic.split_first()) {
            (None, None) => true,
            (Some((&"#", rest)), _) => rest.is_empty(),
            (Some((f, filter)), Some((t, topic))) => (*f == "+" || f == t) && levels(filter, topic),
            _ => false,
        }
    }
    let filter: Vec<&str> = filter.split('/').collect();
    let topic_levels: Vec<&str> = topic.split('/').collect();
    if topic.starts_with('$') && matches!(filter[0], "+" | "#") {
        return false;
    }
    levels(&filter, &topic_levels)
}

/// The syntax of a topic filter, straight from MQTT 3.1.1 §4.7.1: `#` only
/// as the whole last level, `+` only as a whole level.
fn reference_filter_syntax(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    !filter.is_empty()
        && levels.iter().enumerate().all(|(i, l)| {
            (!l.contains('#') || (*l == "#" && i + 1 == levels.len()))
                && (!l.contains('+') || *l == "+")
        })
}

/// An output-topic template rendered the naive way, or `None` when it is
/// not a valid template: `{topic}` and `{N}` (decimal digits, 1 to
/// `wildcards`) are replaced, every other `{` or `}` is an error, and the
/// literal text may not hold `+`, `#` or NUL.
fn reference_render(
    template: &str,
    wildcards: usize,
    topic: &str,
    captures: &[&str],
) -> Option<String> {
    if template.is_empty() {
        return None;
    }
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        let text = &rest[..i];
        if text.contains(['+', '#', '\0']) || rest[i..].starts_with('}') {
            return None;
        }
        out.push_str(text);
        let after = &rest[i + 1..];
        let close = after.find('}')?;
        match &after[..close] {
            "topic" => out.push_str(topic),
            n if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                let n: usize = n.parse().ok()?;
                if n == 0 || n > wildcards {
                    return None;
                }
                out.push_str(captures.get(n - 1).copied().unwrap_or(""));
            }
            _ => return None,
        }
        rest = &after[close + 1..];
    }
    if rest.contains(['+', '#', '\0']) {
        return None;
    }
    out.push_str(rest);
    Some(out)
}

/// MQTT topic filters, matching and output-topic templates
/// (`mqtt/topic.rs`, `shanhai_abi::grant::topic_matches`, and the grant
/// check `config::topic_filter_error`).
///
/// Input: a filter, a topic and a template, separated by 0xFF bytes (never
/// in UTF-8). Asserts that matching agrees with a naive reference matcher;
/// that a filter valid for a trigger follows the MQTT syntax and is a valid
/// grant too; that captures exist exactly when the filter matches, one per
/// wildcard, and put back into the filter give the topic; and that a
/// template parses exactly when the reference accepts it, and renders what
/// the reference renders.
pub fn mqtt_topic(data: &[u8]) {
    let mut parts = data.split(|&b| b == 0xFF).map(std::str::from_utf8);
    let (Some(Ok(filter)), Some(Ok(topic))) = (parts.next(), parts.next()) else {
        return;
    };
    let template = match parts.next() {
        Some(Ok(template)) => Some(template),
        Some(Err(_)) => return,
        None => None,
    };

    let matches = shanhai_abi::grant::topic_matches(filter, topic);
    assert_eq!(
        matches,
        reference_topic_matches(filter, topic),
        "filter {filter:?} on topic {topic:?}"
    );

    let valid = invalid_filter(filter).is_none();
    if valid {
        assert!(reference_filter_syntax(filter), "{filter:?} accepted");
        assert_eq!(topic_filter_error(filter), None, "{filter:?} as a grant");
    } else if topic_filter_error(filter).is_none() {
        // The grant check is the syntax alone; a trigger also refuses
        // what a broker would (NUL, the length, a $share/ prefix).
        assert!(
            filter.contains('\0') || filter.len() > 65_535 || filter.starts_with("$share/"),
            "{filter:?} refused by the trigger but granted: {:?}",
            invalid_filter(filter)
        );
    }
    if !valid {
        return;
    }
    let wildcards = wildcards(filter);
    let caught = captures(filter, topic);
    assert_eq!(
        caught.is_some(),
        matches,
        "captures of {filter:?} on {topic:?}"
    );
    if let Some(caught) = &caught {
        assert_eq!(caught.len(), wildcards);
        let mut given = caught.iter();
        let rebuilt = filter
            .split('/')
            .map(|level| match level {
                "+" | "#" => *given.next().unwrap(),
                literal => literal,
            })
            .collect::<Vec<_>>()
            .join("/");
        // A final `#` also matches its parent level: `a/#` on `a`.
        let parent = filter.ends_with("/#") && rebuilt.strip_suffix('/') == Some(topic);
        assert!(
            rebuilt == topic || parent,
            "captures {caught:?} of {filter:?} rebuild {rebuilt:?}, not {topic:?}"
        );
    }

    let Some(template) = template else {
        return;
    };
    let empty = vec![""; wildcards];
    let captured = caught.as_deref().unwrap_or(&empty);
    let parsed = TopicTemplate::parse(template, wildcards);
    let reference = reference_render(template, wildcards, topic, captured);
    assert_eq!(
        parsed.is_ok(),
        reference.is_some(),
        "template {template:?} with {wildcards} wildcards: {parsed:?}"
    );
    if let Ok(parsed) = parsed {
        let rendered = parsed.render(topic, captured);
        assert_eq!(Some(&rendered), reference.as_ref());
        match parsed.topic_for(topic, captured) {
            Ok(to) => {
                assert_eq!(to, rendered);
                assert_eq!(shanhai_abi::grant::invalid_topic(&to), None);
            }
            Err(_) => assert!(shanhai_abi::grant::invalid_topic(&rendered).is_some()),
        }
    }
}

/// The config loader (`Config::parse`) on TOML text.
///
/// Input: the text (UTF-8, else skipped). Asserts that a config that
/// parses serialises to JSON (as `GET /admin/config` does) and back to an
/// equal, valid config (unless it holds an infinite float, which JSON
/// cannot), and the same through TOML text; and that every module's
/// settings and the runtime's can be derived from it.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(text) else {
        return;
    };
    let json = serde_json::to_value(&config).expect("a parsed config serialises to JSON");
    // JSON has no infinity: `latency_factor = inf` (never judge latency)
    // shows as null. Only TOML can carry such a config back.
    if config.canary.latency_factor.is_finite() {
        let from_json: Config =
            serde_json::from_value(json.clone()).expect("the config's JSON deserialises");
        from_json
            .validate()
            .expect("the config's JSON is a valid config");
        assert_eq!(
            serde_json::to_value(&from_json).unwrap(),
            json,
            "JSON round trip"
        );
    }

    let toml_text = toml::to_string(&config).expect("a parsed config serialises to TOML");
    let from_toml = Config::parse(&toml_text)
        .unwrap_or_else(|err| panic!("the config's TOML does not parse: {err}\n{toml_text}"));
    assert_eq!(
        serde_json::to_value(&from_toml).unwrap(),
        json,
        "TOML round trip"
    );

    for name in config.modules.keys() {
        config
            .settings_for(name)
            .expect("a valid config gives every module settings");
    }
    let _ = config.runtime_config();
}
