//! The embedded backend: one redb file.
//!
//! Table `kv` maps an encoded key (see `encode_key`) to a record: the expiry
//! as unix milliseconds (u64, big-endian, 0 for none) followed by the value.
//! Table `kv_expiry` indexes keys by expiry (`expiry ‖ encoded key`), so the
//! sweeper finds what is due without reading every record.
//!
//! redb runs one write transaction at a time and commits durably (fsync)
//! before `commit` returns, so a write that returned `Ok` survives a crash.

use std::fs;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{KeyPage, KvError, now_unix_ms, parse_counter, ttl_ms};

const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("kv_expiry");

/// How often the background task deletes expired keys.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Keys deleted per sweep transaction, so writers never wait long behind it.
const SWEEP_BATCH: usize = 1024;

type DataTable<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;
type ExpiryTable<'t> = redb::Table<'t, &'static [u8], ()>;

/// A handle on the redb file; clones of the inner `Arc` go to blocking tasks.
pub(crate) struct Embedded {
    shared: Arc<Shared>,
}

struct Shared {
    db: Database,
    /// Held from `begin_write` until the cache has seen the commit, so that
    /// the cache learns of writes in the order they were committed.
    write_lock: Mutex<()>,
}

/// Errors inside a blocking task: storage errors are converted to
/// [`KvError::Internal`] only at the task's end.
enum Failure {
    Storage(redb::Error),
    Kv(KvError),
}

macro_rules! storage_errors {
    ($($error:ty),*) => {$(
        impl From<$error> for Failure {
            fn from(error: $error) -> Self {
                Self::Storage(error.into())
            }
        }
    )*};
}

storage_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<KvError> for Failure {
    fn from(error: KvError) -> Self {
        Self::Kv(error)
    }
}

impl From<Failure> for KvError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Storage(error) => KvError::Internal(format!("embedded store: {error}")),
            Failure::Kv(error) => error,
        }
    }
}

/// Runs storage work off the async runtime's worker threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, KvError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| KvError::Internal(format!("storage task failed: {error}")))?
        .map_err(KvError::from)
}

