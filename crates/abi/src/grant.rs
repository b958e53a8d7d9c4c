//! Capability grants and the rules by which a host checks them, shared by
//! the runtime and the SDKs' mock hosts so both answer the same way: what a
//! module is granted ([`Grants`]; everything is denied unless granted), MQTT
//! topic filters, publishable topic names, outbound HTTP host patterns, and
//! the addresses outbound HTTP may reach only when a grant names them
//! ([`restricted_address`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
    /// Hosts outbound HTTP may reach: `host` (ports 80 and 443),
    /// `host:port`, `host:*` (any port), or `*.domain` (any subdomain, with
    /// the same port forms); see [`http_host_matches`].
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

    /// Whether an `http` entry names address `ip` literally, with a port
    /// form that covers `port`: the one way outbound HTTP may reach a
    /// [restricted address](restricted_address).
    pub fn names_http_address(&self, ip: IpAddr, port: u16) -> bool {
        self.http.iter().any(|entry| {
            parse_http_entry(entry).is_ok_and(|(pattern, ports)| {
                ports.allows(port)
                    && pattern
                        .parse::<IpAddr>()
                        .is_ok_and(|named| named.to_canonical() == ip.to_canonical())
            })
        })
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

/// The ports an `http` grant entry allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryPorts {
    /// No port given: the web's own, 80 and 443.
    Web,
    /// `:*`.
    Any,
    /// `:N`.
    One(u16),
}

impl EntryPorts {
    fn allows(self, port: u16) -> bool {
        match self {
            EntryPorts::Web => port == 80 || port == 443,
            EntryPorts::Any => true,
            EntryPorts::One(one) => one == port,
        }
    }
}

/// Whether the `http` grant entry `entry` allows `host` on `port`.
///
/// An entry is a host name or an IP address (IPv6 in brackets when a port
/// follows), or `*.domain` for any subdomain of `domain` (not `domain`
/// itself), followed by `:port` for one port or `:*` for any; without
/// either it allows ports 80 and 443 only. Names compare
/// case-insensitively, addresses as addresses. A malformed entry
/// ([`http_grant_error`]) allows nothing.
pub fn http_host_matches(entry: &str, host: &str, port: u16) -> bool {
    let Ok((pattern, ports)) = parse_http_entry(entry) else {
        return false;
    };
    if !ports.allows(port) {
        return false;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let (Ok(granted), Ok(wanted)) = (pattern.parse::<IpAddr>(), host.parse::<IpAddr>()) {
        return granted.to_canonical() == wanted.to_canonical();
    }
    let pattern = pattern.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(domain) => host
            .strip_suffix(domain)
            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        None => host == pattern,
    }
}

/// Why `entry` is not a valid `http` grant entry, if it is not.
pub fn http_grant_error(entry: &str) -> Option<String> {
    parse_http_entry(entry).err()
}

/// An `http` grant entry as (host pattern, ports): `host`, `host:port`,
/// `host:*`, `[v6]`, `[v6]:port`, `[v6]:*`, a bare IPv6 address, or any of
/// the host forms as `*.domain`.
fn parse_http_entry(entry: &str) -> Result<(&str, EntryPorts), String> {
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let Some((host, tail)) = rest.split_once(']') else {
            return Err(format!("`{entry}`: an unclosed `[`"));
        };
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("`{entry}`: `{host}` is not an IPv6 address"));
        }
        match tail {
            "" => (host, None),
            _ => match tail.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => {
                    return Err(format!(
                        "`{entry}`: `]` must end the entry or come before `:port`"
                    ));
                }
            },
        }
    } else if entry.parse::<Ipv6Addr>().is_ok() {
        (entry, None)
    } else {
        match entry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (entry, None),
        }
    };
    let ports = match port {
        None => EntryPorts::Web,
        Some("*") => EntryPorts::Any,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port > 0 => EntryPorts::One(port),
            _ => {
                return Err(format!(
                    "`{entry}`: the port must be 1 to 65535, or `*` for any (an IPv6 address with a port is written [addr]:port)"
                ));
            }
        },
    };
    let name = host.strip_prefix("*.").unwrap_or(host);
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !valid_name && host.parse::<IpAddr>().is_err() {
        return Err(format!(
            "`{entry}` is not a host, host:port, host:* or *.domain (letters, digits, '-', '_' and '.')"
        ));
    }
    Ok((host, ports))
}

/// What kind of address `ip` is, when it is one outbound HTTP may reach
/// only through a grant that names it literally: loopback, private
/// (RFC 1918, IPv6 unique local), shared (RFC 6598, carrier-grade NAT),
/// link-local (cloud metadata services among them), unspecified,
/// multicast, broadcast or reserved. An IPv6 address that embeds an IPv4
/// one (IPv4-mapped, IPv4-compatible, NAT64, 6to4) is judged by the IPv4
/// address, which is where it leads. `None`: a public address.
pub fn restricted_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => restricted_v4(v4),
        IpAddr::V6(v6) => restricted_v6(v6),
    }
}

fn restricted_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(match (a, b) {
        (0, _) => "an unspecified address",
        (127, _) => "a loopback address",
        (10, _) | (192, 168) => "a private address",
        (172, 16..=31) => "a private address",
        (100, 64..=127) => "a shared (carrier-grade NAT) address",
        (169, 254) => "a link-local address",
        (224..=239, _) => "a multicast address",
        _ if ip == Ipv4Addr::BROADCAST => "a broadcast address",
        (240..=255, _) => "a reserved address",
        _ => return None,
    })
}

