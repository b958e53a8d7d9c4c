//! Opens the state modules are granted (the KV store, the SQLite folders)
//! and installs it, with the outbound HTTP limits and the GPIO root, in the
//! runtime's host functions.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shanhai_runtime::{OutboundHttpSettings, Runtime, SqlServices};
use shanhai_state::{KvStore, SqlDatabases, SqlLimits};

use crate::config::{Config, ConfigError, KvBackend};

/// `[sqlite]`: the limits every `sql_exec` statement runs within, the
/// same for module and shared databases (docs/state.md, "SQLite").
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteConfig {
    /// Longest one statement may run, in milliseconds.
    pub timeout_ms: u64,
    /// Most rows one query may return.
    pub max_rows: usize,
    /// Largest result of one statement, in bytes.
    pub max_result_bytes: usize,
    /// Largest string or blob a statement may bind, build or store, in
    /// bytes: `zeroblob(N)` past it fails before SQLite allocates it.
    pub max_value_bytes: usize,
    /// Longest SQL text of one statement, in bytes.
    pub max_sql_bytes: usize,
    /// Largest database file, in bytes; a write past it fails `too large`.
    pub max_database_bytes: u64,
    /// Most columns in a table, result, index or GROUP BY.
    pub max_columns: usize,
    /// Deepest expression tree.
    pub max_expr_depth: usize,
    /// Most terms in a compound SELECT (UNION, ...).
    pub max_compound_select: usize,
    /// Highest parameter number (`?N`).
    pub max_variables: usize,
    /// Longest LIKE or GLOB pattern, in bytes.
    pub max_like_pattern_bytes: usize,
    /// Deepest recursion of triggers.
    pub max_trigger_depth: usize,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        let limits = SqlLimits::default();
        Self {
            timeout_ms: limits.timeout.as_millis() as u64,
            max_rows: limits.max_rows,
            max_result_bytes: limits.max_result_bytes,
            max_value_bytes: limits.max_value_bytes,
            max_sql_bytes: limits.max_sql_bytes,
            max_database_bytes: limits.max_database_bytes,
            max_columns: limits.max_columns,
            max_expr_depth: limits.max_expr_depth,
            max_compound_select: limits.max_compound_select,
            max_variables: limits.max_variables,
            max_like_pattern_bytes: limits.max_like_pattern_bytes,
            max_trigger_depth: limits.max_trigger_depth,
        }
    }
}

impl SqliteConfig {
    /// The databases' limits, once validated.
    pub fn limits(&self) -> Result<SqlLimits, ConfigError> {
        let positive = [
            ("timeout_ms", self.timeout_ms),
            ("max_rows", self.max_rows as u64),
            ("max_value_bytes", self.max_value_bytes as u64),
            ("max_sql_bytes", self.max_sql_bytes as u64),
            ("max_database_bytes", self.max_database_bytes),
            ("max_columns", self.max_columns as u64),
            ("max_expr_depth", self.max_expr_depth as u64),
            ("max_compound_select", self.max_compound_select as u64),
            ("max_variables", self.max_variables as u64),
            ("max_like_pattern_bytes", self.max_like_pattern_bytes as u64),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Invalid(format!(
                "sqlite.{key} must be positive"
            )));
        }
        // SQLite keeps its limits in 32-bit integers.
        let limited = [
            ("max_value_bytes", self.max_value_bytes),
            ("max_sql_bytes", self.max_sql_bytes),
            ("max_columns", self.max_columns),
            ("max_expr_depth", self.max_expr_depth),
            ("max_compound_select", self.max_compound_select),
            ("max_variables", self.max_variables),
            ("max_like_pattern_bytes", self.max_like_pattern_bytes),
            ("max_trigger_depth", self.max_trigger_depth),
        ];
        if let Some((key, _)) = limited.iter().find(|(_, value)| *value > i32::MAX as usize) {
            return Err(ConfigError::Invalid(format!(
                "sqlite.{key} must be at most {}",
                i32::MAX
            )));
        }
        Ok(SqlLimits {
            timeout: Duration::from_millis(self.timeout_ms),
            max_rows: self.max_rows,
            max_result_bytes: self.max_result_bytes,
            max_value_bytes: self.max_value_bytes,
            max_sql_bytes: self.max_sql_bytes,
            max_database_bytes: self.max_database_bytes,
            max_columns: self.max_columns,
            max_expr_depth: self.max_expr_depth,
            max_compound_select: self.max_compound_select,
            max_variables: self.max_variables,
            max_like_pattern_bytes: self.max_like_pattern_bytes,
            max_trigger_depth: self.max_trigger_depth,
        })
    }
}

/// Installs every host service the config asks for. The KV store is opened
/// only when some module is granted one, so gateways that use no KV (two
/// of them may share a folder) never contend for its file.
pub(crate) async fn install(runtime: &Runtime, config: &Config) -> anyhow::Result<()> {
    let data_dir = &config.state.data_dir;
    let wants_kv = config
        .modules
        .values()
        .any(|m| m.grants.kv || !m.grants.kv_stores.is_empty());
    if wants_kv {
        let settings = config.kv.settings();
        let store = match config.kv.backend {
            KvBackend::Embedded => {
                let path = data_dir.join("kv.redb");
                KvStore::embedded(&path, settings).map_err(|err| {
                    anyhow::anyhow!("opening the KV store {}: {err}", path.display())
                })?
            }
            KvBackend::Redis => {
                let url = config.kv.redis_url()?;
                KvStore::redis(&url, settings)
                    .await
                    .map_err(|err| anyhow::anyhow!("connecting to the Redis KV backend: {err}"))?
            }
        };
        tracing::info!(backend = store.backend_name(), "KV store ready");
        runtime.set_kv_store(Arc::new(store));
    }
    let limits = config.sqlite.limits()?;
    let sqlite = data_dir.join("sqlite");
    runtime.set_sql_databases(SqlServices {
        modules: Arc::new(SqlDatabases::new(&sqlite.join("modules"), limits.clone())),
        shared: Arc::new(SqlDatabases::new(&sqlite.join("shared"), limits)),
    });
    runtime.set_outbound_http(OutboundHttpSettings {
        timeout: std::time::Duration::from_millis(config.outbound_http.timeout_ms),
        max_response_bytes: config.outbound_http.max_response_bytes,
    });
    runtime.set_gpio_root(config.gpio.sysfs_root.clone());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_limits_have_defaults_and_are_checked() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.sqlite.limits().unwrap(), SqlLimits::default());
        let config =
            Config::parse("[sqlite]\nmax_value_bytes = 1024\nmax_database_bytes = 1048576\n")
                .unwrap();
        let limits = config.sqlite.limits().unwrap();
        assert_eq!(limits.max_value_bytes, 1024);
        assert_eq!(limits.max_database_bytes, 1 << 20);
        for bad in [
            "max_value_bytes = 0",
            "max_database_bytes = 0",
            "timeout_ms = 0",
            "max_sql_bytes = 4294967296",
        ] {
            let err = Config::parse(&format!("[sqlite]\n{bad}\n"))
                .unwrap_err()
                .to_string();
            let key = bad.split(' ').next().unwrap();
            assert!(err.contains(&format!("sqlite.{key}")), "{bad}: {err}");
        }
    }
}
