//! The config as `GET /admin/config` shows it: every section, with module
//! variables' values (which may hold secrets) and the admin token replaced.

use serde_json::{Value, json};

use crate::config::Config;

/// What replaces a secret.
const REDACTED: &str = "***";

/// The effective config as JSON, secrets redacted: module variables' values
/// (which may hold secrets) and the admin token. Limits left unset (they
/// fall back to the level above) are left out.
pub(crate) fn config_json(config: &Config) -> Value {
    let mut json = serde_json::to_value(config).expect("the config serialises");
    if let Some(token) = json.pointer_mut("/admin/token")
        && !token.is_null()
    {
        *token = json!(REDACTED);
    }
    drop_nulls(&mut json["defaults"]);
    if let Some(modules) = json["modules"].as_object_mut() {
        for section in modules.values_mut() {
            drop_nulls(section);
            for key in ["vars", "secrets"] {
                if let Some(values) = section[key].as_object_mut() {
                    for value in values.values_mut() {
                        *value = json!(REDACTED);
                    }
                }
            }
        }
    }
    json
}

fn drop_nulls(section: &mut Value) {
    if let Some(map) = section.as_object_mut() {
        map.retain(|_, value| !value.is_null());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_appear() {
        let config = Config::parse(
            "[admin]\ntoken = \"tok-123\"\n[modules.a]\ndeadline_ms = 7\n[modules.a.vars]\napi_key = \"key-456\"\n[modules.a.secrets]\nsigning = \"sec-789\"\n",
        )
        .unwrap();
        let json = config_json(&config);
        let text = json.to_string();
        assert!(
            !text.contains("tok-123") && !text.contains("key-456") && !text.contains("sec-789"),
            "{text}"
        );
        assert_eq!(json["modules"]["a"]["vars"]["api_key"], REDACTED);
        assert_eq!(json["modules"]["a"]["deadline_ms"], 7);
        assert_eq!(json["admin"]["token"], REDACTED);
        assert!(json["modules"]["a"].get("fuel").is_none());
        assert_eq!(json["canary"]["max_error_rate"], 0.005);
    }
}
