//! SQLite databases of the host (`sql_exec`): the module's own, or
//! databases shared between modules.
//!
//! A database is a capability: the module's own needs `sqlite = true` in
//! its `[modules.NAME.grants]`, a shared one its name in
//! `sqlite_databases`:
//!
//! ```toml
//! [modules.notes.grants]
//! sqlite = true
//! sqlite_databases = ["catalog"]
//! ```
//!
//! Each call runs one statement, with the parameters bound to `?1`, `?2`,
//! ... Bad SQL fails with [`HostError::InvalidArgument`], with SQLite's
//! message in the [`Error`].
//!
//! ```
//! use shanhai_sdk::sql::Database;
//!
//! # fn f() -> Result<(), shanhai_sdk::Error> {
//! let db = Database::own();
//! db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)", &[])?;
//! let id = db.execute("INSERT INTO notes (body) VALUES (?1)", &["buy tea".into()])?.last_insert_rowid;
//! let rows = db.query("SELECT id, body FROM notes WHERE id = ?1", &[id.into()])?;
//! for row in &rows.rows {
//!     shanhai_sdk::info!("{:?}: {:?}", row[0].as_i64(), row[1].as_str());
//! }
//! # Ok(()) }
//! ```

use shanhai_abi::import;
use shanhai_abi::wire::{self, SqlResult, SqlValue};

use crate::{Error, HostError, host};

/// A SQLite database of the host, by name: [`Database::own`] is the
/// module's own, [`Database::shared`] one shared between modules. It only
/// names the database, so make one wherever it is needed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Database {
    name: String,
}

/// A SQL value: a parameter, or a cell of a row.
///
/// `From` converts Rust values: integers, `bool` (0 or 1, as SQLite
/// stores booleans), floats, strings, byte slices and vectors (blobs), and
/// `Option`s of those (`None` is NULL).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// NULL.
    Null,
    /// An INTEGER.
    Integer(i64),
    /// A REAL.
    Real(f64),
    /// TEXT.
    Text(String),
    /// A BLOB.
    Blob(Vec<u8>),
}

/// What a statement run by [`Database::execute`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ExecResult {
    /// Rows changed by an INSERT, UPDATE or DELETE.
    pub rows_affected: u64,
    /// The rowid of the last row inserted through the database's
    /// connection.
    pub last_insert_rowid: i64,
}

/// The rows of a query run by [`Database::query`], read whole.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    /// The column names.
    pub columns: Vec<String>,
    /// The rows, each with one value per column.
    pub rows: Vec<Vec<Value>>,
}

impl Database {
    /// The module's own database (grant `sqlite = true`).
    pub fn own() -> Self {
        Self::shared("")
    }

    /// The shared database `name` (grant `sqlite_databases = ["name"]`);
    /// the empty name is the module's own.
    pub fn shared(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    /// The database's name, empty for the module's own.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a statement that returns no rows (CREATE, INSERT, UPDATE,
    /// DELETE, ...) and says what it changed; rows it does return are
    /// discarded.
    ///
    /// # Errors
    /// [`HostError::Denied`] without a grant for the database;
    /// [`HostError::InvalidArgument`] for bad SQL (SQLite's message is in
    /// the error); [`HostError::TooLarge`] beyond the gateway's row or
    /// byte limit; [`HostError::Unavailable`] on a timeout.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<ExecResult, Error> {
        self.run(sql, params, |result| ExecResult {
            rows_affected: result.rows_affected,
            last_insert_rowid: result.last_insert_rowid,
        })
    }

