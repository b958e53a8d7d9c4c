//! In-process costs of the state crate: embedded KV reads with and without
//! the cache, durable KV writes, and SQLite through `SqlDatabases` against
//! the same statements on a bare rusqlite connection (the difference is the
//! blocking-task hop, the mutex and the result conversion).
//!
//! Run: `cargo bench -p shanhai-state --bench state`.

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use shanhai_state::{KvSettings, KvStore, SqlDatabases, SqlLimits, SqlValue};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn kv(c: &mut Criterion) {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let cached = {
        let _guard = runtime.enter();
        std::sync::Arc::new(
            KvStore::embedded(&dir.path().join("cached.redb"), KvSettings::default()).unwrap(),
        )
    };
    let uncached = {
        let _guard = runtime.enter();
        let settings = KvSettings {
            cache_bytes: 0,
            ..KvSettings::default()
        };
        KvStore::embedded(&dir.path().join("uncached.redb"), settings).unwrap()
    };
    runtime.block_on(async {
        for store in [&cached, &uncached] {
            for i in 0..1000 {
                let key = format!("key{i}");
                store.set("bench", &key, &[7u8; 100], None).await.unwrap();
            }
        }
    });

    let mut group = c.benchmark_group("kv");
    group.bench_function("embedded_get_cache_hit", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(cached.get("bench", "key500").await.unwrap()) });
    });
    group.bench_function("embedded_get_cache_disabled", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(uncached.get("bench", "key500").await.unwrap()) });
    });
    group.bench_function("embedded_set_durable", |b| {
        b.to_async(&runtime).iter(|| async {
            cached
                .set("bench", "written", &[7u8; 100], None)
                .await
                .unwrap();
        });
    });
    // What bench-state.sh's sets exercise: many writers at once, each a
    // fresh key, so that writes share group commits. One iteration is one
    // set; the writers split the iterations between them.
    group.bench_function("embedded_set_durable_32_writers", |b| {
        let fresh = std::sync::atomic::AtomicU64::new(0);
        b.to_async(&runtime).iter_custom(|iters| {
            let store = std::sync::Arc::clone(&cached);
            let first = fresh.fetch_add(iters, std::sync::atomic::Ordering::Relaxed);
            async move {
                let started = std::time::Instant::now();
                let writers: Vec<_> = (0..WRITERS)
                    .map(|writer| {
                        let store = std::sync::Arc::clone(&store);
                        tokio::spawn(async move {
                            let mut n = first + writer;
                            while n < first + iters {
                                let key = format!("fresh{n}");
                                store.set("bench", &key, &[7u8; 64], None).await.unwrap();
                                n += WRITERS;
                            }
                        })
                    })
                    .collect();
                for writer in writers {
                    writer.await.unwrap();
                }
                started.elapsed()
            }
        });
    });
    group.finish();
}

/// Concurrent writers in `embedded_set_durable_32_writers`: the HTTP
/// benchmark's connections, each holding a probe instance.
const WRITERS: u64 = 32;

const CREATE: &str = "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT)";
const INSERT: &str = "INSERT INTO t (body) VALUES (?)";
const SELECT: &str = "SELECT id, body FROM t WHERE id = ?";

fn sql(c: &mut Criterion) {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let databases = SqlDatabases::new(dir.path(), SqlLimits::default());
    runtime.block_on(async {
        databases.execute("bench", CREATE, vec![]).await.unwrap();
        databases
            .execute("bench", INSERT, vec![SqlValue::Text("hello".into())])
            .await
            .unwrap();
    });
    // The same settings SqlDatabases opens a database with.
    let raw = rusqlite::Connection::open(dir.path().join("raw.sqlite3")).unwrap();
    raw.query_row("PRAGMA journal_mode = WAL", [], |row| {
        row.get::<_, String>(0)
    })
    .unwrap();
    raw.execute(CREATE, []).unwrap();
    raw.execute(INSERT, ["hello"]).unwrap();

    let mut group = c.benchmark_group("sql");
    group.bench_function("insert_sql_databases", |b| {
        b.to_async(&runtime).iter(|| async {
            let params = vec![SqlValue::Text("hello".into())];
            black_box(databases.execute("bench", INSERT, params).await.unwrap())
        });
    });
    group.bench_function("insert_raw_rusqlite", |b| {
        b.iter(|| {
            black_box(
                raw.prepare_cached(INSERT)
                    .unwrap()
                    .execute(["hello"])
                    .unwrap(),
            )
        });
    });
    group.bench_function("select_sql_databases", |b| {
        b.to_async(&runtime).iter(|| async {
            let params = vec![SqlValue::Integer(1)];
            black_box(databases.execute("bench", SELECT, params).await.unwrap())
        });
    });
    group.bench_function("select_raw_rusqlite", |b| {
        b.iter(|| {
            let mut statement = raw.prepare_cached(SELECT).unwrap();
            let row = statement
                .query_row([1], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                })
                .unwrap();
            black_box(row)
        });
    });
    group.finish();
}

fn quick() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

// A plain main rather than criterion_group!, whose generated function has
// no doc comment for the workspace's missing_docs lint.
fn main() {
    let mut criterion = quick().configure_from_args();
    kv(&mut criterion);
    sql(&mut criterion);
    criterion.final_summary();
}
