//! The properties the fuzz targets in `fuzz/` check on the envelope
//! decoders. The targets and the corpus regression test
//! (`tests/fuzz_corpus.rs`) call these same functions, so every input the
//! fuzzer keeps is checked by `cargo test` too. Not part of the ABI.
//!
//! Each function takes arbitrary bytes and panics when a property fails.
//! The first byte picks the envelope, the rest is what its decoder gets.
//! Whatever decodes must:
//!
//! - encode back to exactly the bytes it came from (every envelope has one
//!   encoding, flags excepted, whose encoding is checked to be a fixed
//!   point instead), and decode again to the same value;
//! - hold no more elements than the input has bytes, so that no count can
//!   make the decoder reserve more than the input justifies.

use crate::wire::{
    Call, HttpRequest, HttpResponse, KeyPage, MqttMessage, MqttOutput, SqlResult, SqlValue,
    TcpEvent, TimerEvent, WsEvent, decode_sql_params, encode_sql_params,
};

/// Decodes `$bytes` as `$ty`; when that succeeds, checks that it encodes
/// back to `$bytes`, and that `$count` (the elements it holds) fits.
macro_rules! check_canonical {
    ($bytes:expr, $ty:ident, $count:expr) => {{
        let bytes: &[u8] = $bytes;
        if let Ok(value) = $ty::decode(bytes) {
            let encoded = value.encode();
            assert_eq!(
                encoded,
                bytes,
                "{} changed when re-encoded: {value:?}",
                stringify!($ty)
            );
            assert_eq!($ty::decode(&encoded).as_ref(), Ok(&value));
            let count: usize = $count(&value);
            assert!(
                count <= bytes.len(),
                "{} holds {count} elements from {} bytes",
                stringify!($ty),
                bytes.len()
            );
        }
    }};
}

/// The event and response envelopes of `wire.rs`: HTTP request and
/// response, call, WebSocket, TCP and timer events.
pub fn wire(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    match selector % 6 {
        0 => {
            check_canonical!(bytes, HttpRequest, |v: &HttpRequest<'_>| v.headers.len());
            if let Ok(request) = HttpRequest::decode(bytes) {
                assert_eq!(request.encoded_len(), bytes.len());
            }
        }
        1 => {
            check_canonical!(bytes, HttpResponse, |v: &HttpResponse<'_>| v.headers.len());
            if let Ok(response) = HttpResponse::decode(bytes) {
                assert!((100..=999).contains(&response.status));
            }
        }
        2 => check_canonical!(bytes, Call, |_: &Call<'_>| 0),
        3 => check_canonical!(bytes, WsEvent, |v: &WsEvent<'_>| v.headers.len()),
        4 => check_canonical!(bytes, TcpEvent, |_: &TcpEvent<'_>| 0),
        _ => check_canonical!(bytes, TimerEvent, |_: &TimerEvent<'_>| 0),
    }
}

/// The MQTT envelopes: a message in, the messages a module publishes out.
pub fn mqtt(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    if selector % 2 == 0 {
        // Any non-zero retain byte decodes as true and encodes as 1.
        if let Ok(message) = MqttMessage::decode(bytes) {
            assert!(message.properties.len() <= bytes.len());
            let encoded = message.encode();
            assert_eq!(encoded.len(), bytes.len());
            assert_eq!(MqttMessage::decode(&encoded).as_ref(), Ok(&message));
            assert_eq!(MqttMessage::decode(&encoded).unwrap().encode(), encoded);
        }
    } else if let Ok(output) = MqttOutput::decode(bytes) {
        assert!(output.messages.len() <= bytes.len());
        let encoded = output.encode();
        // Empty bytes are an empty output, which encodes as a zero count.
        if !bytes.is_empty() {
            assert_eq!(encoded.len(), bytes.len());
        }
        assert_eq!(MqttOutput::decode(&encoded).as_ref(), Ok(&output));
        assert_eq!(MqttOutput::decode(&encoded).unwrap().encode(), encoded);
    }
}

/// The state envelopes: a page of KV keys, SQL parameters, a SQL result.
/// Values are compared by their encoding, because a real may be NaN.
pub fn state(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => check_canonical!(bytes, KeyPage, |v: &KeyPage<'_>| v.keys.len()),
        1 => {
            if let Ok(params) = decode_sql_params(bytes) {
                assert!(params.len() <= bytes.len());
                let encoded = encode_sql_params(&params);
                // Empty bytes are no parameters, which encode as a zero count.
                if !bytes.is_empty() {
                    assert_eq!(encoded, bytes);
                }
                let again = decode_sql_params(&encoded).expect("re-encoded parameters decode");
                assert_eq!(encode_sql_params(&again), encoded);
            }
        }
        _ => {
            if let Ok(result) = SqlResult::decode(bytes) {
                // The fixed header, a length prefix per column name and a
                // tag per cell at least.
                let cells: usize = result.rows.iter().map(Vec::len).sum();
                assert!(24 + 4 * result.columns.len() + cells <= bytes.len());
                assert!(result.rows.iter().all(|r| r.len() == result.columns.len()));
                let encoded = result.encode();
                assert_eq!(encoded, bytes);
                let again = SqlResult::decode(&encoded).expect("a re-encoded result decodes");
                assert_eq!(again.encode(), encoded);
                // Bit for bit, NaN payloads included.
                for (a, b) in result
                    .rows
                    .iter()
                    .flatten()
                    .zip(again.rows.iter().flatten())
                {
                    if let (SqlValue::Real(a), SqlValue::Real(b)) = (a, b) {
                        assert_eq!(a.to_bits(), b.to_bits());
                    }
                }
            }
        }
    }
}

/// Runs `check` on every file of `fuzz/corpus/TARGET/` and
/// `fuzz/regressions/TARGET/` under `fuzz_root`, and panics naming each
/// input that fails: the corpus regression tests of this crate and of the
/// gateway share it.
pub fn replay_corpus(fuzz_root: &std::path::Path, target: &str, check: fn(&[u8])) {
    let mut files: Vec<std::path::PathBuf> = ["corpus", "regressions"]
        .iter()
        .filter_map(|kind| std::fs::read_dir(fuzz_root.join(kind).join(target)).ok())
        .flatten()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no corpus for {target} in {}",
        fuzz_root.display()
    );
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap();
            std::panic::catch_unwind(|| check(&data)).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target} fails on {failed:#?}");
}
