//! The embedded store holds at most `store_cache_bytes` of its file in
//! memory, however large the file grows: redb's own default (1 GiB) kept
//! every page written and read, more than an edge box has.
//!
//! One test in its own binary, so that no other test's allocations move the
//! process's resident memory while it measures.

use shanhai_state::{KvSettings, KvStore};

/// Anonymous resident memory of this process (`RssAnon`), in bytes.
fn rss_anon() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("RssAnon:"))
        .expect("RssAnon in /proc/self/status");
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|value| value.parse().ok())
        .expect("RssAnon in kB");
    kib << 10
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_store_stays_within_its_page_cache() {
    const VALUE_BYTES: usize = 512 << 10;
    const VALUES: usize = 96; // 48 MiB of values
    const STORE_CACHE: usize = 8 << 20;
    let dir = tempfile::tempdir().unwrap();
    let settings = KvSettings {
        // The cache in front of the store is bounded on its own; without it
        // every read reaches the file.
        cache_bytes: 0,
        store_cache_bytes: STORE_CACHE,
        ..KvSettings::default()
    };
    let store = KvStore::embedded(&dir.path().join("kv.redb"), settings).unwrap();
    let value = |i: usize| vec![b'a' + (i % 26) as u8; VALUE_BYTES];
    // Warm the allocator and the runtime with one round trip first.
    store.set("big", "warm-up", &value(0), None).await.unwrap();
    store.get("big", "warm-up").await.unwrap().unwrap();
    let before = rss_anon();
    for i in 0..VALUES {
        store
            .set("big", &format!("k{i}"), &value(i), None)
            .await
            .unwrap();
    }
    let after_writes = rss_anon();
    for i in 0..VALUES {
        let read = store.get("big", &format!("k{i}")).await.unwrap().unwrap();
        assert_eq!(read.len(), VALUE_BYTES, "k{i}");
        assert!(
            read.iter().all(|&byte| byte == b'a' + (i % 26) as u8),
            "k{i}"
        );
    }
    let after_reads = rss_anon();
    let file = std::fs::metadata(dir.path().join("kv.redb")).unwrap().len() as usize;
    assert!(
        file >= VALUES * VALUE_BYTES,
        "the file holds every value: {file} bytes"
    );
    // The page cache, plus room for the allocator's slack and the runtime's
    // buffers; the file's 48 MiB must not be resident.
    let limit = STORE_CACHE + (16 << 20);
    for (when, rss) in [("writes", after_writes), ("reads", after_reads)] {
        let growth = rss.saturating_sub(before);
        assert!(
            growth < limit,
            "resident memory grew by {} MiB over the {when} of {} MiB (limit {} MiB)",
            growth >> 20,
            (VALUES * VALUE_BYTES) >> 20,
            limit >> 20,
        );
    }
}
