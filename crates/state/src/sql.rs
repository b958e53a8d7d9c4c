//! [`SqlDatabases`]: named SQLite databases under one folder, one statement
//! per call, with a deadline and result limits.
//!
//! A statement comes from a guest, so nothing it does may cost the host
//! more than the limits allow ([`SqlLimits`]): SQLite's own limits bound
//! every string and blob a statement builds (`zeroblob(900000000)` fails
//! before SQLite allocates it), the SQL text, and the shape of a statement;
//! `max_page_count` bounds each database file; result values are measured
//! before they are copied out; and an authorizer refuses ATTACH,
//! `load_extension()` and every PRAGMA that is not on a short list of
//! harmless ones (no process-wide settings, no journal or durability
//! changes, no paths).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
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
    /// The largest string or blob a statement may bind, build or store
    /// (`SQLITE_LIMIT_LENGTH`): past it SQLite fails the statement before
    /// it allocates the value. Default 4 MiB.
    pub max_value_bytes: usize,
    /// The longest SQL text (`SQLITE_LIMIT_SQL_LENGTH`). Default 1 MiB.
    pub max_sql_bytes: usize,
    /// The largest database file (`PRAGMA max_page_count`): a write that
    /// would grow it further fails. Default 64 MiB.
    pub max_database_bytes: u64,
    /// The most columns in a table, result, index or `GROUP BY`
    /// (`SQLITE_LIMIT_COLUMN`). Default 500.
    pub max_columns: usize,
    /// The deepest expression tree (`SQLITE_LIMIT_EXPR_DEPTH`). Default 250.
    pub max_expr_depth: usize,
    /// The most terms in a compound SELECT (`SQLITE_LIMIT_COMPOUND_SELECT`).
    /// Default 100.
    pub max_compound_select: usize,
    /// The highest parameter number, `?N` (`SQLITE_LIMIT_VARIABLE_NUMBER`).
    /// Default 2000.
    pub max_variables: usize,
    /// The longest LIKE or GLOB pattern
    /// (`SQLITE_LIMIT_LIKE_PATTERN_LENGTH`). Default 1000 bytes.
    pub max_like_pattern_bytes: usize,
    /// The deepest recursion of triggers (`SQLITE_LIMIT_TRIGGER_DEPTH`).
    /// Default 10.
    pub max_trigger_depth: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(1),
            max_rows: 10_000,
            max_result_bytes: 4 << 20,
            max_value_bytes: 4 << 20,
            max_sql_bytes: 1 << 20,
            max_database_bytes: 64 << 20,
            max_columns: 500,
            max_expr_depth: 250,
            max_compound_select: 100,
            max_variables: 2000,
            max_like_pattern_bytes: 1000,
            max_trigger_depth: 10,
        }
    }
}

impl SqlLimits {
    /// SQLite's run-time limits, from these.
    fn sqlite_limits(&self) -> [(Limit, usize); 9] {
        [
            (Limit::SQLITE_LIMIT_LENGTH, self.max_value_bytes),
            (Limit::SQLITE_LIMIT_SQL_LENGTH, self.max_sql_bytes),
            (Limit::SQLITE_LIMIT_COLUMN, self.max_columns),
            (Limit::SQLITE_LIMIT_EXPR_DEPTH, self.max_expr_depth),
            (
                Limit::SQLITE_LIMIT_COMPOUND_SELECT,
                self.max_compound_select,
            ),
            (Limit::SQLITE_LIMIT_VARIABLE_NUMBER, self.max_variables),
            (
                Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH,
                self.max_like_pattern_bytes,
            ),
            (Limit::SQLITE_LIMIT_TRIGGER_DEPTH, self.max_trigger_depth),
            // ATTACH could open any path the process can reach.
            (Limit::SQLITE_LIMIT_ATTACHED, 0),
        ]
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
    open: Mutex<HashMap<String, Arc<Mutex<Database>>>>,
}

/// An open database: its connection, and why the authorizer refused the
/// statement being prepared, if it did (SQLite itself only says "not
/// authorized").
struct Database {
    connection: Connection,
    refusal: Arc<Mutex<Option<String>>>,
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

