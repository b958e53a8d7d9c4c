//! Replays the ABI fuzz targets' seed corpus and regression inputs
//! (`fuzz/corpus/TARGET/`, `fuzz/regressions/TARGET/`) through the same
//! checks the targets run (`shanhai_abi::fuzzing`), so that `cargo test`
//! keeps every input the fuzzer found interesting, without libFuzzer.

use std::path::Path;

/// Replays the target's inputs (see [`shanhai_abi::fuzzing::replay_corpus`]).
fn replay(target: &str, check: fn(&[u8])) {
    let fuzz_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    shanhai_abi::fuzzing::replay_corpus(&fuzz_root, target, check);
}

#[test]
fn abi_wire_corpus() {
    replay("abi_wire", shanhai_abi::fuzzing::wire);
}

#[test]
fn abi_mqtt_corpus() {
    replay("abi_mqtt", shanhai_abi::fuzzing::mqtt);
}

#[test]
fn abi_state_corpus() {
    replay("abi_state", shanhai_abi::fuzzing::state);
}
