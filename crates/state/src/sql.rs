//! [`SqlDatabases`]: named SQLite databases under one folder, one statement
//! per call, with a deadline and result limits.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::limits::Limit;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags};

/// How many SQLite VM instructions run between two deadline checks: often
/// enough to stop within about a millisecond, rare enough to cost nothing.
const PROGRESS_STEPS: i32 = 1000;

/// The longest database name accepted.
const MAX_NAME_BYTES: usize = 128;

/// Limits on each [`SqlDatabases::execute`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlLimits {
    /// How long a call may run, waiting for the database included; past it
    /// the statement is interrupted. Default 1 s.
    pub timeout: Duration,
    /// The most rows a query may return. Default 10 000.
    pub max_rows: usize,
    /// The most bytes a result may hold (text and blob lengths, 8 per other
    /// value, plus column names). Default 4 MiB.
    pub max_result_bytes: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(1),
            max_rows: 10_000,
            max_result_bytes: 4 << 20,
        }
    }
}

/// A value bound to a parameter or read from a column.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// UTF-8 text (text SQLite holds in another form is converted lossily).
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// What one statement produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SqlResult {
    /// Column names, also for a query that returned no rows.
    pub columns: Vec<String>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<SqlValue>>,
    /// Rows the statement inserted, updated or deleted (those changed by
    /// triggers included); 0 for a query.
    pub rows_affected: u64,
    /// The connection's most recent successful INSERT rowid.
    pub last_insert_rowid: i64,
}

/// Why a statement failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// SQLite refused the statement: syntax, a constraint, the parameter
    /// count, more than one statement. Holds SQLite's message.
    #[error("SQL error: {0}")]
    Sql(String),
    /// The statement ran past [`SqlLimits::timeout`] and was interrupted.
    #[error("the statement ran past its time limit")]
    Timeout,
    /// The result had more rows or bytes than the limits allow.
    #[error("result too large: {0}")]
    TooLarge(String),
    /// A database name with characters other than letters, digits, `-` and
    /// `_`, empty, or too long.
    #[error("invalid database name: {0}")]
    InvalidName(String),
    /// The database file cannot be opened, or another failure.
    #[error("SQLite failure: {0}")]
    Internal(String),
}

/// SQLite databases under one folder: `NAME` lives at `root/NAME.sqlite3`.
///
/// Each database is opened on first use, in WAL mode, and kept open: one
/// connection per database behind a mutex, so statements on one database
/// run one at a time and different databases run in parallel. Statements
/// cannot reach other files: ATTACH (and so VACUUM INTO) is disabled.
pub struct SqlDatabases {
    shared: Arc<Shared>,
}

struct Shared {
    root: PathBuf,
    limits: SqlLimits,
    open: Mutex<HashMap<String, Arc<Mutex<Connection>>>>,
}