impl Embedded {
    /// Opens or creates the file, and the tables, so readers never meet a
    /// missing table.
    pub(crate) fn open(path: &Path) -> Result<Self, KvError> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            fs::create_dir_all(parent).map_err(|error| {
                KvError::Internal(format!("cannot create {}: {error}", parent.display()))
            })?;
        }
        let db = Database::create(path).map_err(|error| {
            KvError::Internal(format!("cannot open {}: {error}", path.display()))
        })?;
        let create_tables = || -> Result<(), Failure> {
            let txn = db.begin_write()?;
            txn.open_table(DATA)?;
            txn.open_table(EXPIRY)?;
            txn.commit()?;
            Ok(())
        };
        create_tables()?;
        Ok(Self {
            shared: Arc::new(Shared {
                db,
                write_lock: Mutex::new(()),
            }),
        })
    }

    /// Spawns the task that deletes expired keys every [`SWEEP_INTERVAL`].
    /// It holds the file only weakly, and ends once the store is dropped.
    pub(crate) fn start_sweeper(&self) {
        let shared = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                // A failed sweep only delays reclaiming space: reads already
                // treat the keys as absent, and the next tick tries again.
                let _ = tokio::task::spawn_blocking(move || shared.sweep(now_unix_ms())).await;
            }
        });
    }

    /// The live value of `key` and the time it has left.
    pub(crate) async fn get(
        &self,
        key: Vec<u8>,
    ) -> Result<Option<(Bytes, Option<Duration>)>, KvError> {
        let shared = Arc::clone(&self.shared);
        blocking(move || {
            let txn = shared.db.begin_read()?;
            let table = txn.open_table(DATA)?;
            let Some(record) = table.get(key.as_slice())? else {
                return Ok(None);
            };
            let (expiry, value) = split(record.value())?;
            let now = now_unix_ms();
            Ok(live(expiry, now).then(|| {
                let left = expiry.map(|at| Duration::from_millis(at - now));
                (Bytes::copy_from_slice(value), left)
            }))
        })
        .await
    }

    /// Stores `value`; `committed` gets the expiry (unix ms) under the lock.
    pub(crate) async fn set(
        &self,
        key: Vec<u8>,
        value: Bytes,
        ttl: Option<Duration>,
        committed: impl FnOnce(Option<u64>) + Send + 'static,
    ) -> Result<(), KvError> {
        let shared = Arc::clone(&self.shared);
        blocking(move || {
            shared.write(
                |data, expiry, now| {
                    let at = ttl.map(|ttl| now.saturating_add(ttl_ms(ttl)));
                    put(data, expiry, &key, &value, at)?;
                    Ok(at)
                },
                |at| committed(*at),
            )
        })
        .await
        .map(|_| ())
    }

    /// Deletes `key`; returns whether it was live.
    pub(crate) async fn delete(
        &self,
        key: Vec<u8>,
        committed: impl FnOnce() + Send + 'static,
    ) -> Result<bool, KvError> {
        let shared = Arc::clone(&self.shared);
        blocking(move || {
            shared.write(
                |data, expiry, now| {
                    let old = match data.remove(key.as_slice())? {
                        Some(record) => Some(split(record.value())?.0),
                        None => return Ok(false),
                    };
                    let old = old.flatten();
                    if let Some(at) = old {
                        expiry.remove(expiry_key(at, &key).as_slice())?;
                    }
                    Ok(live(old, now))
                },
                |_| committed(),
            )
        })
        .await
    }

    /// Swaps in `new` if the live value equals `expected`; `committed` runs
    /// only after a swap, with the new expiry.
    pub(crate) async fn compare_and_swap(
        &self,
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Bytes,
        ttl: Option<Duration>,
        committed: impl FnOnce(Option<u64>) + Send + 'static,
    ) -> Result<bool, KvError> {
        let shared = Arc::clone(&self.shared);
        blocking(move || {
            shared.write(
                |data, expiry, now| {
                    let matches = match data.get(key.as_slice())? {
                        None => expected.is_none(),
                        Some(record) => {
                            let (at, current) = split(record.value())?;
                            if live(at, now) {
                                expected.as_deref() == Some(current)
                            } else {
                                expected.is_none()
                            }
                        }
                    };
                    if !matches {
                        return Ok(None);
                    }
                    let at = ttl.map(|ttl| now.saturating_add(ttl_ms(ttl)));
                    put(data, expiry, &key, &new, at)?;
                    Ok(Some(at))
                },
                |swapped| {
                    if let Some(at) = swapped {
                        committed(*at);
                    }
                },
            )
        })
        .await
        .map(|swapped| swapped.is_some())
    }

    /// Adds `delta` in one write transaction, keeping the key's expiry;
    /// `committed` gets the sum and the expiry.
    pub(crate) async fn increment(
        &self,
        key: Vec<u8>,
        delta: i64,
        committed: impl FnOnce(i64, Option<u64>) + Send + 'static,
    ) -> Result<i64, KvError> {
        let shared = Arc::clone(&self.shared);
        blocking(move || {
            shared.write(
                |data, expiry, now| {
                    let (current, at) = match data.get(key.as_slice())? {
                        None => (0, None),
                        Some(record) => {
                            let (at, value) = split(record.value())?;
                            if live(at, now) {
                                (parse_counter(value).ok_or(KvError::NotANumber)?, at)
                            } else {
                                (0, None)
                            }
                        }
                    };
                    let sum = current.checked_add(delta).ok_or(KvError::NotANumber)?;
                    put(data, expiry, &key, sum.to_string().as_bytes(), at)?;
                    Ok((sum, at))
                },
                |(sum, at)| committed(*sum, *at),
            )
        })
        .await
        .map(|(sum, _)| sum)
    }

    /// Live keys whose encoding starts with `prefix` (namespace header and
    /// key prefix), after `after` (an encoded cursor) if given. `header` is
    /// the namespace header's length, stripped from the keys returned.
    pub(crate) async fn list(
        &self,
        prefix: Vec<u8>,
        header: usize,
        after: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<KeyPage, KvError> {
        let shared = Arc::clone(&self.shared);
        blocking(move || {
            let txn = shared.db.begin_read()?;
            let table = txn.open_table(DATA)?;
            let start = match &after {
                Some(cursor) => Bound::Excluded(cursor.as_slice()),
                None => Bound::Included(prefix.as_slice()),
            };
            let now = now_unix_ms();
            let mut keys = Vec::new();
            let mut more = false;
            for entry in table.range::<&[u8]>((start, Bound::Unbounded))? {
                let (key, record) = entry?;
                let key = key.value();
                if !key.starts_with(&prefix) {
                    break;
                }
                if !live(split(record.value())?.0, now) {
                    continue;
                }
                // One live key past a full page says whether another page exists.
                if keys.len() == limit {
                    more = true;
                    break;
                }
                let key = std::str::from_utf8(&key[header..])
                    .map_err(|_| KvError::Internal("a stored key is not UTF-8".into()))?;
                keys.push(key.to_owned());
            }
            let next = if more {
                keys.last().map(|key| key.as_bytes().to_vec())
            } else {
                None
            };
            Ok(KeyPage { keys, next })
        })
        .await
    }

    /// Runs one sweep now (the tests' way to not wait for the task).
    #[cfg(test)]
    fn sweep_now(&self) -> Result<usize, KvError> {
        self.shared.sweep(now_unix_ms()).map_err(KvError::from)
    }
}

