//! SqlDatabases against real SQLite files in a temporary folder.

use std::time::{Duration, Instant};

use shanhai_state::{SqlDatabases, SqlError, SqlLimits, SqlResult, SqlValue};

fn databases(limits: SqlLimits) -> (tempfile::TempDir, SqlDatabases) {
    let dir = tempfile::tempdir().unwrap();
    let databases = SqlDatabases::new(&dir.path().join("sql"), limits);
    (dir, databases)
}

#[tokio::test]
async fn creates_inserts_and_selects_every_type() {
    let (dir, db) = databases(SqlLimits::default());
    let created = db
        .execute(
            "app",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, i INTEGER, r REAL, s TEXT, b BLOB, n)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(created.rows_affected, 0);
    assert!(dir.path().join("sql/app.sqlite3").is_file());

    let row = vec![
        SqlValue::Integer(-42),
        SqlValue::Real(2.5),
        SqlValue::Text("héllo 🌊".into()),
        SqlValue::Blob(vec![0, 255, 1]),
        SqlValue::Null,
    ];
    let inserted = db
        .execute(
            "app",
            "INSERT INTO t (i, r, s, b, n) VALUES (?, ?, ?, ?, ?)",
            row.clone(),
        )
        .await
        .unwrap();
    assert_eq!((inserted.rows_affected, inserted.last_insert_rowid), (1, 1));
    assert!(inserted.columns.is_empty() && inserted.rows.is_empty());
    let second = db
        .execute(
            "app",
            "INSERT INTO t (i, s) VALUES (?1, ?2), (?1 + 1, ?2)",
            vec![SqlValue::Integer(i64::MAX - 1), SqlValue::Text("x".into())],
        )
        .await
        .unwrap();
    assert_eq!((second.rows_affected, second.last_insert_rowid), (2, 3));

    let selected = db
        .execute(
            "app",
            "SELECT i, r, s, b, n FROM t WHERE id = :id",
            vec![SqlValue::Integer(1)],
        )
        .await
        .unwrap();
    assert_eq!(
        selected,
        SqlResult {
            columns: ["i", "r", "s", "b", "n"].map(String::from).to_vec(),
            rows: vec![row],
            rows_affected: 0,
            last_insert_rowid: 3,
        }
    );
    let empty = db
        .execute("app", "SELECT id AS key FROM t WHERE id > 99", vec![])
        .await
        .unwrap();
    assert_eq!(
        (empty.columns, empty.rows.len()),
        (vec!["key".to_owned()], 0)
    );
    let max = db
        .execute("app", "SELECT max(i) FROM t", vec![])
        .await
        .unwrap();
    assert_eq!(max.rows, vec![vec![SqlValue::Integer(i64::MAX)]]);

    let updated = db
        .execute(
            "app",
            "UPDATE t SET n = 1 WHERE s = 'x' RETURNING id",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(updated.rows_affected, 2);
    assert_eq!(
        updated.rows,
        vec![vec![SqlValue::Integer(2)], vec![SqlValue::Integer(3)]]
    );

    // Reopened by a fresh SqlDatabases, the rows are on disk.
    drop(db);
    let db = SqlDatabases::new(&dir.path().join("sql"), SqlLimits::default());
    let count = db
        .execute("app", "SELECT count(*) FROM t", vec![])
        .await
        .unwrap();
    assert_eq!(count.rows, vec![vec![SqlValue::Integer(3)]]);
    let mode = db
        .execute("app", "PRAGMA journal_mode", vec![])
        .await
        .unwrap();
    assert_eq!(mode.rows, vec![vec![SqlValue::Text("wal".into())]]);
}

#[tokio::test]
async fn sqlite_errors_carry_sqlites_message() {
    let (_dir, db) = databases(SqlLimits::default());
    let error = db.execute("app", "SELEC 1", vec![]).await.unwrap_err();
    let SqlError::Sql(message) = &error else {
        panic!("{error:?}");
    };
    assert!(message.contains("syntax error"), "{message}");

    let error = db
        .execute("app", "SELECT * FROM missing", vec![])
        .await
        .unwrap_err();
    assert_eq!(error, SqlError::Sql("no such table: missing".into()));

    db.execute(
        "app",
        "CREATE TABLE u (k TEXT PRIMARY KEY NOT NULL)",
        vec![],
    )
    .await
    .unwrap();
    let insert = "INSERT INTO u VALUES (?)";
    db.execute("app", insert, vec![SqlValue::Text("a".into())])
        .await
        .unwrap();
    let error = db
        .execute("app", insert, vec![SqlValue::Text("a".into())])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SqlError::Sql(m) if m.contains("UNIQUE constraint failed")),
        "{error:?}"
    );
    let error = db
        .execute("app", insert, vec![SqlValue::Null])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SqlError::Sql(m) if m.contains("NOT NULL")),
        "{error:?}"
    );

    for params in [vec![], vec![SqlValue::Null, SqlValue::Null]] {
        let error = db.execute("app", insert, params).await.unwrap_err();
        assert!(
            matches!(&error, SqlError::Sql(m) if m.contains("wrong number of parameters")),
            "{error:?}"
        );
    }
    let error = db
        .execute("app", "  -- nothing\n", vec![])
        .await
        .unwrap_err();
    assert!(matches!(error, SqlError::Sql(_)), "{error:?}");
}

