//! [`KvStore`]: namespaced keys over an embedded or a Redis backend, with an
//! in-process cache in front.

mod cache;
mod embedded;
mod redis;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use self::cache::{Cache, Lookup};
use self::embedded::Embedded;
use self::redis::RedisBackend;

/// The most keys one [`KvStore::list`] page holds, whatever the caller asks.
pub const MAX_LIST_LIMIT: usize = 1000;

/// Which limits and cache settings a [`KvStore`] runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvSettings {
    /// Bytes the in-process cache may hold (keys, values and per-entry
    /// overhead, absences included). 0 disables the cache. Default 16 MiB.
    pub cache_bytes: usize,
    /// Embedded backend: bytes of the store file's pages (redb's read cache
    /// and write buffer) held in memory. redb's own default is 1 GiB, which
    /// a growing store fills with the pages it writes and reads: more than
    /// an edge box has. Pages beyond it are read back from the file (the
    /// kernel's page cache, which memory pressure can reclaim). Default
    /// 16 MiB.
    pub store_cache_bytes: usize,
    /// With Redis, the longest a cached entry is served after it was
    /// fetched: the staleness bound when other gateways write the same key.
    /// Default 1 s.
    pub redis_cache_ttl: Duration,
    /// The largest value `set` and `compare_and_swap` accept. Default 1 MiB.
    pub max_value_bytes: usize,
    /// The longest key (and `list` prefix) accepted, in bytes. Default 512.
    pub max_key_bytes: usize,
}

impl Default for KvSettings {
    fn default() -> Self {
        Self {
            cache_bytes: 16 << 20,
            store_cache_bytes: 16 << 20,
            redis_cache_ttl: Duration::from_secs(1),
            max_value_bytes: 1 << 20,
            max_key_bytes: 512,
        }
    }
}

/// The cache's counters and size, as [`KvStore::cache_stats`] reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered by the cache.
    pub hits: u64,
    /// Reads that went to the backend.
    pub misses: u64,
    /// Entries cached now, absences included.
    pub entries: usize,
    /// Bytes the entries are charged, overhead included.
    pub bytes: usize,
}

/// One page of [`KvStore::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPage {
    /// Keys in ascending byte order.
    pub keys: Vec<String>,
    /// The cursor for the next page; `None` when this page is the last.
    pub next: Option<Vec<u8>>,
}

/// Why a [`KvStore`] operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// A value over [`KvSettings::max_value_bytes`].
    #[error("too large: {0}")]
    TooLarge(String),
    /// An empty key, or one (or a prefix) over [`KvSettings::max_key_bytes`].
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// `increment` found a value that is not a decimal i64, or the sum
    /// overflowed.
    #[error("the value is not a decimal 64-bit integer, or the result overflows")]
    NotANumber,
    /// The backend cannot be reached or did not answer in time.
    #[error("key-value backend unavailable: {0}")]
    Unavailable(String),
    /// Anything else: an I/O or storage error, a protocol surprise.
    #[error("key-value store failure: {0}")]
    Internal(String),
}

/// A namespaced key-value store: an embedded redb file or a Redis server,
/// with an LRU cache in front.
///
/// Keys of one namespace are invisible to every other namespace. `Send` and
/// `Sync`; share it in an `Arc`.
pub struct KvStore {
    backend: Backend,
    cache: Option<Arc<Mutex<Cache>>>,
    settings: KvSettings,
}

enum Backend {
    Embedded(Embedded),
    Redis(RedisBackend),
}

impl KvStore {
    /// Opens (or creates) the redb file at `path`, creating its parent
    /// folders.
    ///
    /// Expired keys read as absent at once. When called inside a tokio
    /// runtime, a background task also deletes them from the file, at the
    /// earliest expiry and at most every few seconds, sleeping while no key
    /// expires; it ends when the store is dropped. Outside a runtime nothing
    /// is swept, and expired keys only cost disk space until overwritten.
    pub fn embedded(path: &Path, settings: KvSettings) -> Result<Self, KvError> {
        let embedded = Embedded::open(path, settings.store_cache_bytes)?;
        if tokio::runtime::Handle::try_current().is_ok() {
            embedded.start_sweeper();
        }
        Ok(Self::with_backend(Backend::Embedded(embedded), settings))
    }