    /// Runs a statement and returns its rows, all of them: bound large
    /// queries with LIMIT, as the host refuses results beyond its limits.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, Error> {
        self.run(sql, params, |result| Rows {
            columns: result.columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: result
                .rows
                .iter()
                .map(|row| row.iter().map(Value::from_wire).collect())
                .collect(),
        })
    }

    fn run<T>(
        &self,
        sql: &str,
        params: &[Value],
        convert: impl FnOnce(&SqlResult<'_>) -> T,
    ) -> Result<T, Error> {
        let params = if params.is_empty() {
            Vec::new()
        } else {
            let wire: Vec<SqlValue<'_>> = params.iter().map(Value::to_wire).collect();
            wire::encode_sql_params(&wire)
        };
        let len = host::sql_exec(&self.name, sql, &params)
            .map_err(|kind| host::explain(import::SQL_EXEC, kind))?;
        let bytes =
            host::read_staged(len).map_err(|kind| Error::new(import::SQL_EXEC, kind, None))?;
        let result = SqlResult::decode(&bytes).map_err(|e| {
            Error::new(
                import::SQL_EXEC,
                HostError::Internal,
                Some(format!("malformed SQL result: {e}")),
            )
        })?;
        Ok(convert(&result))
    }
}

impl Rows {
    /// The index of the column called `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

impl Value {
    /// The integer, for an INTEGER.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Self::Integer(v) => Some(v),
            _ => None,
        }
    }

    /// The number, for a REAL or an INTEGER.
    #[allow(clippy::cast_precision_loss)]
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::Real(v) => Some(v),
            Self::Integer(v) => Some(v as f64),
            _ => None,
        }
    }

    /// The text, for TEXT.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Text(v) => Some(v),
            _ => None,
        }
    }

    /// The bytes, for a BLOB or TEXT.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Blob(v) => Some(v),
            Self::Text(v) => Some(v.as_bytes()),
            _ => None,
        }
    }

    /// Whether it is NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// The value as the ABI's borrowed [`SqlValue`].
    pub(crate) fn to_wire(&self) -> SqlValue<'_> {
        match self {
            Self::Null => SqlValue::Null,
            Self::Integer(v) => SqlValue::Integer(*v),
            Self::Real(v) => SqlValue::Real(*v),
            Self::Text(v) => SqlValue::Text(v),
            Self::Blob(v) => SqlValue::Blob(v),
        }
    }

    pub(crate) fn from_wire(value: &SqlValue<'_>) -> Self {
        match *value {
            SqlValue::Null => Self::Null,
            SqlValue::Integer(v) => Self::Integer(v),
            SqlValue::Real(v) => Self::Real(v),
            SqlValue::Text(v) => Self::Text(v.to_owned()),
            SqlValue::Blob(v) => Self::Blob(v.to_vec()),
        }
    }
}

macro_rules! integer_values {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Self::Integer(i64::from(v))
            }
        }
    )*};
}
integer_values!(i8, i16, i32, i64, u8, u16, u32, bool);

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Real(v)
    }
}

impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Self::Real(f64::from(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Self::Blob(v.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for Value {
    fn from(v: &[u8; N]) -> Self {
        Self::Blob(v.to_vec())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Self::Blob(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_values_convert() {
        assert_eq!(Value::from(7_u32), Value::Integer(7));
        assert_eq!(Value::from(true), Value::Integer(1));
        assert_eq!(Value::from(0.5_f32), Value::Real(0.5));
        assert_eq!(Value::from("x"), Value::Text("x".into()));
        assert_eq!(Value::from(b"ab"), Value::Blob(b"ab".to_vec()));
        assert_eq!(Value::from(None::<i64>), Value::Null);
        assert_eq!(Value::from(Some("y")), Value::Text("y".into()));
        assert_eq!(Value::Integer(2).as_f64(), Some(2.0));
        assert_eq!(Value::Text("t".into()).as_bytes(), Some(&b"t"[..]));
        assert_eq!(Value::Null.as_i64(), None);
        for value in [
            Value::Null,
            Value::Integer(i64::MIN),
            Value::Real(-0.25),
            Value::Text("é".into()),
            Value::Blob(vec![0, 255]),
        ] {
            assert_eq!(Value::from_wire(&value.to_wire()), value);
        }
    }
}
