//! Every KvStore operation against both real backends: a redb file in a
//! temporary folder, and a `redis-server` child process.

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::RedisServer;
use shanhai_state::{KvError, KvSettings, KvStore, MAX_LIST_LIMIT};

/// Where a test's stores keep their data.
enum Fixture {
    Embedded(tempfile::TempDir),
    Redis(RedisServer),
}

impl Fixture {
    fn embedded() -> Self {
        Self::Embedded(tempfile::tempdir().unwrap())
    }

    fn redis() -> Self {
        Self::Redis(RedisServer::start())
    }

    async fn store(&self) -> KvStore {
        self.store_with(KvSettings::default()).await
    }

    /// A store over the fixture's data. Embedded: one at a time (redb locks
    /// the file). Redis: as many as wanted, like gateways sharing a server.
    async fn store_with(&self, settings: KvSettings) -> KvStore {
        match self {
            Self::Embedded(dir) => KvStore::embedded(&self.path(dir), settings).unwrap(),
            Self::Redis(server) => KvStore::redis(&server.url(), settings).await.unwrap(),
        }
    }

    fn path(&self, dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("nested/folders/kv.redb")
    }
}

/// Polls `condition` every 10 ms until it holds; returns how long that took
/// from `since`, or panics after `within`.
async fn eventually<F: Future<Output = bool>>(
    since: Instant,
    within: Duration,
    what: &str,
    mut condition: impl FnMut() -> F,
) -> Duration {
    loop {
        if condition().await {
            return since.elapsed();
        }
        assert!(since.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs each named test body against both backends.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(&super::Fixture::embedded()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(&super::Fixture::redis()).await;
                }
            )*
        }
    };
}

on_both_backends!(
    get_set_delete,
    keys_and_values_are_validated,
    keys_expire_after_their_ttl,
    a_set_without_ttl_clears_the_ttl,
    namespaces_are_isolated,
    list_pages_through_every_key_once,
    compare_and_swap_semantics,
    compare_and_swap_is_atomic_under_contention,
    increment_semantics,
    concurrent_increments_are_never_lost,
    the_cache_serves_repeated_reads,
    the_cache_stays_within_its_byte_bound,
);

