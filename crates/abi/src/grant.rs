//! Capability grants and the rules by which a host checks them, shared by
//! the runtime and the SDKs' mock hosts so both answer the same way: what a
//! module is granted ([`Grants`]; everything is denied unless granted), MQTT
//! topic filters, publishable topic names, and outbound HTTP host patterns.

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

/// Whether the MQTT topic filter `filter` matches `topic` (MQTT 3.1.1
/// §4.7: `+` is one level, a final `#` the rest, including none; topics
/// starting with `$` match no filter starting with a wildcard).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut levels = topic.split('/');
    let mut filters = filter.split('/').peekable();
    while let Some(f) = filters.next() {
        if f == "#" {
            return filters.peek().is_none();
        }
        match levels.next() {
            Some(level) if f == "+" || f == level => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

/// Why `topic` cannot be published to, if it cannot (MQTT 3.1.1 §4.7.3:
/// topic names are non-empty UTF-8 without wildcards or NUL).
pub fn invalid_topic(topic: &str) -> Option<&'static str> {
    if topic.is_empty() {
        Some("the topic is empty")
    } else if topic.contains(['+', '#']) {
        Some("a topic to publish to cannot contain the wildcards + or #")
    } else if topic.contains('\0') {
        Some("the topic contains NUL")
    } else if topic.len() > 65_535 {
        Some("the topic is longer than 65,535 bytes")
    } else {
        None
    }
}

/// Whether the `http` grant entry `entry` (`host`: any port; `host:port`;
/// `*.domain`: any subdomain, any port) allows `host` on `port`. Hosts
/// compare case-insensitively.
pub fn http_host_matches(entry: &str, host: &str, port: u16) -> bool {
    let entry = entry.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    let (pattern, entry_port) = split_port(&entry);
    if entry_port.is_some_and(|p| p != port) {
        return false;
    }
    match pattern.strip_prefix("*.") {
        Some(domain) => host
            .strip_suffix(domain)
            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        None => host == pattern,
    }
}

/// `host:port` → (`host`, port); `[v6]:port` and bare hosts work too.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some((host, tail)) = entry
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
    {
        return (host, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_filters_follow_the_spec() {
        for (filter, topic, matches) in [
            ("a/b", "a/b", true),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("#", "a/b", true),
            ("#", "$SYS/x", false),
            ("+/b", "$SYS/b", false),
            ("$SYS/#", "$SYS/x", true),
            ("a/+/c", "a//c", true),
            ("a/b", "a/b/", false),
            ("a/#/c", "a/b/c", false),
        ] {
            assert_eq!(topic_matches(filter, topic), matches, "{filter} {topic}");
        }
    }

    #[test]
    fn http_hosts_match_exactly_or_by_subdomain() {
        assert!(http_host_matches("api.example.com", "API.example.com", 443));
        assert!(http_host_matches("127.0.0.1:8081", "127.0.0.1", 8081));
        assert!(!http_host_matches("127.0.0.1:8081", "127.0.0.1", 8082));
        assert!(http_host_matches("*.Trusted.org", "a.b.trusted.org", 80));
        assert!(!http_host_matches("*.trusted.org", "trusted.org", 80));
        assert!(!http_host_matches("*.trusted.org", "eviltrusted.org", 80));
        assert!(!http_host_matches(
            "api.example.com",
            "api.example.com.evil",
            443
        ));
        assert!(http_host_matches("[::1]:80", "::1", 80));
    }

    #[test]
    fn publish_topics_have_no_wildcards() {
        assert!(invalid_topic("a/b").is_none());
        assert!(invalid_topic("a/+").is_some());
        assert!(invalid_topic("").is_some());
    }

    #[test]
    fn grants_allow_http_by_entry() {
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