    /// Connects to the Redis server at `url` (`redis://host:port/db`),
    /// failing with [`KvError::Unavailable`] when it does not answer.
    pub async fn redis(url: &str, settings: KvSettings) -> Result<Self, KvError> {
        let redis = RedisBackend::connect(url).await?;
        Ok(Self::with_backend(Backend::Redis(redis), settings))
    }

    fn with_backend(backend: Backend, settings: KvSettings) -> Self {
        let cache = (settings.cache_bytes > 0)
            .then(|| Arc::new(Mutex::new(Cache::new(settings.cache_bytes))));
        Self {
            backend,
            cache,
            settings,
        }
    }

    /// The value of `key`, or `None` when it is absent or expired.
    pub async fn get(&self, namespace: &str, key: &str) -> Result<Option<Bytes>, KvError> {
        self.check_key(key)?;
        let encoded = encode_key(namespace, key);
        let started = Instant::now();
        let stamp = match &self.cache {
            None => None,
            Some(cache) => match lock(cache).lookup(&encoded, started) {
                Lookup::Hit(value) => {
                    metrics::counter!("shanhai_kv_cache_hits_total", "backend" => self.backend_name())
                        .increment(1);
                    return Ok(value);
                }
                Lookup::Miss(stamp) => {
                    metrics::counter!("shanhai_kv_cache_misses_total", "backend" => self.backend_name())
                        .increment(1);
                    Some(stamp)
                }
            },
        };
        let (value, remaining) = match &self.backend {
            Backend::Embedded(embedded) => embedded.get(encoded.clone()).await?,
            Backend::Redis(redis) => redis.get(namespace, key).await?,
        }
        .map_or((None, None), |(value, remaining)| (Some(value), remaining));
        if let (Some(cache), Some(stamp)) = (&self.cache, stamp) {
            // Deadlines count from before the read, so they err on the early side.
            let mut expires = remaining.map(|left| started + left);
            if matches!(self.backend, Backend::Redis(_)) {
                let bound = started + self.settings.redis_cache_ttl;
                expires = Some(expires.map_or(bound, |at| at.min(bound)));
            }
            lock(cache).fill(&encoded, value.clone(), expires, stamp, Instant::now());
        }
        Ok(value)
    }

    /// Stores `value` under `key`, replacing any value and TTL; with a `ttl`
    /// the key reads as absent once it has passed.
    pub async fn set(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        self.check_key(key)?;
        self.check_value(value)?;
        let encoded = encode_key(namespace, key);
        match &self.backend {
            Backend::Embedded(embedded) => {
                let value = Bytes::copy_from_slice(value);
                let store = self.cache_writer(encoded.clone());
                let stored = value.clone();
                embedded
                    .set(encoded, value, ttl, move |expiry| {
                        store(Some(stored), expiry)
                    })
                    .await
            }
            Backend::Redis(redis) => {
                let result = redis.set(namespace, key, value, ttl).await;
                self.invalidate(&encoded);
                result
            }
        }
    }

    /// Deletes `key`; returns whether it existed (and had not expired).
    pub async fn delete(&self, namespace: &str, key: &str) -> Result<bool, KvError> {
        self.check_key(key)?;
        let encoded = encode_key(namespace, key);
        match &self.backend {
            Backend::Embedded(embedded) => {
                let store = self.cache_writer(encoded.clone());
                embedded.delete(encoded, move || store(None, None)).await
            }
            Backend::Redis(redis) => {
                let result = redis.delete(namespace, key).await;
                self.invalidate(&encoded);
                result
            }
        }
    }

