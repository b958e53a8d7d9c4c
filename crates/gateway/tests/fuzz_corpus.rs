//! Replays the gateway's fuzz targets' seed corpus and regression inputs
//! (`fuzz/corpus/TARGET/`, `fuzz/regressions/TARGET/`) through the same
//! checks the targets run (`shanhai_gateway::fuzzing`), so that `cargo test`
//! keeps every input the fuzzer found interesting, without libFuzzer.

use std::path::Path;

/// Replays the target's inputs (see [`shanhai_abi::fuzzing::replay_corpus`]).
fn replay(target: &str, check: fn(&[u8])) {
    let fuzz_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    shanhai_abi::fuzzing::replay_corpus(&fuzz_root, target, check);
}

#[test]
fn ws_codec_corpus() {
    replay("ws_codec", shanhai_gateway::fuzzing::ws_codec);
}

#[test]
fn tcp_framer_corpus() {
    replay("tcp_framer", shanhai_gateway::fuzzing::tcp_framer);
}

#[test]
fn mqtt_topic_corpus() {
    replay("mqtt_topic", shanhai_gateway::fuzzing::mqtt_topic);
}

#[test]
fn config_corpus() {
    replay("config", shanhai_gateway::fuzzing::config);
}