async fn get_set_delete(fixture: &Fixture) {
    let store = fixture.store().await;
    assert_eq!(store.get("ns", "k").await.unwrap(), None);
    store.set("ns", "k", b"one", None).await.unwrap();
    assert_eq!(
        store.get("ns", "k").await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
    let binary: Vec<u8> = (0..=255).collect();
    store.set("ns", "k", &binary, None).await.unwrap();
    assert_eq!(
        store.get("ns", "k").await.unwrap().as_deref(),
        Some(&binary[..])
    );
    store.set("ns", "empty", b"", None).await.unwrap();
    assert_eq!(
        store.get("ns", "empty").await.unwrap().as_deref(),
        Some(&b""[..])
    );

    assert!(store.delete("ns", "k").await.unwrap());
    assert!(!store.delete("ns", "k").await.unwrap());
    assert_eq!(store.get("ns", "k").await.unwrap(), None);
    assert!(!store.delete("ns", "never-set").await.unwrap());

    let expected = match fixture {
        Fixture::Embedded(_) => "embedded",
        Fixture::Redis(_) => "redis",
    };
    assert_eq!(store.backend_name(), expected);

    // What was written is still there for a new store over the same data.
    drop(store);
    let store = fixture.store().await;
    assert_eq!(
        store.get("ns", "empty").await.unwrap().as_deref(),
        Some(&b""[..])
    );
    assert_eq!(store.get("ns", "k").await.unwrap(), None);
}

async fn keys_and_values_are_validated(fixture: &Fixture) {
    let settings = KvSettings {
        max_key_bytes: 16,
        max_value_bytes: 100,
        ..KvSettings::default()
    };
    let store = fixture.store_with(settings).await;
    let long_key = "k".repeat(17);
    for result in [
        store.get("ns", "").await.map(|_| ()),
        store.set("ns", "", b"v", None).await,
        store.delete("ns", "").await.map(|_| ()),
        store.increment("ns", "", 1).await.map(|_| ()),
        store
            .compare_and_swap("ns", "", None, b"v", None)
            .await
            .map(|_| ()),
        store.get("ns", &long_key).await.map(|_| ()),
        store.set("ns", &long_key, b"v", None).await,
        store.list("ns", &long_key, None, 10).await.map(|_| ()),
    ] {
        assert!(matches!(result, Err(KvError::InvalidKey(_))), "{result:?}");
    }
    store.set("ns", &"k".repeat(16), b"v", None).await.unwrap();

    let big = vec![0u8; 101];
    assert!(matches!(
        store.set("ns", "k", &big, None).await,
        Err(KvError::TooLarge(_))
    ));
    assert!(matches!(
        store.compare_and_swap("ns", "k", None, &big, None).await,
        Err(KvError::TooLarge(_))
    ));
    assert_eq!(store.get("ns", "k").await.unwrap(), None);
    store.set("ns", "k", &big[..100], None).await.unwrap();
}

async fn keys_expire_after_their_ttl(fixture: &Fixture) {
    let store = fixture.store().await;
    let ttl = Duration::from_millis(200);
    let start = Instant::now();
    store.set("ns", "short", b"v", Some(ttl)).await.unwrap();
    store.set("ns", "counter", b"5", Some(ttl)).await.unwrap();
    store
        .set("ns", "long", b"v", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    // The cache must not outlive the TTL either: make it hold the entry.
    let first = store.get("ns", "short").await.unwrap();
    if start.elapsed() < Duration::from_millis(150) {
        assert!(first.is_some(), "expired long before its TTL");
        // increment keeps the TTL (as Redis's INCRBY does).
        assert_eq!(store.increment("ns", "counter", 1).await.unwrap(), 6);
        let page = store.list("ns", "", None, 10).await.unwrap();
        assert_eq!(page.keys, ["counter", "long", "short"]);
    }

    let took = eventually(start, Duration::from_secs(5), "expiry", || async {
        store.get("ns", "short").await.unwrap().is_none()
    })
    .await;
    // Allow for whole-millisecond rounding on the backends.
    assert!(
        took >= ttl - Duration::from_millis(5),
        "expired after {took:?}"
    );
    eventually(start, Duration::from_secs(5), "counter expiry", || async {
        store.get("ns", "counter").await.unwrap().is_none()
    })
    .await;

    // Gone for every operation, not just get.
    let page = store.list("ns", "", None, 10).await.unwrap();
    assert_eq!(page.keys, ["long"]);
    assert!(!store.delete("ns", "short").await.unwrap());
    assert!(
        store
            .compare_and_swap("ns", "short", None, b"new", None)
            .await
            .unwrap()
    );
    assert_eq!(store.increment("ns", "counter", 1).await.unwrap(), 1);
    assert!(store.get("ns", "long").await.unwrap().is_some());

    // A TTL given to compare_and_swap applies to the new value.
    let start = Instant::now();
    assert!(
        store
            .compare_and_swap("ns", "swapped", None, b"v", Some(ttl))
            .await
            .unwrap()
    );
    let took = eventually(start, Duration::from_secs(5), "swap expiry", || async {
        store.get("ns", "swapped").await.unwrap().is_none()
    })
    .await;
    assert!(
        took >= ttl - Duration::from_millis(5),
        "expired after {took:?}"
    );
}

async fn a_set_without_ttl_clears_the_ttl(fixture: &Fixture) {
    let store = fixture.store().await;
    store
        .set("ns", "k", b"old", Some(Duration::from_millis(100)))
        .await
        .unwrap();
    // A control key with the same TTL, set after `k`'s first write: once
    // the store has expired it, the TTL `k` had has passed too.
    store
        .set("other", "control", b"x", Some(Duration::from_millis(100)))
        .await
        .unwrap();
    store.set("ns", "k", b"new", None).await.unwrap();
    eventually(
        Instant::now(),
        Duration::from_secs(10),
        "control expiry",
        || async { store.get("other", "control").await.unwrap().is_none() },
    )
    .await;
    assert_eq!(
        store.get("ns", "k").await.unwrap().as_deref(),
        Some(&b"new"[..])
    );
    assert_eq!(store.list("ns", "", None, 10).await.unwrap().keys, ["k"]);
}

async fn namespaces_are_isolated(fixture: &Fixture) {
    let store = fixture.store().await;
    // Pairs that naive "ns:key" joining, or glob matching, would confuse.
    let namespaces = ["a", "a:b", "a*", "1:a", "", "m:hello", "s:shared", "a\u{0}"];
    let keys = [
        "b:c",
        "c",
        "*",
        "?",
        "[a-z]",
        "\\",
        "\u{0}",
        ":",
        "x\u{ff}",
        "1:a:b:c",
        "shanhai:kv:1:a:c",
    ];
    for namespace in namespaces {
        for key in keys {
            let value = format!("{namespace}|{key}");
            store
                .set(namespace, key, value.as_bytes(), None)
                .await
                .unwrap();
        }
    }
    // A second store reads from the backend, not the first one's cache.
    let fresh = fixture_reader(fixture, store).await;
    for namespace in namespaces {
        for key in keys {
            let value = fresh.get(namespace, key).await.unwrap().unwrap();
            assert_eq!(value, format!("{namespace}|{key}").as_bytes());
        }
        let mut listed = Vec::new();
        let mut cursor = None;
        loop {
            let page = fresh
                .list(namespace, "", cursor.as_deref(), 3)
                .await
                .unwrap();
            listed.extend(page.keys);
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let mut expected: Vec<&str> = keys.to_vec();
        expected.sort();
        assert_eq!(listed, expected, "listing namespace {namespace:?}");
        for prefix in ["*", "[", "\\", "b", "1:a", "shanhai"] {
            let page = fresh.list(namespace, prefix, None, 100).await.unwrap();
            let wanted: Vec<&str> = expected
                .iter()
                .copied()
                .filter(|k| k.starts_with(prefix))
                .collect();
            assert_eq!(page.keys, wanted, "prefix {prefix:?} in {namespace:?}");
        }
    }
    // A hostile cursor cannot lead out of the namespace either.
    for cursor in [&b"\xff\xff"[..], b"", b"\0", b"shanhai:kv:3:a:b:"] {
        let page = fresh.list("a", "", Some(cursor), 100).await.unwrap();
        assert!(page.keys.iter().all(|key| keys.contains(&key.as_str())));
    }

    assert!(fresh.delete("a", "b:c").await.unwrap());
    assert_eq!(fresh.get("a:b", "c").await.unwrap().unwrap(), &b"a:b|c"[..]);
    assert!(fresh.get("a", "b:c").await.unwrap().is_none());
    fresh.set("a", "n", b"1", None).await.unwrap();
    assert_eq!(fresh.increment("a:b", "n", 5).await.unwrap(), 5);
    assert_eq!(fresh.increment("a", "n", 1).await.unwrap(), 2);
}

/// A store without a cache over the same data (reopening the file for the
/// embedded backend, which allows one open store).
async fn fixture_reader(fixture: &Fixture, store: KvStore) -> KvStore {
    drop(store);
    fixture
        .store_with(KvSettings {
            cache_bytes: 0,
            ..KvSettings::default()
        })
        .await
}

async fn list_pages_through_every_key_once(fixture: &Fixture) {
    let store = Arc::new(fixture.store().await);
    let writers: Vec<_> = (0..250)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .set("ns", &format!("item/{i}"), b"v", None)
                    .await
                    .unwrap();
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    for i in 0..10 {
        store
            .set("ns", &format!("other/{i}"), b"v", None)
            .await
            .unwrap();
        store
            .set("ns2", &format!("item/{i}"), b"v", None)
            .await
            .unwrap();
    }
    store.set("ns", "item", b"v", None).await.unwrap();
    store.set("ns", "items", b"v", None).await.unwrap();

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<Vec<u8>> = None;
    loop {
        let page = store
            .list("ns", "item/", cursor.as_deref(), 100)
            .await
            .unwrap();
        sizes.push(page.keys.len());
        seen.extend(page.keys);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(sizes.len() < 10, "pagination does not terminate");
    }
    assert_eq!(sizes, [100, 100, 50]);
    let distinct: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), 250);
    assert!(
        seen.windows(2).all(|pair| pair[0] < pair[1]),
        "not in ascending order"
    );
    assert!(seen.iter().all(|key| key.starts_with("item/")));

    // The prefix itself is a key too, and `limit` is clamped.
    let all = store.list("ns", "", None, usize::MAX).await.unwrap();
    assert_eq!(all.keys.len(), 262);
    assert!(all.keys.len() <= MAX_LIST_LIMIT && all.next.is_none());
    let one = store.list("ns", "item", None, 0).await.unwrap();
    assert_eq!(one.keys, ["item"]);
    assert!(one.next.is_some());
    let exact = store.list("ns", "other/", None, 10).await.unwrap();
    assert_eq!((exact.keys.len(), exact.next), (10, None));
    assert!(
        store
            .list("ns", "nothing", None, 10)
            .await
            .unwrap()
            .keys
            .is_empty()
    );
}

async fn compare_and_swap_semantics(fixture: &Fixture) {
    let store = fixture.store().await;
    assert!(
        !store
            .compare_and_swap("ns", "k", Some(b"v"), b"w", None)
            .await
            .unwrap()
    );
    assert_eq!(store.get("ns", "k").await.unwrap(), None);
    assert!(
        store
            .compare_and_swap("ns", "k", None, b"v1", None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .compare_and_swap("ns", "k", None, b"v2", None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .compare_and_swap("ns", "k", Some(b"v2"), b"v3", None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .compare_and_swap("ns", "k", Some(b""), b"v3", None)
            .await
            .unwrap()
    );
    // A cached read before the swap must not hide it.
    assert_eq!(
        store.get("ns", "k").await.unwrap().as_deref(),
        Some(&b"v1"[..])
    );
    assert!(
        store
            .compare_and_swap("ns", "k", Some(b"v1"), b"v2", None)
            .await
            .unwrap()
    );
    assert_eq!(
        store.get("ns", "k").await.unwrap().as_deref(),
        Some(&b"v2"[..])
    );
    // The empty value is a value, not absence.
    store.set("ns", "empty", b"", None).await.unwrap();
    assert!(
        !store
            .compare_and_swap("ns", "empty", None, b"x", None)
            .await
            .unwrap()
    );
    assert!(
        store
            .compare_and_swap("ns", "empty", Some(b""), b"x", None)
            .await
            .unwrap()
    );
    assert_eq!(
        store.list("ns", "", None, 10).await.unwrap().keys,
        ["empty", "k"]
    );
}

async fn compare_and_swap_is_atomic_under_contention(fixture: &Fixture) {
    let store = Arc::new(fixture.store().await);
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for _ in 0..25 {
                    // An optimistic counter: read, then swap, retrying on a lost race.
                    loop {
                        let current = store.get("ns", "n").await.unwrap();
                        let n: u32 = current
                            .as_deref()
                            .map_or(0, |v| std::str::from_utf8(v).unwrap().parse().unwrap());
                        let next = (n + 1).to_string();
                        if store
                            .compare_and_swap("ns", "n", current.as_deref(), next.as_bytes(), None)
                            .await
                            .unwrap()
                        {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        store.get("ns", "n").await.unwrap().as_deref(),
        Some(&b"100"[..])
    );
}

async fn increment_semantics(fixture: &Fixture) {
    let store = fixture.store().await;
    assert_eq!(store.increment("ns", "n", 5).await.unwrap(), 5);
    assert_eq!(store.increment("ns", "n", -7).await.unwrap(), -2);
    assert_eq!(
        store.get("ns", "n").await.unwrap().as_deref(),
        Some(&b"-2"[..])
    );
    assert_eq!(store.list("ns", "", None, 10).await.unwrap().keys, ["n"]);

    for bad in [
        &b"abc"[..],
        b" 1",
        b"1.5",
        b"",
        b"007",
        b"+1",
        b"99999999999999999999",
    ] {
        store.set("ns", "bad", bad, None).await.unwrap();
        assert_eq!(
            store.increment("ns", "bad", 1).await,
            Err(KvError::NotANumber),
            "{bad:?}"
        );
        assert_eq!(store.get("ns", "bad").await.unwrap().as_deref(), Some(bad));
    }
    store
        .set("ns", "max", i64::MAX.to_string().as_bytes(), None)
        .await
        .unwrap();
    assert_eq!(
        store.increment("ns", "max", 1).await,
        Err(KvError::NotANumber)
    );
    assert_eq!(
        store.increment("ns", "max", -1).await.unwrap(),
        i64::MAX - 1
    );
    // Past 2^53 a detour through a float would round.
    store
        .set("ns", "big", b"9007199254740993", None)
        .await
        .unwrap();
    assert_eq!(
        store.increment("ns", "big", 2).await.unwrap(),
        9_007_199_254_740_995
    );
    assert_eq!(
        store.increment("ns", "min", i64::MIN).await.unwrap(),
        i64::MIN
    );
    assert_eq!(
        store.increment("ns", "min", -1).await,
        Err(KvError::NotANumber)
    );
}

async fn concurrent_increments_are_never_lost(fixture: &Fixture) {
    let store = Arc::new(fixture.store().await);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for _ in 0..250 {
                    store.increment("ns", "hits", 1).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.increment("ns", "hits", 0).await.unwrap(), 2000);
    assert_eq!(
        store.get("ns", "hits").await.unwrap().as_deref(),
        Some(&b"2000"[..])
    );
}

async fn the_cache_serves_repeated_reads(fixture: &Fixture) {
    let store = fixture.store().await;
    store.set("ns", "k", b"v", None).await.unwrap();
    let before = store.cache_stats();
    for _ in 0..5 {
        assert_eq!(
            store.get("ns", "k").await.unwrap().as_deref(),
            Some(&b"v"[..])
        );
        assert_eq!(store.get("ns", "absent").await.unwrap(), None);
    }
    let after = store.cache_stats();
    // Embedded caches the write itself; Redis fetches once per key after it.
    assert!(after.misses - before.misses <= 2, "{before:?} → {after:?}");
    assert!(after.hits - before.hits >= 8, "{before:?} → {after:?}");
    assert!(after.entries >= 2);

    // Writes through the store are seen at once, also deletes.
    store.set("ns", "k", b"w", None).await.unwrap();
    assert_eq!(
        store.get("ns", "k").await.unwrap().as_deref(),
        Some(&b"w"[..])
    );
    store.set("ns", "absent", b"now here", None).await.unwrap();
    assert_eq!(
        store.get("ns", "absent").await.unwrap().as_deref(),
        Some(&b"now here"[..])
    );
    assert!(store.delete("ns", "k").await.unwrap());
    assert_eq!(store.get("ns", "k").await.unwrap(), None);
    assert_eq!(store.increment("ns", "n", 1).await.unwrap(), 1);
    assert_eq!(
        store.get("ns", "n").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(store.increment("ns", "n", 1).await.unwrap(), 2);
    assert_eq!(
        store.get("ns", "n").await.unwrap().as_deref(),
        Some(&b"2"[..])
    );
    drop(store);

    let uncached = fixture
        .store_with(KvSettings {
            cache_bytes: 0,
            ..KvSettings::default()
        })
        .await;
    uncached.get("ns", "n").await.unwrap();
    uncached.get("ns", "n").await.unwrap();
    assert_eq!(uncached.cache_stats(), shanhai_state::CacheStats::default());
}

async fn the_cache_stays_within_its_byte_bound(fixture: &Fixture) {
    let store = fixture
        .store_with(KvSettings {
            cache_bytes: 8 * 1024,
            ..KvSettings::default()
        })
        .await;
    let value = vec![7u8; 300];
    for i in 0..100 {
        store
            .set("ns", &format!("k{i}"), &value, None)
            .await
            .unwrap();
        store.get("ns", &format!("k{i}")).await.unwrap();
        store.get("ns", &format!("absent{i}")).await.unwrap();
        assert!(
            store.cache_stats().bytes <= 8 * 1024,
            "{:?}",
            store.cache_stats()
        );
    }
    let stats = store.cache_stats();
    assert!(stats.entries > 10, "{stats:?}");
    // Every key is still readable from the backend after eviction.
    for i in 0..100 {
        assert_eq!(
            store
                .get("ns", &format!("k{i}"))
                .await
                .unwrap()
                .unwrap()
                .len(),
            300
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_increments_from_two_gateways_are_never_lost() {
    let fixture = Fixture::redis();
    let stores = [
        Arc::new(fixture.store().await),
        Arc::new(fixture.store().await),
    ];
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&stores[i % 2]);
            tokio::spawn(async move {
                for _ in 0..250 {
                    store.increment("ns", "hits", 1).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for store in &stores {
        assert_eq!(
            store.get("ns", "hits").await.unwrap().as_deref(),
            Some(&b"2000"[..])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_compare_and_swap_is_atomic_across_gateways() {
    let fixture = Fixture::redis();
    let stores = [
        Arc::new(fixture.store().await),
        Arc::new(fixture.store().await),
    ];
    // Both gateways race to claim the same key; exactly one may win each round.
    for round in 0..50 {
        let key = format!("lock{round}");
        let claims: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let (store, key) = (Arc::clone(store), key.clone());
                tokio::spawn(async move {
                    store
                        .compare_and_swap("ns", &key, None, i.to_string().as_bytes(), None)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut wins = 0;
        for claim in claims {
            wins += usize::from(claim.await.unwrap());
        }
        assert_eq!(wins, 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cache_staleness_is_bounded_by_redis_cache_ttl() {
    let fixture = Fixture::redis();
    let bound = Duration::from_millis(300);
    let settings = KvSettings {
        redis_cache_ttl: bound,
        ..KvSettings::default()
    };
    let writer = fixture.store_with(settings.clone()).await;
    let reader = fixture.store_with(settings).await;

    writer.set("ns", "k", b"v1", None).await.unwrap();
    let fetched = Instant::now();
    assert_eq!(
        reader.get("ns", "k").await.unwrap().as_deref(),
        Some(&b"v1"[..])
    );
    writer.set("ns", "k", b"v2", None).await.unwrap();
    let hits_before = reader.cache_stats().hits;
    let took = eventually(
        fetched,
        Duration::from_secs(5),
        "the other gateway's write",
        || async { reader.get("ns", "k").await.unwrap().as_deref() == Some(&b"v2"[..]) },
    )
    .await;
    assert!(
        took <= bound + Duration::from_millis(200),
        "stale for {took:?}"
    );
    if took >= Duration::from_millis(100) {
        // It was served from the cache meanwhile, not fetched every time.
        assert!(reader.cache_stats().hits > hits_before);
    }

    // A key's own TTL bounds the entry even when redis_cache_ttl is long.
    let reader = fixture
        .store_with(KvSettings {
            redis_cache_ttl: Duration::from_secs(60),
            ..KvSettings::default()
        })
        .await;
    let start = Instant::now();
    writer
        .set("ns", "ttl", b"v", Some(Duration::from_millis(200)))
        .await
        .unwrap();
    reader.get("ns", "ttl").await.unwrap();
    let took = eventually(
        start,
        Duration::from_secs(5),
        "expiry through the cache",
        || async { reader.get("ns", "ttl").await.unwrap().is_none() },
    )
    .await;
    assert!(
        took <= Duration::from_millis(200) + Duration::from_millis(300),
        "{took:?}"
    );
    // And an absence cached with a long redis_cache_ttl is still bounded by it.
    assert_eq!(reader.get("ns", "later").await.unwrap(), None);
    writer.set("ns", "later", b"v", None).await.unwrap();
    assert_eq!(
        reader.get("ns", "later").await.unwrap(),
        None,
        "absence was not cached"
    );
}

#[tokio::test]
async fn redis_unreachable_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = Instant::now();
    let error = KvStore::redis(&format!("redis://127.0.0.1:{port}/"), KvSettings::default())
        .await
        .err()
        .expect("connected to a port nothing listens on");
    assert!(start.elapsed() < Duration::from_secs(15));
    let KvError::Unavailable(message) = &error else {
        panic!("{error:?}");
    };
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(matches!(
        KvStore::redis("not a url", KvSettings::default()).await,
        Err(KvError::Unavailable(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_is_unavailable() {
    let fixture = Fixture::redis();
    let store = fixture.store().await;
    store.set("ns", "k", b"v", None).await.unwrap();
    drop(fixture);
    let start = Instant::now();
    let result = store.get("ns", "other").await;
    assert!(matches!(result, Err(KvError::Unavailable(_))), "{result:?}");
    let result = store.set("ns", "k", b"w", None).await;
    assert!(matches!(result, Err(KvError::Unavailable(_))), "{result:?}");
    assert!(start.elapsed() < Duration::from_secs(15));
}
