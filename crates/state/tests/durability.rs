//! Embedded durability: writes acknowledged before a `kill -9` are all there
//! when the file is reopened.
//!
//! The test re-runs its own binary as the writer: with `WRITER_ENV` set, the
//! test function becomes a loop that writes and prints `ack N` after each
//! write returns, until the parent kills it mid-stream.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shanhai_state::{KvSettings, KvStore};

const WRITER_ENV: &str = "SHANHAI_STATE_DURABILITY_WRITER";

/// How many acknowledged iterations the parent waits for before killing.
const ACKS_BEFORE_KILL: u64 = 60;

#[test]
fn acknowledged_writes_survive_sigkill() {
    if let Some(path) = std::env::var_os(WRITER_ENV) {
        write_until_killed(path.as_ref());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "acknowledged_writes_survive_sigkill",
            "--exact",
            "--nocapture",
        ])
        .env(WRITER_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut acked = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("ack ") {
            let n: u64 = n.parse().unwrap();
            acked = Some(n);
            if n + 1 >= ACKS_BEFORE_KILL {
                // std's kill is SIGKILL: no destructor, no flush, no clean close.
                child.kill().unwrap();
                break;
            }
        }
        assert!(Instant::now() < deadline, "the writer is too slow");
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the writer exited by itself: {status:?}");
    let acked = acked.expect("the writer acknowledged nothing");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = KvStore::embedded(&path, KvSettings::default()).unwrap();
        for i in 0..=acked {
            let value = store.get("w", &format!("key{i}")).await.unwrap();
            assert_eq!(
                value.as_deref(),
                Some(format!("value{i}").as_bytes()),
                "key{i}"
            );
            let swapped = store.get("w", &format!("cas{i}")).await.unwrap();
            assert_eq!(swapped.as_deref(), Some(&b"after"[..]), "cas{i}");
        }
        for i in 0..acked {
            assert!(
                store.get("w", &format!("gone{i}")).await.unwrap().is_none(),
                "gone{i}"
            );
        }
        // The writer may have run ahead of the acknowledgements read, but
        // never behind; and each increment follows its iteration's set.
        let count = store.increment("w", "count", 0).await.unwrap();
        assert!(
            count > i64::try_from(acked).unwrap(),
            "count {count}, acked 0..={acked}"
        );
        let last = store.get("w", &format!("key{}", count - 1)).await.unwrap();
        assert!(last.is_some(), "count {count} without its key");
    });
}

/// The child: every iteration sets, swaps, deletes and increments, then
/// acknowledges on stdout.
fn write_until_killed(path: &std::path::Path) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = KvStore::embedded(path, KvSettings::default()).unwrap();
        let mut stdout = std::io::stdout();
        for i in 0u64.. {
            store
                .set("w", &format!("gone{i}"), b"v", None)
                .await
                .unwrap();
            store
                .set(
                    "w",
                    &format!("key{i}"),
                    format!("value{i}").as_bytes(),
                    None,
                )
                .await
                .unwrap();
            let cas = format!("cas{i}");
            assert!(
                store
                    .compare_and_swap("w", &cas, None, b"before", None)
                    .await
                    .unwrap()
            );
            assert!(
                store
                    .compare_and_swap("w", &cas, Some(b"before"), b"after", None)
                    .await
                    .unwrap()
            );
            assert!(store.delete("w", &format!("gone{i}")).await.unwrap());
            store.increment("w", "count", 1).await.unwrap();
            writeln!(stdout, "ack {i}").unwrap();
            stdout.flush().unwrap();
        }
    });
}
