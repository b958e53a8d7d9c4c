//! Replays the gateway's fuzz targets' seed corpus and regression inputs
//! (`fuzz/corpus/TARGET/`, `fuzz/regressions/TARGET/`) through the same
//! checks the targets run (`shanhai_gateway::fuzzing`), so that `cargo test`
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
