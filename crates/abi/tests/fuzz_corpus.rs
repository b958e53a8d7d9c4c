//! Replays the ABI fuzz targets' seed corpus and regression inputs
//! (`fuzz/corpus/TARGET/`, `fuzz/regressions/TARGET/`) through the same
//! checks the targets run (`shanhai_abi::fuzzing`), so that `cargo test`
//! keeps every input the fuzzer found interesting, without libFuzzer.

use std::path::{Path, PathBuf};

/// Runs `check` on every file of the target's corpus and regression
/// folders, and fails naming each input that panics.
fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut files: Vec<PathBuf> = ["corpus", "regressions"]
        .iter()
        .filter_map(|kind| std::fs::read_dir(fuzz.join(kind).join(target)).ok())
        .flatten()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no corpus for {target} in {}",
        fuzz.display()
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