fn restricted_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    let segments = ip.segments();
    let embedded_v4 = |high: u16, low: u16| {
        Ipv4Addr::new((high >> 8) as u8, high as u8, (low >> 8) as u8, low as u8)
    };
    match segments {
        // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d).
        [0, 0, 0, 0, 0, 0xffff | 0, high, low] => return restricted_v4(embedded_v4(high, low)),
        // NAT64 (64:ff9b::a.b.c.d, RFC 6052).
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] => return restricted_v4(embedded_v4(high, low)),
        // 6to4 (2002:AABB:CCDD::/48, RFC 3056).
        [0x2002, high, low, ..] => return restricted_v4(embedded_v4(high, low)),
        _ => {}
    }
    Some(match segments[0] {
        0xfe80..=0xfebf => "a link-local address",
        0xfec0..=0xfeff => "a site-local address",
        0xfc00..=0xfdff => "a private (unique local) address",
        0xff00..=0xffff => "a multicast address",
        _ => return None,
    })
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
        assert!(http_host_matches("[::1]:80", "[0:0::1]", 80));
        assert!(http_host_matches("::1", "::1", 443));
    }

    #[test]
    fn an_entry_without_a_port_allows_80_and_443_only() {
        for entry in ["localhost", "*.example.com", "10.0.0.5", "[fd00::1]"] {
            let host = match entry {
                "*.example.com" => "api.example.com",
                "[fd00::1]" => "fd00::1",
                other => other,
            };
            assert!(http_host_matches(entry, host, 80), "{entry}");
            assert!(http_host_matches(entry, host, 443), "{entry}");
            for port in [8080, 9090, 22, 6379] {
                assert!(!http_host_matches(entry, host, port), "{entry} {port}");
            }
            let any = format!("{entry}:*");
            assert!(http_host_matches(&any, host, 9090), "{any}");
            assert!(http_host_matches(&any, host, 1), "{any}");
        }
        assert!(http_host_matches(
            "*.example.com:8443",
            "a.example.com",
            8443
        ));
        assert!(!http_host_matches(
            "*.example.com:8443",
            "a.example.com",
            443
        ));
    }

    #[test]
    fn malformed_http_entries_are_named_and_allow_nothing() {
        for entry in [
            "",
            ":80",
            "host:",
            "host:0",
            "host:65536",
            "host:8o",
            "host:80:81",
            "[::1",
            "[nope]:80",
            "[::1]80",
            "a/b",
            "user@host",
            "a b",
            "*",
            "*:*",
        ] {
            assert!(http_grant_error(entry).is_some(), "{entry:?}");
            assert!(!http_host_matches(entry, entry, 80), "{entry:?}");
        }
        for entry in [
            "host",
            "host:1",
            "host:*",
            "[::1]:*",
            "::1",
            "*.a.b:*",
            "10.0.0.1:80",
        ] {
            assert_eq!(http_grant_error(entry), None, "{entry:?}");
        }
    }

    #[test]
    fn only_an_address_named_literally_is_named() {
        let grants = Grants {
            http: vec![
                "localhost:*".into(),
                "127.0.0.1:8500".into(),
                "[::1]".into(),
                "10.0.0.5:*".into(),
            ],
            ..Grants::default()
        };
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert!(grants.names_http_address(ip("127.0.0.1"), 8500));
        assert!(!grants.names_http_address(ip("127.0.0.1"), 8501));
        assert!(grants.names_http_address(ip("::ffff:127.0.0.1"), 8500));
        assert!(grants.names_http_address(ip("::1"), 80));
        assert!(!grants.names_http_address(ip("::1"), 8500));
        assert!(grants.names_http_address(ip("10.0.0.5"), 22));
        assert!(!grants.names_http_address(ip("10.0.0.6"), 22));
        // A name is never an address, whatever it resolves to.
        assert!(
            !Grants {
                http: vec!["localhost:*".into()],
                ..Grants::default()
            }
            .names_http_address(ip("127.0.0.1"), 80)
        );
    }

    #[test]
    fn restricted_ipv4_addresses() {
        for (ip, kind) in [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("10.0.0.1", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "shared"),
            ("100.100.100.200", "shared"),
            ("169.254.169.254", "link-local"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("240.0.0.1", "reserved"),
        ] {
            let found = restricted_address(ip.parse().unwrap());
            assert!(found.is_some_and(|f| f.contains(kind)), "{ip}: {found:?}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.1.1",
            "192.167.1.1",
            "223.255.255.255",
        ] {
            assert_eq!(restricted_address(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[test]
    fn restricted_ipv6_addresses() {
        for (ip, kind) in [
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("fc00::1", "private"),
            ("fd00:ec2::254", "private"),
            ("ff02::1", "multicast"),
            // IPv4-mapped and IPv4-compatible forms lead to the IPv4 address.
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.1.2.3", "private"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::ffff:0.0.0.0", "unspecified"),
            ("::127.0.0.1", "loopback"),
            ("::192.168.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("64:ff9b::7f00:1", "loopback"),
            ("2002:7f00:1::", "loopback"),
            ("2002:c0a8:101::1", "private"),
        ] {
            let found = restricted_address(ip.parse().unwrap());
            assert!(found.is_some_and(|f| f.contains(kind)), "{ip}: {found:?}");
        }
        for ip in [
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(restricted_address(ip.parse().unwrap()), None, "{ip}");
        }
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
        assert!(!grants.allows_http("api.example.com", 8443));
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