impl SqlDatabases {
    /// Databases under `root` (created when the first database opens).
    pub fn new(root: &Path, limits: SqlLimits) -> Self {
        Self {
            shared: Arc::new(Shared {
                root: root.to_path_buf(),
                limits,
                open: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Runs one statement of `sql` with `params` bound to its `?` (or
    /// `?NNN`, `:name`) parameters in order, on a blocking thread. A query
    /// returns its columns and rows; any statement returns `rows_affected`
    /// and `last_insert_rowid`.
    pub async fn execute(
        &self,
        database: &str,
        sql: &str,
        params: Vec<SqlValue>,
    ) -> Result<SqlResult, SqlError> {
        check_name(database)?;
        let deadline = Instant::now() + self.shared.limits.timeout;
        let shared = Arc::clone(&self.shared);
        let database = database.to_owned();
        let sql = sql.to_owned();
        tokio::task::spawn_blocking(move || {
            let connection = shared.connection(&database)?;
            let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
            // Set per call: the deadline counts from the call, so time spent
            // waiting for the mutex is charged to it too.
            connection
                .progress_handler(PROGRESS_STEPS, Some(move || Instant::now() >= deadline))
                .map_err(sql_error)?;
            let result = run(&connection, &sql, &params, &shared.limits);
            connection
                .progress_handler(0, None::<fn() -> bool>)
                .map_err(sql_error)?;
            result
        })
        .await
        .map_err(|error| SqlError::Internal(format!("SQLite task failed: {error}")))?
    }
}

impl Shared {
    fn connection(&self, name: &str) -> Result<Arc<Mutex<Connection>>, SqlError> {
        let mut open = lock(&self.open);
        if let Some(connection) = open.get(name) {
            return Ok(Arc::clone(connection));
        }
        let connection = Arc::new(Mutex::new(self.open_database(name)?));
        open.insert(name.to_owned(), Arc::clone(&connection));
        Ok(connection)
    }

    fn open_database(&self, name: &str) -> Result<Connection, SqlError> {
        fs::create_dir_all(&self.root).map_err(|error| {
            SqlError::Internal(format!("cannot create {}: {error}", self.root.display()))
        })?;
        let path = self.root.join(format!("{name}.sqlite3"));
        // No SQLITE_OPEN_URI: the name must stay a plain file name.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let cannot_open = |error: rusqlite::Error| {
            SqlError::Internal(format!("cannot open {}: {error}", path.display()))
        };
        let connection = Connection::open_with_flags(&path, flags).map_err(cannot_open)?;
        connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| {
                row.get::<_, String>(0)
            })
            .map_err(cannot_open)?;
        connection
            .busy_timeout(self.limits.timeout)
            .map_err(cannot_open)?;
        // ATTACH could open any path the process can reach.
        connection
            .set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)
            .map_err(cannot_open)?;
        Ok(connection)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn check_name(name: &str) -> Result<(), SqlError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if valid {
        Ok(())
    } else {
        Err(SqlError::InvalidName(format!(
            "{name:?}: use 1 to {MAX_NAME_BYTES} letters, digits, '-' or '_'"
        )))
    }
}

fn run(
    connection: &Connection,
    sql: &str,
    params: &[SqlValue],
    limits: &SqlLimits,
) -> Result<SqlResult, SqlError> {
    let mut statement = connection.prepare_cached(sql).map_err(sql_error)?;
    let expected = statement.parameter_count();
    if expected != params.len() {
        return Err(SqlError::Sql(format!(
            "wrong number of parameters: the statement takes {expected}, {} given",
            params.len()
        )));
    }
    for (index, param) in params.iter().enumerate() {
        statement
            .raw_bind_parameter(index + 1, ToSqlOutput::Borrowed(to_sqlite(param)))
            .map_err(sql_error)?;
    }
    let columns: Vec<String> = statement.column_names().map(String::from).collect();
    let mut bytes: usize = columns.iter().map(String::len).sum();
    let width = columns.len();
    let changes_before = connection.total_changes();
    let mut rows = Vec::new();
    let mut cursor = statement.raw_query();
    while let Some(row) = cursor.next().map_err(sql_error)? {
        if rows.len() == limits.max_rows {
            return Err(SqlError::TooLarge(format!(
                "more than {} rows",
                limits.max_rows
            )));
        }
        let mut values = Vec::with_capacity(width);
        for index in 0..width {
            let value = from_sqlite(row.get_ref(index).map_err(sql_error)?);
            bytes += match &value {
                SqlValue::Text(text) => text.len(),
                SqlValue::Blob(blob) => blob.len(),
                _ => 8,
            };
            values.push(value);
        }
        // Checked per row, so a huge result stops early instead of being built.
        if bytes > limits.max_result_bytes {
            return Err(SqlError::TooLarge(format!(
                "more than {} bytes",
                limits.max_result_bytes
            )));
        }
        rows.push(values);
    }
    drop(cursor);
    Ok(SqlResult {
        columns,
        rows,
        rows_affected: connection.total_changes() - changes_before,
        last_insert_rowid: connection.last_insert_rowid(),
    })
}

fn to_sqlite(value: &SqlValue) -> ValueRef<'_> {
    match value {
        SqlValue::Null => ValueRef::Null,
        SqlValue::Integer(integer) => ValueRef::Integer(*integer),
        SqlValue::Real(real) => ValueRef::Real(*real),
        SqlValue::Text(text) => ValueRef::Text(text.as_bytes()),
        SqlValue::Blob(blob) => ValueRef::Blob(blob),
    }
}

fn from_sqlite(value: ValueRef<'_>) -> SqlValue {
    match value {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(integer) => SqlValue::Integer(integer),
        ValueRef::Real(real) => SqlValue::Real(real),
        // SQLite does not check that text is UTF-8, so this must not panic.
        ValueRef::Text(text) => SqlValue::Text(String::from_utf8_lossy(text).into_owned()),
        ValueRef::Blob(blob) => SqlValue::Blob(blob.to_vec()),
    }
}

fn sql_error(error: rusqlite::Error) -> SqlError {
    match error {
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.code == ErrorCode::OperationInterrupted =>
        {
            SqlError::Timeout
        }
        rusqlite::Error::SqliteFailure(_, Some(message)) => SqlError::Sql(message),
        rusqlite::Error::SqlInputError { msg, offset, .. } => {
            SqlError::Sql(format!("{msg} (at byte {offset})"))
        }
        rusqlite::Error::SqliteFailure(failure, None) => SqlError::Sql(failure.to_string()),
        rusqlite::Error::MultipleStatement => {
            SqlError::Sql("more than one statement; run them one at a time".into())
        }
        rusqlite::Error::Empty => SqlError::Sql("the SQL holds no statement".into()),
        other => SqlError::Internal(other.to_string()),
    }
}
