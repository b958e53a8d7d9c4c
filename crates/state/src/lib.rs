//! State for guest modules' host functions: a namespaced key-value store and
//! SQLite databases. No wasmtime here; the runtime's host functions call in.
//!
//! ```
//! use std::time::Duration;
//!
//! use shanhai_state::{KvSettings, KvStore, SqlDatabases, SqlLimits, SqlValue};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let kv = KvStore::embedded(&dir.path().join("kv.redb"), KvSettings::default())?;
//! kv.set("m:hello", "greeting", b"hi", Some(Duration::from_secs(60))).await?;
//! assert_eq!(kv.get("m:hello", "greeting").await?.as_deref(), Some(&b"hi"[..]));
//! // Namespaces never see each other's keys.
//! assert_eq!(kv.get("m:other", "greeting").await?, None);
//! assert_eq!(kv.increment("m:hello", "visits", 1).await?, 1);
//!
//! let sql = SqlDatabases::new(&dir.path().join("sql"), SqlLimits::default());
//! sql.execute("notes", "CREATE TABLE note (body TEXT)", vec![]).await?;
//! sql.execute("notes", "INSERT INTO note VALUES (?)", vec![SqlValue::Text("x".into())])
//!     .await?;
//! let result = sql.execute("notes", "SELECT body FROM note", vec![]).await?;
//! assert_eq!(result.rows, vec![vec![SqlValue::Text("x".into())]]);
//! # Ok(())
//! # }
//! ```
//!
//! # Key-value store
//!
//! [`KvStore`] keeps keys in caller-chosen namespaces (the runtime uses
//! `m:MODULE` for a module's own keys, `s:NAME` for shared stores). A
//! namespace and a key are encoded together so that no two pairs collide,
//! whatever separators they contain, and listing stays inside the
//! namespace. Two backends:
//!
//! - **embedded**: a redb file, durable on every write (a write that
//!   returned `Ok` survives `kill -9`). Writes are one transaction each, so
//!   `compare_and_swap` and `increment` are atomic within the process that
//!   holds the file (redb locks it against other processes).
//! - **redis**: a Redis server that several gateways may share. Every write
//!   is one Lua script, so `compare_and_swap` and `increment` are atomic
//!   across gateways too.
//!
//! TTLs: a key past its TTL reads as absent at once and is never listed.
//!
//! ## Cache and its staleness bound
//!
//! An LRU cache of [`KvSettings::cache_bytes`] sits in front of either
//! backend and also remembers absent keys. Writes through a store update it
//! (embedded: in commit order) or invalidate it (Redis), so a store always
//! reads its own writes. A cached entry never outlives the key's TTL.
//!
//! **With Redis, another gateway's write may be missed for up to
//! [`KvSettings::redis_cache_ttl`]** (default 1 s): an entry is served for at
//! most that long after it was fetched, then fetched again. Atomic
//! operations never read the cache. With the embedded backend only this
//! process writes, so the cache is never stale.
//!
//! Hits and misses are counted in `shanhai_kv_cache_hits_total` and
//! `shanhai_kv_cache_misses_total`, labelled `backend`.
//!
//! # SQLite
//!
//! [`SqlDatabases`] opens `root/NAME.sqlite3` on first use and runs one
//! statement per call under [`SqlLimits`]: a deadline enforced by
//! interrupting the statement, and caps on rows and bytes returned.

mod kv;
mod sql;

pub use kv::{CacheStats, KeyPage, KvError, KvSettings, KvStore, MAX_LIST_LIMIT};
pub use sql::{SqlDatabases, SqlError, SqlLimits, SqlResult, SqlValue};
