//! `shanhai::sql_exec`: one SQL statement on the module's SQLite database
//! or a shared one it is granted.
//!
//! Module databases and shared databases live in two separate folders
//! ([`SqlServices`]), so a shared database can never be named so as to
//! open a module's own.

use std::sync::Arc;

use shanhai_abi::wire::{self, SqlResult};
use shanhai_abi::{HostStatus, IMPORT_MODULE, import};
use shanhai_state::{SqlDatabases, SqlError, SqlValue};
use wasmtime::{Caller, Linker};

use super::{HostState, denied, fail, guest_bytes, guest_str, stage};

/// The databases behind `sql_exec`.
#[derive(Clone)]
pub struct SqlServices {
    /// One database per module, named after it.
    pub modules: Arc<SqlDatabases>,
    /// Shared databases, by the names granted in `sqlite_databases`.
    pub shared: Arc<SqlDatabases>,
}

fn owned(value: &wire::SqlValue<'_>) -> SqlValue {
    match *value {
        wire::SqlValue::Null => SqlValue::Null,
        wire::SqlValue::Integer(v) => SqlValue::Integer(v),
        wire::SqlValue::Real(v) => SqlValue::Real(v),
        wire::SqlValue::Text(v) => SqlValue::Text(v.to_owned()),
        wire::SqlValue::Blob(v) => SqlValue::Blob(v.to_vec()),
    }
}

fn borrowed(value: &SqlValue) -> wire::SqlValue<'_> {
    match value {
        SqlValue::Null => wire::SqlValue::Null,
        SqlValue::Integer(v) => wire::SqlValue::Integer(*v),
        SqlValue::Real(v) => wire::SqlValue::Real(*v),
        SqlValue::Text(v) => wire::SqlValue::Text(v),
        SqlValue::Blob(v) => wire::SqlValue::Blob(v),
    }
}

/// Why `params` cannot be bound, when one is longer than `max_value_bytes`.
fn oversized(params: &[wire::SqlValue<'_>], max_value_bytes: usize) -> Option<String> {
    params.iter().enumerate().find_map(|(index, param)| {
        let len = match param {
            wire::SqlValue::Text(text) => text.len(),
            wire::SqlValue::Blob(blob) => blob.len(),
            _ => 0,
        };
        (len > max_value_bytes).then(|| {
            format!(
                "parameter {} is {len} bytes; the limit is sqlite.max_value_bytes = {max_value_bytes}",
                index + 1
            )
        })
    })
}

/// The status (with its message staged) for a database failure.
fn sql_error(state: &mut HostState, err: SqlError) -> i32 {
    let status = match &err {
        SqlError::Sql(_) | SqlError::InvalidName(_) => HostStatus::InvalidArgument,
        SqlError::TooLarge(_) => HostStatus::TooLarge,
        SqlError::Timeout => HostStatus::Unavailable,
        SqlError::Internal(_) => {
            tracing::error!(module = &*state.module.name, request_id = &*state.event.request_id, error = %err, "SQLite failure");
            HostStatus::Internal
        }
    };
    fail(state, status, err.to_string())
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        IMPORT_MODULE,
        import::SQL_EXEC,
        |mut caller: Caller<'_, HostState>, (dp, dl, qp, ql, pp, pl): (i32, i32, i32, i32, i32, i32)| {
            Box::new(async move {
                caller.data_mut().event.staged = None;
                // Sizes are checked before anything is copied out of the
                // guest: its memory may be far bigger than SQLite accepts.
                let limits = caller.data().module.services.sql.get().map(|s| s.modules.limits().clone());
                if let Some(limits) = &limits
                    && usize::try_from(ql).is_ok_and(|len| len > limits.max_sql_bytes)
                {
                    let message = format!(
                        "the SQL text is {ql} bytes; the limit is sqlite.max_sql_bytes = {}",
                        limits.max_sql_bytes
                    );
                    return fail(caller.data_mut(), HostStatus::TooLarge, message);
                }
                let (database, query) = match (guest_str(&mut caller, dp, dl), guest_str(&mut caller, qp, ql)) {
                    (Ok(d), Ok(q)) => (d, q),
                    (Err(s), _) | (_, Err(s)) => return s as i32,
                };
                let params = match guest_bytes(&mut caller, pp, pl) {
                    Ok((bytes, state)) => match wire::decode_sql_params(bytes) {
                        Ok(params) => {
                            if let Some(too_big) = limits.as_ref().and_then(|l| oversized(&params, l.max_value_bytes)) {
                                return fail(state, HostStatus::TooLarge, too_big);
                            }
                            params.iter().map(owned).collect::<Vec<_>>()
                        }
                        Err(err) => {
                            return fail(state, HostStatus::InvalidArgument, format!("bad SQL parameters: {err}"));
                        }
                    },
                    Err(status) => return status as i32,
                };
                let state = caller.data_mut();
                if !state.module.grants.allows_sqlite(&database) {
                    let detail = if database.is_empty() {
                        "the module's own SQLite database is not granted (grants.sqlite = true)".to_owned()
                    } else {
                        format!("the SQLite database `{database}` is not granted (grants.sqlite_databases)")
                    };
                    return denied(state, "sqlite", detail);
                }
                let Some(services) = state.module.services.sql.get().cloned() else {
                    return fail(state, HostStatus::Unavailable, "no SQLite databases in this process");
                };
                let (databases, name) = if database.is_empty() {
                    (services.modules, state.module.name.to_string())
                } else {
                    (services.shared, database)
                };
                let result = databases.execute(&name, &query, params).await;
                let state = caller.data_mut();
                match result {
                    Ok(result) => {
                        let encoded = SqlResult {
                            rows_affected: result.rows_affected,
                            last_insert_rowid: result.last_insert_rowid,
                            columns: result.columns.iter().map(String::as_str).collect(),
                            rows: result.rows.iter().map(|row| row.iter().map(borrowed).collect()).collect(),
                        }
                        .encode();
                        stage(state, encoded)
                    }
                    Err(err) => sql_error(state, err),
                }
            })
        },
    )?;
    Ok(())
}