#[tokio::test]
async fn only_one_statement_per_call() {
    let (_dir, db) = databases(SqlLimits::default());
    db.execute("app", "CREATE TABLE t (x)", vec![])
        .await
        .unwrap();
    let error = db
        .execute("app", "INSERT INTO t VALUES (1); DROP TABLE t", vec![])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SqlError::Sql(m) if m.contains("more than one statement")),
        "{error:?}"
    );
    let count = db
        .execute("app", "SELECT count(*) FROM t", vec![])
        .await
        .unwrap();
    assert_eq!(
        count.rows,
        vec![vec![SqlValue::Integer(0)]],
        "part of it ran"
    );
    // A trailing semicolon, whitespace or comment is still one statement.
    db.execute("app", "INSERT INTO t VALUES (1);  \n -- done", vec![])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_runaway_query_times_out() {
    let limits = SqlLimits {
        timeout: Duration::from_millis(200),
        ..SqlLimits::default()
    };
    let (_dir, db) = databases(limits);
    let start = Instant::now();
    let error = db
        .execute(
            "app",
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
            vec![],
        )
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert_eq!(error, SqlError::Timeout);
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // The connection is usable again, with a fresh deadline.
    let one = db.execute("app", "SELECT 1", vec![]).await.unwrap();
    assert_eq!(one.rows, vec![vec![SqlValue::Integer(1)]]);
}

#[tokio::test]
async fn results_are_capped_in_rows_and_bytes() {
    let limits = SqlLimits {
        max_rows: 100,
        max_result_bytes: 10_000,
        ..SqlLimits::default()
    };
    let (_dir, db) = databases(limits);
    let series = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) \
                  SELECT x FROM c";
    let hundred = db
        .execute("app", series, vec![SqlValue::Integer(100)])
        .await
        .unwrap();
    assert_eq!(hundred.rows.len(), 100);
    let error = db
        .execute("app", series, vec![SqlValue::Integer(101)])
        .await
        .unwrap_err();
    assert!(matches!(error, SqlError::TooLarge(_)), "{error:?}");
    // Endless, but stopped by the row cap long before the default timeout.
    let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c";
    let error = db.execute("app", endless, vec![]).await.unwrap_err();
    assert!(matches!(error, SqlError::TooLarge(_)), "{error:?}");

    let error = db
        .execute(
            "app",
            "SELECT randomblob(6000) UNION ALL SELECT randomblob(6000)",
            vec![],
        )
        .await
        .unwrap_err();
    assert!(matches!(error, SqlError::TooLarge(_)), "{error:?}");
    let fits = db
        .execute("app", "SELECT randomblob(9000)", vec![])
        .await
        .unwrap();
    assert_eq!(fits.rows.len(), 1);
}

#[tokio::test]
async fn database_names_cannot_leave_the_root() {
    let (dir, db) = databases(SqlLimits::default());
    let long = "a".repeat(129);
    for name in [
        "",
        "../escape",
        "a/b",
        "a.b",
        "/etc/passwd",
        "a b",
        "ä",
        "x\0",
        long.as_str(),
    ] {
        let error = db.execute(name, "SELECT 1", vec![]).await.unwrap_err();
        assert!(
            matches!(error, SqlError::InvalidName(_)),
            "{name:?}: {error:?}"
        );
    }
    db.execute("Ok-name_9", "SELECT 1", vec![]).await.unwrap();
    assert!(!dir.path().join("escape.sqlite3").exists());

    // Nor can SQL reach other files.
    let outside = dir.path().join("outside.sqlite3");
    for sql in [
        format!("ATTACH DATABASE '{}' AS other", outside.display()),
        format!("VACUUM INTO '{}'", outside.display()),
    ] {
        let error = db.execute("app", &sql, vec![]).await.unwrap_err();
        assert!(matches!(error, SqlError::Sql(_)), "{sql}: {error:?}");
    }
    assert!(!outside.exists());
}

