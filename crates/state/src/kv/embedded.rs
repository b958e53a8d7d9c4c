//! The embedded backend: one redb file.
//!
//! Table `kv` maps an encoded key (see `encode_key`) to a record: the expiry
//! as unix milliseconds (u64, big-endian, 0 for none) followed by the value.
//! Table `kv_expiry` indexes keys by expiry (`expiry ‖ encoded key`), so the
//! sweeper finds what is due without reading every record.
//!
//! redb runs one write transaction at a time and commits durably (fsync)
//! before `commit` returns. Concurrent writes share transactions (group
//! commit, `Shared::write`); each returns only after its transaction is
//! committed, so a write that returned `Ok` survives a crash.

use std::fs;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use redb::{Builder, Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{Notify, oneshot};

use super::{KeyPage, KvError, now_unix_ms, parse_counter, ttl_ms};

const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("kv_expiry");

/// The least time between two sweeps of expired keys. Reclaiming their
/// space is never urgent (they read as absent at once), so expiries close
/// together share a sweep.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// The longest the sweeper sleeps towards a far expiry before it looks
/// again: a wall clock set forward while it sleeps (a box without a
/// battery-backed clock, after NTP) delays a sweep by at most this.
const SWEEP_RECHECK: Duration = Duration::from_secs(600);
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
    /// When the sweeper runs next; a write that stores an earlier expiry
    /// wakes it.
    sweeps: Arc<SweepSchedule>,
    /// The writes waiting for the next group commit, and whether a
    /// committer is running. One at a time, so that the cache learns of
    /// writes in the order they were committed.
    group: Mutex<GroupCommit>,
    /// Group commits so far, for the tests to compare with the writes.
    #[cfg(test)]
    group_commits: AtomicU64,
    /// Sweeps so far, for the tests.
    #[cfg(test)]
    sweep_runs: AtomicU64,
}

impl Drop for Shared {
    /// Wakes the sweeper, which finds the store gone and ends.
    fn drop(&mut self) {
        self.sweeps.wake.notify_one();
    }
}

/// The sweeper's plan, shared with the writers so that it sleeps until the
/// earliest expiry instead of waking on a period: a store without expiring
/// keys wakes nobody.
#[derive(Default)]
struct SweepSchedule {
    /// A stored expiry (unix ms) earlier than this moves the next sweep
    /// sooner, and its writer wakes the sweeper. `u64::MAX` while the
    /// sweeper waits for the first expiring key or looks for the earliest;
    /// 0 while its next sweep waits for [`SWEEP_INTERVAL`] to pass.
    sooner_below: AtomicU64,
    wake: Notify,
}

impl SweepSchedule {
    /// Called once a write that expires at `at` has committed.
    fn stored_expiry(&self, at: Option<u64>) {
        if at.is_some_and(|at| at < self.sooner_below.load(Ordering::SeqCst)) {
            self.wake.notify_one();
        }
    }
}

#[derive(Default)]
struct GroupCommit {
    pending: Vec<PendingWrite>,
    committing: bool,
}

/// A write queued for a group commit: runs its body in the shared
/// transaction and returns how to settle it once the commit's outcome is
/// known. An `Err` aborts the whole transaction.
type PendingWrite = Box<
    dyn FnOnce(&mut DataTable<'_>, &mut ExpiryTable<'_>, u64) -> Result<Settle, KvError> + Send,
>;

/// Settles one write once the commit's outcome is known (`None`: on disk;
/// or the error that aborted the transaction): updates what must follow
/// commit order, and returns how to tell the writer.
type Settle = Box<dyn FnOnce(Option<&KvError>) -> Reply + Send>;

