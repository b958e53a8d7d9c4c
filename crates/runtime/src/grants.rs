//! Capability grants: what a module's host calls may touch. Everything is
//! denied unless its [`Grants`] say otherwise. The matching rules live in
//! [`shanhai_abi::grant`], shared with the SDKs' mock hosts.

use shanhai_abi::grant::{http_host_matches, topic_matches};

/// The capabilities granted to one module (`[modules.NAME.grants]` in the
/// gateway's config). The default grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// The module's own KV namespace.
    pub kv: bool,
    /// Shared KV stores, by name.
    pub kv_stores: Vec<String>,
    /// The module's own SQLite database.
    pub sqlite: bool,
    /// Shared SQLite databases, by name.
    pub sqlite_databases: Vec<String>,
    /// Hosts outbound HTTP may reach: `host` (any port), `host:port`, or
    /// `*.domain` (any subdomain, any port).
    pub http: Vec<String>,
    /// MQTT topic filters (`+` and `#` wildcards) `mqtt_publish` may publish
    /// to.
    pub mqtt_publish: Vec<String>,
    /// GPIO pins the module may read.
    pub gpio_in: Vec<u32>,
    /// GPIO pins the module may drive (and read).
    pub gpio_out: Vec<u32>,
}

impl Grants {
    /// Whether the KV store `store` is granted (empty: the module's own).
    pub fn allows_kv(&self, store: &str) -> bool {
        if store.is_empty() {
            self.kv
        } else {
            self.kv_stores.iter().any(|s| s == store)
        }
    }

    /// Whether the SQLite database `database` is granted (empty: the
    /// module's own).
    pub fn allows_sqlite(&self, database: &str) -> bool {
        if database.is_empty() {
            self.sqlite
        } else {
            self.sqlite_databases.iter().any(|d| d == database)
        }
    }

    /// Whether outbound HTTP may reach `host` on `port`.
    pub fn allows_http(&self, host: &str, port: u16) -> bool {
        self.http
            .iter()
            .any(|entry| http_host_matches(entry, host, port))
    }

    /// Whether `mqtt_publish` may publish to `topic`.
    pub fn allows_mqtt_publish(&self, topic: &str) -> bool {
        self.mqtt_publish
            .iter()
            .any(|filter| topic_matches(filter, topic))
    }

    /// Whether pin `pin` may be read.
    pub fn allows_gpio_read(&self, pin: u32) -> bool {
        self.gpio_in.contains(&pin) || self.gpio_out.contains(&pin)
    }

    /// Whether pin `pin` may be driven.
    pub fn allows_gpio_write(&self, pin: u32) -> bool {
        self.gpio_out.contains(&pin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_hosts_match_exactly_or_by_subdomain() {
        let grants = Grants {
            http: vec![
                "api.example.com".into(),
                "127.0.0.1:8081".into(),
                "*.Trusted.org".into(),
            ],
            ..Grants::default()
        };
        assert!(grants.allows_http("API.example.com", 443));
        assert!(grants.allows_http("127.0.0.1", 8081));
        assert!(!grants.allows_http("127.0.0.1", 8082));
        assert!(grants.allows_http("a.b.trusted.org", 80));
        assert!(!grants.allows_http("trusted.org", 80));
        assert!(!grants.allows_http("eviltrusted.org", 80));
        assert!(!grants.allows_http("api.example.com.evil", 443));
        assert!(!Grants::default().allows_http("localhost", 80));
    }

    #[test]
    fn stores_need_a_grant() {
        let grants = Grants {
            kv_stores: vec!["shared".into()],
            gpio_out: vec![18],
            gpio_in: vec![17],
            ..Grants::default()
        };
        assert!(!grants.allows_kv(""));
        assert!(grants.allows_kv("shared"));
        assert!(!grants.allows_sqlite(""));
        assert!(grants.allows_gpio_read(18) && grants.allows_gpio_read(17));
        assert!(!grants.allows_gpio_write(17));
    }
}