#[tokio::test]
async fn databases_are_separate() {
    let (_dir, db) = databases(SqlLimits::default());
    db.execute("one", "CREATE TABLE t (x)", vec![])
        .await
        .unwrap();
    let error = db
        .execute("two", "SELECT * FROM t", vec![])
        .await
        .unwrap_err();
    assert_eq!(error, SqlError::Sql("no such table: t".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_on_one_database_serialise() {
    let (_dir, db) = databases(SqlLimits::default());
    let db = std::sync::Arc::new(db);
    db.execute("app", "CREATE TABLE t (x INTEGER)", vec![])
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let db = std::sync::Arc::clone(&db);
            tokio::spawn(async move {
                for i in 0..20 {
                    let value = SqlValue::Integer(task * 100 + i);
                    db.execute("app", "INSERT INTO t VALUES (?)", vec![value])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let count = db
        .execute("app", "SELECT count(DISTINCT x) FROM t", vec![])
        .await
        .unwrap();
    assert_eq!(count.rows, vec![vec![SqlValue::Integer(160)]]);
}

/// Asserts that `error` is `TooLarge` and its message contains each of `parts`.
fn assert_too_large(error: &SqlError, parts: &[&str]) {
    let SqlError::TooLarge(message) = error else {
        panic!("not too large: {error:?}");
    };
    for part in parts {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }
}

#[tokio::test]
async fn values_past_the_length_limit_fail_before_they_are_built() {
    let (_dir, db) = databases(SqlLimits::default());
    // Each of these once made SQLite (and the copy out of it) allocate
    // 900 MB, whatever the module's memory cap.
    for sql in [
        "SELECT zeroblob(900000000)",
        "SELECT length(randomblob(900000000))",
        "SELECT length(printf('%.*c', 900000000, 'x'))",
        "SELECT length(replace(hex(zeroblob(3000000)), '0', '00'))",
    ] {
        let error = db.execute("app", sql, vec![]).await.unwrap_err();
        assert_too_large(&error, &["too big", "max_value_bytes"]);
    }
    // A bound parameter past the limit is refused too.
    let error = db
        .execute(
            "app",
            "SELECT length(?1)",
            vec![SqlValue::Blob(vec![0; 5 << 20])],
        )
        .await
        .unwrap_err();
    assert_too_large(&error, &["max_value_bytes"]);
    // Up to the limit is fine.
    let fits = db
        .execute("app", "SELECT length(zeroblob(4194304))", vec![])
        .await
        .unwrap();
    assert_eq!(fits.rows, vec![vec![SqlValue::Integer(4 << 20)]]);
}

#[tokio::test]
async fn statements_past_the_shape_limits_are_refused() {
    let (_dir, db) = databases(SqlLimits::default());
    let long = format!("SELECT 1 -- {}", "x".repeat(2 << 20));
    let error = db.execute("app", &long, vec![]).await.unwrap_err();
    assert_too_large(&error, &["statement too long", "max_sql_bytes"]);

    let deep = format!("SELECT {}1", "1 + ".repeat(300));
    let columns = format!(
        "SELECT {}",
        (0..501)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let compound = vec!["SELECT 1"; 101].join(" UNION ALL ");
    let like = format!("SELECT 'a' LIKE '{}'", "%a".repeat(600));
    for (sql, message) in [
        (deep.as_str(), "Expression tree is too large"),
        (columns.as_str(), "too many columns"),
        (compound.as_str(), "too many terms in compound SELECT"),
        ("SELECT ?2001", "variable number must be between"),
        (like.as_str(), "LIKE or GLOB pattern too complex"),
    ] {
        let error = db.execute("app", sql, vec![]).await.unwrap_err();
        assert!(
            matches!(&error, SqlError::Sql(m) if m.contains(message)),
            "{message}: {error:?}"
        );
    }
}

#[tokio::test]
async fn only_harmless_pragmas_are_allowed() {
    let (dir, db) = databases(SqlLimits::default());
    db.execute("app", "CREATE TABLE t (x)", vec![])
        .await
        .unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    for pragma in [
        format!("PRAGMA temp_store_directory = '{}'", elsewhere.display()),
        format!("PRAGMA data_store_directory = '{}'", elsewhere.display()),
        "PRAGMA journal_mode = DELETE".to_owned(),
        "PRAGMA main.journal_mode = OFF".to_owned(),
        "PRAGMA synchronous = 0".to_owned(),
        "PRAGMA writable_schema = 1".to_owned(),
        "PRAGMA schema_version = 1".to_owned(),
        "PRAGMA max_page_count = 2147483647".to_owned(),
        "PRAGMA page_size = 65536".to_owned(),
        "PRAGMA cache_size = -2000000".to_owned(),
        "PRAGMA mmap_size = 1073741824".to_owned(),
        "PRAGMA soft_heap_limit = 1".to_owned(),
        "PRAGMA hard_heap_limit = 1".to_owned(),
        "PRAGMA threads = 8".to_owned(),
        "PRAGMA locking_mode = EXCLUSIVE".to_owned(),
        "PRAGMA query_only = 1".to_owned(),
        "PRAGMA busy_timeout = 0".to_owned(),
        "PRAGMA trusted_schema = 1".to_owned(),
        "PRAGMA database_list".to_owned(),
        "SELECT * FROM pragma_database_list".to_owned(),
    ] {
        let error = db.execute("app", &pragma, vec![]).await.unwrap_err();
        assert!(
            matches!(&error, SqlError::Sql(m) if m.contains("PRAGMA") && m.contains("not allowed")),
            "{pragma}: {error:?}"
        );
    }
    for sql in [
        "SELECT load_extension('/nonexistent')",
        "ATTACH DATABASE ':memory:' AS other",
    ] {
        let error = db.execute("app", sql, vec![]).await.unwrap_err();
        assert!(matches!(error, SqlError::Sql(_)), "{sql}: {error:?}");
    }
    // Nothing changed.
    let mode = db
        .execute("app", "PRAGMA journal_mode", vec![])
        .await
        .unwrap();
    assert_eq!(mode.rows, vec![vec![SqlValue::Text("wal".into())]]);
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);

    // What a module needs still works.
    for (sql, rows) in [
        ("PRAGMA user_version = 3", vec![]),
        ("PRAGMA user_version", vec![vec![SqlValue::Integer(3)]]),
        ("PRAGMA foreign_keys = ON", vec![]),
        ("PRAGMA foreign_keys", vec![vec![SqlValue::Integer(1)]]),
        (
            "SELECT name FROM pragma_table_info('t')",
            vec![vec![SqlValue::Text("x".into())]],
        ),
        (
            "PRAGMA integrity_check",
            vec![vec![SqlValue::Text("ok".into())]],
        ),
        ("PRAGMA page_count", vec![vec![SqlValue::Integer(2)]]),
    ] {
        let result = db.execute("app", sql, vec![]).await.unwrap();
        assert_eq!(result.rows, rows, "{sql}");
    }
}

#[tokio::test]
async fn a_database_stops_growing_at_its_size_limit() {
    let (dir, db) = databases(SqlLimits::default());
    db.execute("app", "CREATE TABLE blobs (b BLOB)", vec![])
        .await
        .unwrap();
    let insert = "INSERT INTO blobs VALUES (zeroblob(4000000))";
    let mut inserted = 0;
    let error = loop {
        match db.execute("app", insert, vec![]).await {
            Ok(_) => inserted += 1,
            Err(error) => break error,
        }
        assert!(inserted < 40, "160 MB went into a 64 MiB database");
    };
    assert_too_large(&error, &["max_database_bytes"]);
    assert!(inserted >= 14, "full after {inserted} inserts");
    let size = std::fs::metadata(dir.path().join("sql/app.sqlite3"))
        .unwrap()
        .len();
    assert!(size <= 64 << 20, "{size}");
    // The failed insert left nothing behind, and space freed is reusable.
    let count = db
        .execute("app", "SELECT count(*) FROM blobs", vec![])
        .await
        .unwrap();
    assert_eq!(count.rows, vec![vec![SqlValue::Integer(inserted)]]);
    db.execute("app", "DELETE FROM blobs WHERE rowid = 1", vec![])
        .await
        .unwrap();
    db.execute("app", insert, vec![]).await.unwrap();
    // Another database has its own allowance.
    db.execute("other", "CREATE TABLE t (b BLOB)", vec![])
        .await
        .unwrap();
    db.execute("other", "INSERT INTO t VALUES (zeroblob(4000000))", vec![])
        .await
        .unwrap();
}