    /// The limits every call runs within.
    pub fn limits(&self) -> &SqlLimits {
        &self.shared.limits
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
            let database = shared.connection(&database)?;
            let mut database = database.lock().unwrap_or_else(PoisonError::into_inner);
            let Database {
                connection,
                refusal,
            } = &mut *database;
            let limits = &shared.limits;
            *lock(refusal) = None;
            // Set per call: the deadline counts from the call, so time spent
            // waiting for the mutex is charged to it too.
            connection
                .progress_handler(PROGRESS_STEPS, Some(move || Instant::now() >= deadline))
                .map_err(|error| sql_error(error, limits))?;
            let result = run(connection, &sql, &params, limits).map_err(|error| {
                // A refusal surfaces as "not authorized", or as another
                // error when a pragma table's own statement was refused.
                match lock(refusal).take() {
                    Some(reason) => SqlError::Sql(reason),
                    None => error,
                }
            });
            connection
                .progress_handler(0, None::<fn() -> bool>)
                .map_err(|error| sql_error(error, limits))?;
            result
        })
        .await
        .map_err(|error| SqlError::Internal(format!("SQLite task failed: {error}")))?
    }
}

impl Shared {
    fn connection(&self, name: &str) -> Result<Arc<Mutex<Database>>, SqlError> {
        let mut open = lock(&self.open);
        if let Some(connection) = open.get(name) {
            return Ok(Arc::clone(connection));
        }
        let connection = Arc::new(Mutex::new(self.open_database(name)?));
        open.insert(name.to_owned(), Arc::clone(&connection));
        Ok(connection)
    }

    fn open_database(&self, name: &str) -> Result<Database, SqlError> {
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
        let mut connection = Connection::open_with_flags(&path, flags).map_err(cannot_open)?;
        connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| {
                row.get::<_, String>(0)
            })
            .map_err(cannot_open)?;
        connection
            .busy_timeout(self.limits.timeout)
            .map_err(cannot_open)?;
        for (limit, value) in self.limits.sqlite_limits() {
            let value = i32::try_from(value).unwrap_or(i32::MAX);
            connection.set_limit(limit, value).map_err(cannot_open)?;
        }
        // SQLite never lowers max_page_count below the file's size, so a
        // database already bigger (the limit was lowered) only stops
        // growing.
        let page_size: i64 = connection
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .map_err(cannot_open)?;
        let page_size = u64::try_from(page_size).unwrap_or(4096).max(1);
        let max_pages = (self.limits.max_database_bytes / page_size).clamp(1, u32::MAX.into());
        connection
            .query_row(&format!("PRAGMA max_page_count = {max_pages}"), [], |row| {
                row.get::<_, i64>(0)
            })
            .map_err(cannot_open)?;
        // Last, so that the settings above are not refused.
        let refusal = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&refusal);
        connection
            .authorizer(Some(move |context: AuthContext<'_>| {
                match authorize(&context.action) {
                    Ok(()) => Authorization::Allow,
                    Err(reason) => {
                        *lock(&slot) = Some(reason);
                        Authorization::Deny
                    }
                }
            }))
            .map_err(cannot_open)?;
        Ok(Database {
            connection,
            refusal,
        })
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

/// PRAGMAs allowed with or without an argument, which names a table or an
/// index, or bounds a check: they read the schema or check the database.
const QUERY_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
    "collation_list",
    "function_list",
    "module_list",
    "pragma_list",
    "compile_options",
    "optimize",
    "incremental_vacuum",
    "wal_checkpoint",
];

/// PRAGMAs that may be read but not set: changing them would reach beyond
/// the module's own data (durability, journal, memory, locks, limits).
const READ_ONLY_PRAGMAS: &[&str] = &[
    "page_count",
    "page_size",
    "max_page_count",
    "freelist_count",
    "data_version",
    "schema_version",
    "journal_mode",
    "encoding",
    "auto_vacuum",
    "cache_size",
    "synchronous",
    "temp_store",
    "mmap_size",
    "locking_mode",
    "busy_timeout",
    "secure_delete",
    "query_only",
];