    /// Keys of `namespace` starting with `prefix`, in ascending byte order
    /// and pages of at most `limit` (clamped to 1..=[`MAX_LIST_LIMIT`]).
    /// `cursor` is the `next` of the previous page (`None` for the first).
    /// Expired keys are never listed. When nothing is written meanwhile,
    /// following `next` until it is `None` yields every live key exactly
    /// once. Listing bypasses the cache.
    pub async fn list(
        &self,
        namespace: &str,
        prefix: &str,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyPage, KvError> {
        if prefix.len() > self.settings.max_key_bytes {
            return Err(KvError::InvalidKey(format!(
                "prefix of {} bytes, over the {}-byte limit",
                prefix.len(),
                self.settings.max_key_bytes
            )));
        }
        let limit = limit.clamp(1, MAX_LIST_LIMIT);
        // A cursor before the prefix (from another listing) starts at the prefix.
        let cursor = cursor.filter(|cursor| *cursor >= prefix.as_bytes());
        match &self.backend {
            Backend::Embedded(embedded) => {
                embedded
                    .list(
                        encode_key(namespace, prefix),
                        4 + namespace.len(),
                        cursor.map(|cursor| encode_raw(namespace, cursor)),
                        limit,
                    )
                    .await
            }
            Backend::Redis(redis) => redis.list(namespace, prefix, cursor, limit).await,
        }
    }

    /// Sets `new` only if the current value equals `expected` (`None`: only
    /// if the key is absent or expired); returns whether it swapped. The new
    /// value gets `ttl` (`None`: no expiry). Atomic, on Redis also across
    /// processes sharing the server.
    pub async fn compare_and_swap(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        self.check_key(key)?;
        self.check_value(new)?;
        let encoded = encode_key(namespace, key);
        match &self.backend {
            Backend::Embedded(embedded) => {
                let new = Bytes::copy_from_slice(new);
                let store = self.cache_writer(encoded.clone());
                let stored = new.clone();
                embedded
                    .compare_and_swap(
                        encoded,
                        expected.map(<[u8]>::to_vec),
                        new,
                        ttl,
                        move |expiry| store(Some(stored), expiry),
                    )
                    .await
            }
            Backend::Redis(redis) => {
                let result = redis
                    .compare_and_swap(namespace, key, expected, new, ttl)
                    .await;
                self.invalidate(&encoded);
                result
            }
        }
    }

    /// Adds `delta` to the integer stored as decimal ASCII (absent: 0) and
    /// returns the sum, keeping the key's TTL. Atomic. A value that is not a
    /// canonical decimal i64 (as Redis reads one: no sign but `-`, no leading
    /// zeros or spaces), or a sum that overflows, is [`KvError::NotANumber`].
    pub async fn increment(&self, namespace: &str, key: &str, delta: i64) -> Result<i64, KvError> {
        self.check_key(key)?;
        let encoded = encode_key(namespace, key);
        match &self.backend {
            Backend::Embedded(embedded) => {
                let store = self.cache_writer(encoded.clone());
                embedded
                    .increment(encoded, delta, move |sum, expiry| {
                        store(Some(Bytes::from(sum.to_string())), expiry)
                    })
                    .await
            }
            Backend::Redis(redis) => {
                let result = redis.increment(namespace, key, delta).await;
                self.invalidate(&encoded);
                result
            }
        }
    }

    /// `"embedded"` or `"redis"`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Embedded(_) => "embedded",
            Backend::Redis(_) => "redis",
        }
    }

    /// The cache's counters and size (all zero when it is disabled).
    pub fn cache_stats(&self) -> CacheStats {
        self.cache
            .as_ref()
            .map_or_else(CacheStats::default, |cache| lock(cache).stats())
    }

    fn check_key(&self, key: &str) -> Result<(), KvError> {
        if key.is_empty() {
            return Err(KvError::InvalidKey("the key is empty".into()));
        }
        if key.len() > self.settings.max_key_bytes {
            return Err(KvError::InvalidKey(format!(
                "key of {} bytes, over the {}-byte limit",
                key.len(),
                self.settings.max_key_bytes
            )));
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<(), KvError> {
        if value.len() > self.settings.max_value_bytes {
            return Err(KvError::TooLarge(format!(
                "value of {} bytes, over the {}-byte limit",
                value.len(),
                self.settings.max_value_bytes
            )));
        }
        Ok(())
    }

    /// A callback the embedded backend runs right after committing (with the
    /// key's expiry, unix ms), while it still holds its write lock, so the
    /// cache sees writes in commit order.
    fn cache_writer(
        &self,
        encoded: Vec<u8>,
    ) -> impl FnOnce(Option<Bytes>, Option<u64>) + Send + 'static {
        let cache = self.cache.clone();
        move |value, expiry_ms| {
            if let Some(cache) = cache {
                let now = Instant::now();
                let expires = expiry_ms.map(|at| deadline(now, at));
                lock(&cache).store(&encoded, value, expires, now);
            }
        }
    }

    fn invalidate(&self, encoded: &[u8]) {
        if let Some(cache) = &self.cache {
            lock(cache).invalidate(encoded);
        }
    }
}

