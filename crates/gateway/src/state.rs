//! Opens the state modules are granted (the KV store, the SQLite folders)
//! and installs it, with the outbound HTTP limits and the GPIO root, in the
//! runtime's host functions.

use std::sync::Arc;

use shanhai_runtime::{OutboundHttpSettings, Runtime, SqlServices};
use shanhai_state::{KvStore, SqlDatabases};

use crate::config::{Config, KvBackend};

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
    let limits = config.sqlite.limits();
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