/// PRAGMAs that may be set: they only change how the module's own data
/// behaves.
const SETTABLE_PRAGMAS: &[&str] = &[
    "user_version",
    "application_id",
    "foreign_keys",
    "defer_foreign_keys",
    "recursive_triggers",
];

/// Whether a guest's statement may take `action`; `Err` says why not.
fn authorize(action: &AuthAction<'_>) -> Result<(), String> {
    match *action {
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => authorize_pragma(pragma_name, pragma_value),
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Err(
            "ATTACH and DETACH are not allowed: a statement reaches only its own database".into(),
        ),
        AuthAction::Function { function_name }
            if function_name.eq_ignore_ascii_case("load_extension") =>
        {
            Err("load_extension() is not allowed".into())
        }
        _ => Ok(()),
    }
}

fn authorize_pragma(name: &str, value: Option<&str>) -> Result<(), String> {
    let lower = name.to_ascii_lowercase();
    let listed = |list: &[&str]| list.contains(&lower.as_str());
    if listed(QUERY_PRAGMAS) || listed(SETTABLE_PRAGMAS) {
        return Ok(());
    }
    if listed(READ_ONLY_PRAGMAS) {
        return match value {
            None => Ok(()),
            Some(value) => Err(format!(
                "PRAGMA {name} = {value} is not allowed: {name} may be read, not set"
            )),
        };
    }
    let statement = match value {
        Some(value) => format!("PRAGMA {name} = {value}"),
        None => format!("PRAGMA {name}"),
    };
    Err(format!(
        "{statement} is not allowed: a module may query the schema and check the database \
         (table_info, index_list, integrity_check, ...), read its settings, and set only {}",
        SETTABLE_PRAGMAS.join(", ")
    ))
}

fn run(
    connection: &Connection,
    sql: &str,
    params: &[SqlValue],
    limits: &SqlLimits,
) -> Result<SqlResult, SqlError> {
    let to_sql_error = |error| sql_error(error, limits);
    let mut statement = connection.prepare_cached(sql).map_err(to_sql_error)?;
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
            .map_err(to_sql_error)?;
    }
    let columns: Vec<String> = statement.column_names().map(String::from).collect();
    let mut bytes: usize = columns.iter().map(String::len).sum();
    let width = columns.len();
    let changes_before = connection.total_changes();
    let mut rows = Vec::new();
    let mut cursor = statement.raw_query();
    while let Some(row) = cursor.next().map_err(to_sql_error)? {
        if rows.len() == limits.max_rows {
            return Err(SqlError::TooLarge(format!(
                "more than {} rows",
                limits.max_rows
            )));
        }
        let mut values = Vec::with_capacity(width);
        for index in 0..width {
            let value = row.get_ref(index).map_err(to_sql_error)?;
            bytes += match value {
                ValueRef::Text(text) => text.len(),
                ValueRef::Blob(blob) => blob.len(),
                _ => 8,
            };
            // Checked before the value is copied, so a huge result stops
            // early instead of being built.
            if bytes > limits.max_result_bytes {
                return Err(SqlError::TooLarge(format!(
                    "more than {} bytes",
                    limits.max_result_bytes
                )));
            }
            values.push(from_sqlite(value));
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

fn sql_error(error: rusqlite::Error, limits: &SqlLimits) -> SqlError {
    match error {
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.code == ErrorCode::OperationInterrupted =>
        {
            SqlError::Timeout
        }
        rusqlite::Error::SqliteFailure(failure, message) if failure.code == ErrorCode::TooBig => {
            let message = message.unwrap_or_else(|| "string or blob too big".into());
            let limit = if message.contains("statement too long") {
                format!("sqlite.max_sql_bytes = {}", limits.max_sql_bytes)
            } else {
                format!("sqlite.max_value_bytes = {}", limits.max_value_bytes)
            };
            SqlError::TooLarge(format!("{message} (the limit is {limit} bytes)"))
        }
        rusqlite::Error::SqliteFailure(failure, message) if failure.code == ErrorCode::DiskFull => {
            let message = message.unwrap_or_else(|| "database or disk is full".into());
            SqlError::TooLarge(format!(
                "{message} (a database holds at most sqlite.max_database_bytes = {} bytes)",
                limits.max_database_bytes
            ))
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