/// The cache holds no invariant a panicking holder could break halfway
/// (each method restores the list before returning), so a poisoned lock is
/// still usable.
fn lock(cache: &Mutex<Cache>) -> MutexGuard<'_, Cache> {
    cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `namespace` and `key` as one byte string no other pair encodes to: the
/// namespace's length (u32, big-endian) first, so that no namespace or key
/// content, separators included, can shift the boundary between them.
fn encode_key(namespace: &str, key: &str) -> Vec<u8> {
    encode_raw(namespace, key.as_bytes())
}

fn encode_raw(namespace: &str, key: &[u8]) -> Vec<u8> {
    let length = u32::try_from(namespace.len()).unwrap_or(u32::MAX);
    let mut encoded = Vec::with_capacity(4 + namespace.len() + key.len());
    encoded.extend_from_slice(&length.to_be_bytes());
    encoded.extend_from_slice(namespace.as_bytes());
    encoded.extend_from_slice(key);
    encoded
}

/// The instant at which the unix-ms time `expiry_ms` arrives, seen from `now`.
fn deadline(now: Instant, expiry_ms: u64) -> Instant {
    now + Duration::from_millis(expiry_ms.saturating_sub(now_unix_ms()))
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// A TTL in whole milliseconds, rounded up so that a tiny TTL still expires
/// later rather than never (Redis refuses `PX 0`).
fn ttl_ms(ttl: Duration) -> u64 {
    let ms = ttl.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX).max(1)
}

/// Parses a value as Redis's INCRBY does, so both backends agree on what a
/// number is: `0`, or an optional `-` and digits without a leading zero.
fn parse_counter(value: &[u8]) -> Option<i64> {
    let digits = value.strip_prefix(b"-").unwrap_or(value);
    let canonical = value == b"0"
        || (matches!(digits.first(), Some(b'1'..=b'9')) && digits.iter().all(u8::is_ascii_digit));
    if !canonical {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_keys_of_different_namespaces_never_collide() {
        assert_ne!(encode_key("a", "b:c"), encode_key("a:b", "c"));
        assert_ne!(encode_key("", "\0\0\0\u{1}ab"), encode_key("a", "b"));
        // A namespace's prefix range covers none of another's keys.
        assert!(!encode_key("ab", "c").starts_with(&encode_key("a", "")));
    }

    #[test]
    fn counters_parse_like_redis() {
        for (text, parsed) in [
            ("0", Some(0)),
            ("42", Some(42)),
            ("-7", Some(-7)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("-0", None),
            ("007", None),
            ("+1", None),
            (" 1", None),
            ("1 ", None),
            ("", None),
            ("-", None),
            ("1.5", None),
        ] {
            assert_eq!(parse_counter(text.as_bytes()), parsed, "{text:?}");
        }
    }

    #[test]
    fn stores_and_their_futures_can_cross_threads() {
        fn send<T: Send>(_: T) {}
        fn shared<T: Send + Sync>() {}
        shared::<KvStore>();
        shared::<crate::SqlDatabases>();
        let dir = tempfile::tempdir().unwrap();
        let store = KvStore::embedded(&dir.path().join("kv.redb"), KvSettings::default()).unwrap();
        // Host functions await these inside wasmtime's Send futures.
        send(store.get("ns", "k"));
        send(store.set("ns", "k", b"v", None));
        send(store.delete("ns", "k"));
        send(store.list("ns", "", None, 10));
        send(store.compare_and_swap("ns", "k", None, b"v", None));
        send(store.increment("ns", "k", 1));
        let sql = crate::SqlDatabases::new(dir.path(), crate::SqlLimits::default());
        send(sql.execute("db", "SELECT 1", Vec::new()));
    }

    #[test]
    fn ttls_round_up_to_a_millisecond() {
        assert_eq!(ttl_ms(Duration::ZERO), 1);
        assert_eq!(ttl_ms(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_ms(Duration::from_secs(2)), 2000);
    }
}
