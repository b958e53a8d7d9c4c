//! The config as `GET /admin/config` shows it: every section, with module
//! variables' values (which may hold secrets) and the admin token replaced.

use serde_json::{Map, Value, json};

use crate::config::{Config, LimitsConfig};

/// What replaces a secret.
const REDACTED: &str = "***";

/// The effective config as JSON, secrets redacted.
pub(crate) fn config_json(config: &Config) -> Value {
    let modules: Map<String, Value> = config
        .modules
        .iter()
        .map(|(name, module)| {
            let mut section = limits_json(&module.limits);
            section.insert(
                "file".into(),
                json!(module.file.as_ref().map(|f| f.display().to_string())),
            );
            section.insert("routes".into(), json!(module.routes));
            let vars: Map<String, Value> = module
                .vars
                .keys()
                .map(|key| (key.clone(), json!(REDACTED)))
                .collect();
            section.insert("vars".into(), Value::Object(vars));
            (name.clone(), Value::Object(section))
        })
        .collect();
    let server = &config.server;
    let admin = &config.admin;
    json!({
        "server": {
            "listen": server.listen.to_string(),
            "modules_dir": server.modules_dir.display().to_string(),
            "cache_dir": server.cache_dir.display().to_string(),
            "watch": server.watch,
            "drain_timeout_ms": server.drain_timeout_ms,
        },
        "runtime": {
            "fuel": config.runtime.fuel,
            "total_instances": config.runtime.total_instances,
            "epoch_tick_ms": config.runtime.epoch_tick_ms,
            "memory_keep_resident_kb": config.runtime.memory_keep_resident_kb,
        },
        "defaults": limits_json(&config.defaults),
        "modules": modules,
        "admin": {
            "enabled": admin.enabled,
            "listen": admin.listen.to_string(),
            "token": admin.token.as_ref().map(|_| REDACTED),
            "token_env": admin.token_env,
            "socket": admin.socket.display().to_string(),
        },
        "signing": {
            "require_signed": config.signing.require_signed,
            "trusted_keys": config.signing.trusted_keys,
        },
    })
}

/// The limits that are set; unset ones fall back to the level above.
/// (`LimitsConfig` is not `Serialize`: a new limit must be added here.)
fn limits_json(limits: &LimitsConfig) -> Map<String, Value> {
    [
        ("deadline_ms", json!(limits.deadline_ms)),
        ("max_memory_mb", json!(limits.max_memory_mb)),
        ("fuel", json!(limits.fuel)),
        ("max_request_bytes", json!(limits.max_request_bytes)),
        ("max_response_bytes", json!(limits.max_response_bytes)),
        ("max_instances", json!(limits.max_instances)),
        ("max_queue", json!(limits.max_queue)),
        ("queue_timeout_ms", json!(limits.queue_timeout_ms)),
        ("min_instances", json!(limits.min_instances)),
        (
            "max_requests_per_instance",
            json!(limits.max_requests_per_instance),
        ),
        ("idle_timeout_ms", json!(limits.idle_timeout_ms)),
        ("scale_up_wait_ms", json!(limits.scale_up_wait_ms)),
    ]
    .into_iter()
    .filter(|(_, value)| !value.is_null())
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_appear() {
        let config = Config::parse(
            "[admin]\ntoken = \"tok-123\"\n[modules.a]\ndeadline_ms = 7\n[modules.a.vars]\napi_key = \"key-456\"\n",
        )
        .unwrap();
        let json = config_json(&config);
        let text = json.to_string();
        assert!(
            !text.contains("tok-123") && !text.contains("key-456"),
            "{text}"
        );
        assert_eq!(json["modules"]["a"]["vars"]["api_key"], REDACTED);
        assert_eq!(json["modules"]["a"]["deadline_ms"], 7);
        assert_eq!(json["admin"]["token"], REDACTED);
    }
}