/// Tells one writer its result.
type Reply = Box<dyn FnOnce() + Send>;

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
    /// missing table. redb keeps at most `cache_bytes` of the file's pages
    /// in memory.
    pub(crate) fn open(path: &Path, cache_bytes: usize) -> Result<Self, KvError> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            fs::create_dir_all(parent).map_err(|error| {
                KvError::Internal(format!("cannot create {}: {error}", parent.display()))
            })?;
        }
        let db = Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|error| {
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
                sweeps: Arc::default(),
                group: Mutex::default(),
                #[cfg(test)]
                group_commits: AtomicU64::new(0),
                #[cfg(test)]
                sweep_runs: AtomicU64::new(0),
            }),
        })
    }

    /// Spawns the task that deletes expired keys: it sleeps until the
    /// earliest expiry (at least [`SWEEP_INTERVAL`] after its last sweep),
    /// and while no key expires, until a write stores one. It holds the
    /// file only weakly, and ends once the store is dropped.
    pub(crate) fn start_sweeper(&self) {
        self.start_sweeper_every(SWEEP_INTERVAL);
    }

    fn start_sweeper_every(&self, interval: Duration) {
        let shared = Arc::downgrade(&self.shared);
        let schedule = Arc::clone(&self.shared.sweeps);
        let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        tokio::spawn(async move {
            let mut last_sweep = now_unix_ms();
            loop {
                // While it looks, every expiring write wakes it again, so
                // none stored after the look is missed.
                schedule.sooner_below.store(u64::MAX, Ordering::SeqCst);
                let Some(store) = shared.upgrade() else {
                    return;
                };
                // A failed look is retried at the interval.
                let earliest = tokio::task::spawn_blocking(move || store.earliest_expiry())
                    .await
                    .map_or(Some(0), |found| found.unwrap_or(Some(0)));
                let floor = last_sweep.saturating_add(interval_ms);
                let (sweep_at, sooner_below) = match earliest {
                    None => (None, u64::MAX),
                    Some(at) if at > floor => (Some(at), at),
                    Some(_) => (Some(floor), 0),
                };
                schedule.sooner_below.store(sooner_below, Ordering::SeqCst);
                let due = match sweep_at {
                    None => {
                        schedule.wake.notified().await;
                        false
                    }
                    Some(at) => {
                        // Keys expire after their millisecond, not in it.
                        let sleep = Duration::from_millis(
                            at.saturating_add(1).saturating_sub(now_unix_ms()),
                        );
                        tokio::select! {
                            () = tokio::time::sleep(sleep.min(SWEEP_RECHECK)) => true,
                            () = schedule.wake.notified() => false,
                        }
                    }
                };
                if !due {
                    continue;
                }
                let Some(store) = shared.upgrade() else {
                    return;
                };
                last_sweep = now_unix_ms();
                // A failed sweep only delays reclaiming space: reads already
                // treat the keys as absent, and the next sweep tries again.
                let _ = tokio::task::spawn_blocking(move || store.sweep(last_sweep)).await;
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
        Shared::write(
            &self.shared,
            move |data, expiry, now| {
                let at = ttl.map(|ttl| now.saturating_add(ttl_ms(ttl)));
                put(data, expiry, &key, &value, at)?;
                Ok(at)
            },
            |at| committed(*at),
        )
        .await
        .map(|at| self.shared.sweeps.stored_expiry(at))
    }

    /// Deletes `key`; returns whether it was live.
    pub(crate) async fn delete(
        &self,
        key: Vec<u8>,
        committed: impl FnOnce() + Send + 'static,
    ) -> Result<bool, KvError> {
        Shared::write(
            &self.shared,
            move |data, expiry, now| {
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
        Shared::write(
            &self.shared,
            move |data, expiry, now| {
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
        .await
        .map(|swapped| {
            self.shared.sweeps.stored_expiry(swapped.flatten());
            swapped.is_some()
        })
    }

    /// Adds `delta` in one write transaction, keeping the key's expiry;
    /// `committed` gets the sum and the expiry.
    pub(crate) async fn increment(
        &self,
        key: Vec<u8>,
        delta: i64,
        committed: impl FnOnce(i64, Option<u64>) + Send + 'static,
    ) -> Result<i64, KvError> {
        Shared::write(
            &self.shared,
            move |data, expiry, now| {
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
    /// sees the result, in commit order (one commit runs at a time).
    ///
    /// Writes that arrive while another commit is in progress share the
    /// next transaction (group commit): a committer on a blocking thread
    /// runs every queued body in one transaction and commits once, one
    /// fsync for all, then tells each writer its result; it goes on while
    /// writes queue. No thread waits per write. A write
    /// still returns only after its transaction is on disk, so a write that
    /// returned `Ok` survives a crash. A body that refuses (`increment` on a
    /// non-number) has written nothing and fails alone; a storage error
    /// aborts the transaction and fails every write in it.
    async fn write<T: Send + 'static>(
        shared: &Arc<Self>,
        body: impl FnOnce(&mut DataTable<'_>, &mut ExpiryTable<'_>, u64) -> Result<T, Failure>
        + Send
        + 'static,
        committed: impl FnOnce(&T) + Send + 'static,
    ) -> Result<T, KvError> {
        let (reply, outcome) = oneshot::channel::<Result<T, KvError>>();
        let staged: PendingWrite =
            Box::new(move |data, expiry, now| match body(data, expiry, now) {
                Ok(value) => Ok(Box::new(move |failed: Option<&KvError>| {
                    let result = match failed {
                        None => {
                            committed(&value);
                            Ok(value)
                        }
                        Some(error) => Err(error.clone()),
                    };
                    Box::new(move || {
                        let _ = reply.send(result);
                    }) as Reply
                }) as Settle),
                Err(Failure::Kv(refusal)) if wrote_nothing(&refusal) => {
                    Ok(Box::new(move |_: Option<&KvError>| {
                        Box::new(move || {
                            let _ = reply.send(Err(refusal));
                        }) as Reply
                    }) as Settle)
                }
                Err(failure) => {
                    let error = KvError::from(failure);
                    let _ = reply.send(Err(error.clone()));
                    Err(error)
                }
            });
        let start = {
            let mut group = shared.group();
            group.pending.push(staged);
            !std::mem::replace(&mut group.committing, true)
        };
        if start {
            Self::start_committer(shared);
        }
        // A write whose body never ran lost its sender: an earlier write of
        // its commit failed the whole transaction.
        outcome.await.unwrap_or_else(|_| {
            Err(KvError::Internal(
                "aborted with the other writes of its group commit".into(),
            ))
        })
    }

    fn group(&self) -> std::sync::MutexGuard<'_, GroupCommit> {
        self.group
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Commits what is pending, batch after batch, on a blocking thread
    /// until nothing is; the caller has set `committing`.
    fn start_committer(shared: &Arc<Self>) {
        let shared = Arc::clone(shared);
        tokio::task::spawn_blocking(move || Self::commit_until_idle(shared));
    }

    /// The committer's loop. The writers of the last batch hear back only
    /// once it has let go of the store, so a store dropped after its last
    /// write has closed the file and can be opened again at once.
    fn commit_until_idle(shared: Arc<Self>) {
        let mut turn = CommitTurn(Some(shared));
        loop {
            let shared = turn.0.as_ref().expect("held until the turn ends");
            let batch = std::mem::take(&mut shared.group().pending);
            let replies = shared.commit_batch(batch);
            let idle = {
                // Under the lock that writers push under: a write pushed
                // after this finds `committing` false and starts the next
                // committer.
                let mut group = shared.group();
                group.committing = !group.pending.is_empty();
                !group.committing
            };
            if idle {
                turn.0 = None;
            }
            for reply in replies {
                reply();
            }
            if idle {
                return;
            }
        }
    }

    /// Runs `batch` in one write transaction, commits it and settles every
    /// write in it. One at a time (`GroupCommit::committing`).
    fn commit_batch(&self, batch: Vec<PendingWrite>) -> Vec<Reply> {
        #[cfg(test)]
        self.group_commits.fetch_add(1, Ordering::Relaxed);
        // Writes per commit, and how long the commit took (its fsync
        // included): what a durable write's latency is made of. Looked up
        // per commit, not kept: the store may open before the recorder is
        // installed.
        let started = std::time::Instant::now();
        metrics::histogram!("shanhai_kv_commit_writes").record(batch.len() as f64);
        let mut settles = Vec::with_capacity(batch.len());
        let result = (|| -> Result<(), KvError> {
            let txn = self.db.begin_write().map_err(Failure::from)?;
            {
                let mut data = txn.open_table(DATA).map_err(Failure::from)?;
                let mut expiry = txn.open_table(EXPIRY).map_err(Failure::from)?;
                let now = now_unix_ms();
                for write in batch {
                    settles.push(write(&mut data, &mut expiry, now)?);
                }
            }
            txn.commit().map_err(Failure::from)?;
            Ok(())
        })();
        metrics::histogram!("shanhai_kv_commit_seconds").record(started.elapsed().as_secs_f64());
        let failed = result.err();
        // Writes after the one that failed never ran: their senders are
        // dropped, and `write` reports that.
        settles
            .into_iter()
            .map(|settle| settle(failed.as_ref()))
            .collect()
    }

    /// The earliest expiry in the index (unix ms), if any key expires.
    fn earliest_expiry(&self) -> Result<Option<u64>, Failure> {
        let txn = self.db.begin_read()?;
        let expiry = txn.open_table(EXPIRY)?;
        let Some((entry, _)) = expiry.first()? else {
            return Ok(None);
        };
        let at =
            entry.value().first_chunk::<8>().copied().ok_or_else(|| {
                Failure::Kv(KvError::Internal("an expiry entry is truncated".into()))
            })?;
        Ok(Some(u64::from_be_bytes(at)))
    }

    /// Deletes keys expired at `now`, a batch per transaction; returns how
    /// many. Expired keys read as absent already, so the cache needs no
    /// update. Nothing due, nothing is written.
    fn sweep(&self, now: u64) -> Result<usize, Failure> {
        #[cfg(test)]
        self.sweep_runs.fetch_add(1, Ordering::Relaxed);
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
            if swept == 0 {
                // A commit would write and sync the file's header for nothing.
                txn.abort()?;
                return Ok(total);
            }
            txn.commit()?;
            total += swept;
            if swept < SWEEP_BATCH {
                return Ok(total);
            }
        }
    }
}

/// Ends a committer's turn if a body panics, so that the next write starts
/// a committer again instead of waiting for one that is gone. (The writes
/// of the batch that panicked lose their senders: aborted.)
struct CommitTurn(Option<Arc<Shared>>);

impl Drop for CommitTurn {
    fn drop(&mut self) {
        if let Some(shared) = &self.0 {
            shared.group().committing = false;
        }
    }
}

/// Whether a body that failed with `error` left the transaction untouched:
/// `increment` refuses a non-number before it writes. A corrupt record
/// (`Internal`) may be found after a write has begun.
fn wrote_nothing(error: &KvError) -> bool {
    !matches!(error, KvError::Internal(_))
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
        let store = Embedded::open(&dir.path().join("kv.redb"), 1 << 20).unwrap();
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sweeper_sleeps_until_a_key_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store = Embedded::open(&dir.path().join("kv.redb"), 1 << 20).unwrap();
        let interval = Duration::from_millis(100);
        store.start_sweeper_every(interval);
        let runs = || store.shared.sweep_runs.load(Ordering::Relaxed);
        // Keys without a TTL: no sweep, for eight intervals and more.
        for i in 0..5 {
            let key = encode_key("ns", &format!("k{i}"));
            store
                .set(key, Bytes::from_static(b"v"), None, |_| {})
                .await
                .unwrap();
        }
        tokio::time::sleep(interval * 8).await;
        assert_eq!(runs(), 0, "swept a store where nothing expires");

        // A key stored with a TTL wakes it; one sweep, once the key has
        // expired, deletes it.
        let stored = std::time::Instant::now();
        let ttl = Duration::from_millis(300);
        store
            .set(
                encode_key("ns", "brief"),
                Bytes::from_static(b"v"),
                Some(ttl),
                |_| {},
            )
            .await
            .unwrap();
        let deadline = stored + Duration::from_secs(10);
        while count(&store.shared, EXPIRY) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the expired key was not swept within 10 s ({} sweeps)",
                runs()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(stored.elapsed() >= ttl, "swept before the key expired");
        assert_eq!(count(&store.shared, DATA), 5);
        assert_eq!(runs(), 1);
        // Nothing expires any more: no sweep after it.
        tokio::time::sleep(interval * 8).await;
        assert_eq!(runs(), 1, "swept again with nothing left to expire");
    }

    type TestBody = Box<
        dyn FnOnce(&mut DataTable<'_>, &mut ExpiryTable<'_>, u64) -> Result<(), Failure> + Send,
    >;

    fn commits(store: &Embedded) -> u64 {
        store.shared.group_commits.load(Ordering::Relaxed)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_share_commits_and_every_one_lands() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Embedded::open(&dir.path().join("kv.redb"), 1 << 20).unwrap());
        let writes = 200;
        let before = commits(&store);
        let tasks: Vec<_> = (0..writes)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let value = Bytes::from(format!("v{i}"));
                    store
                        .set(encode_key("ns", &format!("k{i}")), value, None, |_| {})
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let used = commits(&store) - before;
        assert!(
            used < writes / 4,
            "{writes} concurrent writes took {used} commits"
        );
        for i in 0..writes {
            let (value, _) = store
                .get(encode_key("ns", &format!("k{i}")))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(value, format!("v{i}").as_bytes());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_write_fails_alone_in_its_group_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Embedded::open(&dir.path().join("kv.redb"), 1 << 20).unwrap();
        let shared = &store.shared;
        fn set(
            key: &str,
            value: &'static [u8],
        ) -> impl FnOnce(&mut DataTable<'_>, &mut ExpiryTable<'_>, u64) -> Result<(), Failure>
        + Send
        + 'static {
            let key = encode_key("ns", key);
            move |data, expiry, _now| put(data, expiry, &key, value, None)
        }
        Shared::write(shared, set("text", b"abc"), |_| {})
            .await
            .unwrap();
        let before = commits(&store);
        // As if a committer were running: the three writes queue for the
        // next one, which then takes all three.
        // (Once the committer of the write above has finished its turn.)
        loop {
            let claimed = {
                let mut group = shared.group();
                !std::mem::replace(&mut group.committing, true)
            };
            if claimed {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let spawn_write = |body: TestBody| {
            let shared = Arc::clone(shared);
            tokio::spawn(async move { Shared::write(&shared, body, |_| {}).await })
        };
        let first = spawn_write(Box::new(set("a", b"1")));
        while shared.group().pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let key = encode_key("ns", "text");
        let refused = spawn_write(Box::new(move |data, _, _| {
            let record = data.get(key.as_slice())?.unwrap();
            let (_, value) = split(record.value())?;
            parse_counter(value).ok_or(KvError::NotANumber)?;
            unreachable!("abc parsed as a number")
        }));
        while shared.group().pending.len() < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let last = spawn_write(Box::new(set("b", b"2")));
        while shared.group().pending.len() < 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Shared::start_committer(shared);
        assert!(first.await.unwrap().is_ok());
        assert_eq!(refused.await.unwrap(), Err(KvError::NotANumber));
        assert!(last.await.unwrap().is_ok());
        assert_eq!(commits(&store) - before, 1);
        assert_eq!(count(shared, DATA), 3);
    }
}
