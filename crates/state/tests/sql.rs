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
