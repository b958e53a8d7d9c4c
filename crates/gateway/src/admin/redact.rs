//! The config as `GET /admin/config` shows it: every section, with module
//! variables' values (which may hold secrets), the admin token and the
//! credentials inside URLs (`redis://:PASSWORD@host`) replaced.

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
    redact_url_credentials(&mut json);
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

/// Replaces the password of every URL-valued setting (a key ending in
/// `url`), wherever it is: `scheme://user:PASSWORD@host` keeps the user,
/// and a lone `scheme://SECRET@host` (Redis's password-only form) loses it.
fn redact_url_credentials(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if key.ends_with("url")
                    && let Value::String(url) = value
                {
                    *url = redact_url(url);
                } else {
                    redact_url_credentials(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_url_credentials),
        _ => {}
    }
}

fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let shown = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:{REDACTED}"),
        None => REDACTED.to_owned(),
    };
    format!("{scheme}://{shown}{}", &rest[at..])
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

    #[test]
    fn credentials_in_urls_are_redacted() {
        let config = Config::parse(
            "[kv]\nbackend = \"redis\"\nredis_url = \"redis://:hunter2@10.0.0.5:6379/0\"\n",
        )
        .unwrap();
        let json = config_json(&config);
        assert!(!json.to_string().contains("hunter2"), "{json}");
        assert_eq!(json["kv"]["redis_url"], "redis://:***@10.0.0.5:6379/0");

        assert_eq!(
            redact_url("redis://app:s3cret@db:6379"),
            "redis://app:***@db:6379"
        );
        assert_eq!(
            redact_url("mqtts://u:p%40ss@broker:8883/x?y=z@w"),
            "mqtts://u:***@broker:8883/x?y=z@w"
        );
        assert_eq!(redact_url("redis://db:6379/0"), "redis://db:6379/0");
        assert_eq!(redact_url("redis://tok@db:6379"), "redis://***@db:6379");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