impl Shared {
    /// Runs `body` in a write transaction and commits it; then `committed`
    /// sees the result, still under the write lock. An error from `body`
    /// drops (aborts) the transaction.
    fn write<T>(
        &self,
        body: impl FnOnce(&mut DataTable<'_>, &mut ExpiryTable<'_>, u64) -> Result<T, Failure>,
        committed: impl FnOnce(&T),
    ) -> Result<T, Failure> {
        let _order = self
            .write_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let txn = self.db.begin_write()?;
        let result = {
            let mut data = txn.open_table(DATA)?;
            let mut expiry = txn.open_table(EXPIRY)?;
            body(&mut data, &mut expiry, now_unix_ms())?
        };
        txn.commit()?;
        committed(&result);
        Ok(result)
    }

    /// Deletes keys expired at `now`, a batch per transaction; returns how
    /// many. Expired keys read as absent already, so the cache needs no
    /// update.
    fn sweep(&self, now: u64) -> Result<usize, Failure> {
        let mut total = 0;
        loop {
            let txn = self.db.begin_write()?;
            let swept = {
                let mut data = txn.open_table(DATA)?;
                let mut expiry = txn.open_table(EXPIRY)?;
                let due_before = expiry_key(now.saturating_add(1), &[]);
                let due = expiry
                    .range::<&[u8]>(..due_before.as_slice())?
                    .take(SWEEP_BATCH)
                    .map(|entry| entry.map(|(key, _)| key.value().to_vec()))
                    .collect::<Result<Vec<_>, _>>()?;
                for entry in &due {
                    expiry.remove(entry.as_slice())?;
                    let key = &entry[8..];
                    // The index is kept in step with the records, but check
                    // the record itself before deleting what might be live.
                    let expired = match data.get(key)? {
                        Some(record) => !live(split(record.value())?.0, now),
                        None => false,
                    };
                    if expired {
                        data.remove(key)?;
                    }
                }
                due.len()
            };
            txn.commit()?;
            total += swept;
            if swept < SWEEP_BATCH {
                return Ok(total);
            }
        }
    }
}

/// Writes a record and keeps the expiry index in step with it.
fn put(
    data: &mut DataTable<'_>,
    expiry: &mut ExpiryTable<'_>,
    key: &[u8],
    value: &[u8],
    at: Option<u64>,
) -> Result<(), Failure> {
    let mut record = Vec::with_capacity(8 + value.len());
    record.extend_from_slice(&at.unwrap_or(0).to_be_bytes());
    record.extend_from_slice(value);
    let old = match data.insert(key, record.as_slice())? {
        Some(old) => split(old.value())?.0,
        None => None,
    };
    if let Some(old) = old {
        expiry.remove(expiry_key(old, key).as_slice())?;
    }
    if let Some(at) = at {
        expiry.insert(expiry_key(at, key).as_slice(), ())?;
    }
    Ok(())
}

/// A record's expiry (`None`: never) and value.
fn split(record: &[u8]) -> Result<(Option<u64>, &[u8]), Failure> {
    let Some((expiry, value)) = record.split_first_chunk::<8>() else {
        return Err(KvError::Internal("a stored record is truncated".into()).into());
    };
    let expiry = u64::from_be_bytes(*expiry);
    Ok(((expiry != 0).then_some(expiry), value))
}

fn live(expiry: Option<u64>, now: u64) -> bool {
    expiry.is_none_or(|at| at > now)
}

fn expiry_key(at: u64, key: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(8 + key.len());
    entry.extend_from_slice(&at.to_be_bytes());
    entry.extend_from_slice(key);
    entry
}

#[cfg(test)]
mod tests {
    use super::super::encode_key;
    use super::*;

    fn count(shared: &Shared, table: TableDefinition<&[u8], impl redb::Value + 'static>) -> u64 {
        use redb::ReadableTableMetadata;
        let txn = shared.db.begin_read().unwrap();
        txn.open_table(table).unwrap().len().unwrap()
    }

    #[tokio::test]
    async fn the_sweeper_deletes_expired_records_and_their_index_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Embedded::open(&dir.path().join("kv.redb")).unwrap();
        for i in 0..10 {
            let ttl = (i % 2 == 0).then_some(Duration::from_millis(50));
            let key = encode_key("ns", &format!("k{i}"));
            store
                .set(key, Bytes::from_static(b"v"), ttl, |_| {})
                .await
                .unwrap();
        }
        // Re-setting a key without a TTL must drop its index entry.
        store
            .set(
                encode_key("ns", "k0"),
                Bytes::from_static(b"v"),
                None,
                |_| {},
            )
            .await
            .unwrap();
        assert_eq!(count(&store.shared, DATA), 10);
        assert_eq!(count(&store.shared, EXPIRY), 4);

        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(store.sweep_now().unwrap(), 4);
        assert_eq!(count(&store.shared, DATA), 6);
        assert_eq!(count(&store.shared, EXPIRY), 0);
        assert!(store.get(encode_key("ns", "k0")).await.unwrap().is_some());
        assert!(store.get(encode_key("ns", "k2")).await.unwrap().is_none());
        assert_eq!(store.sweep_now().unwrap(), 0);
    }
}
