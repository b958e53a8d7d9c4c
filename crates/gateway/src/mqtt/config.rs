//! `[mqtt]` and `[mqtt.triggers.NAME]`: the raw config, and its validation
//! into the settings the trigger runs with.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::topic::{TopicTemplate, invalid_filter, wildcards};
use crate::config::{ConfigError, is_module_name};

/// `[mqtt]`: the MQTT client, the embedded broker and the triggers. MQTT
/// runs when this section exists (and `enabled` is not false).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Run MQTT at all.
    pub enabled: bool,
    /// An external broker, `mqtt://host:port` or `mqtts://host:port`
    /// (TLS). Unset: the gateway runs an embedded broker.
    pub url: Option<String>,
    /// The embedded broker's MQTT 3.1.1 listener.
    pub listen: SocketAddr,
    /// The embedded broker's MQTT 5 listener, which the gateway's own
    /// connections use; port 0 picks a free port.
    pub listen_v5: SocketAddr,
    /// Prefix of the gateway's client ids: each trigger connects as
    /// `CLIENT_ID-TRIGGER`, `mqtt_publish` as `CLIENT_ID-publisher`. Must
    /// be stable across restarts (persistent sessions are keyed by it) and
    /// unique per gateway. Default `shanhai-HOSTNAME`.
    pub client_id: Option<String>,
    /// User name for the broker (the embedded broker then requires it too).
    pub username: Option<String>,
    /// Environment variable holding the password; the password itself is
    /// never in the config.
    pub password_env: String,
    /// `mqtts://`: PEM file of the CA certificates to trust instead of the
    /// system's.
    pub ca_file: Option<PathBuf>,
    /// `mqtts://`: PEM client certificate (chain) for mutual TLS.
    pub client_cert_file: Option<PathBuf>,
    /// `mqtts://`: PEM private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// Keep-alive interval, in seconds.
    pub keep_alive_s: u64,
    /// How long the broker keeps a disconnected trigger's session (its
    /// subscription and queued QoS 1 messages), in seconds.
    pub session_expiry_s: u32,
    /// Largest payload received or published; bigger publishes from
    /// modules answer `too_large`.
    pub max_payload_bytes: usize,
    /// Messages `mqtt_publish` may queue before it answers `unavailable`.
    pub publish_queue: usize,
    /// The embedded broker's connection limit.
    pub max_connections: usize,
    /// Where the embedded broker logs the QoS 1 messages it owes persistent
    /// sessions, and the sessions, so that a crash or power loss loses
    /// nothing it acknowledged; empty keeps them in memory only.
    pub store_dir: PathBuf,
    /// Triggers, by name.
    pub triggers: BTreeMap<String, MqttTriggerConfig>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            listen_v5: SocketAddr::from(([127, 0, 0, 1], 0)),
            client_id: None,
            username: None,
            password_env: "SHANHAI_MQTT_PASSWORD".into(),
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            keep_alive_s: 30,
            session_expiry_s: 86_400,
            max_payload_bytes: 1 << 20,
            publish_queue: 1024,
            max_connections: 1000,
            store_dir: PathBuf::from(".shanhai/mqtt"),
            triggers: BTreeMap::new(),
        }
    }
}

/// `[mqtt.triggers.NAME]`: run a module on each message matching a filter.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTriggerConfig {
    /// Topic filter; `+` matches one level, a final `#` the rest.
    pub filter: String,
    /// The module that handles the messages.
    pub module: String,
    /// Where messages the module returns with an empty topic go: `{1}`,
    /// `{2}`, ... stand for the levels the wildcards matched, `{topic}` for
    /// the input topic.
    pub output_topic: Option<String>,
    /// Highest QoS to receive (0 or 1); QoS 1 messages are acknowledged
    /// after the module succeeded.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Share the subscription with other gateways (`$share/GROUP/filter`):
    /// each message goes to one of them.
    pub shared_group: Option<String>,
    /// Messages handled at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Which messages keep their arrival order: `topic` (messages on one
    /// topic), a template such as `{1}` (messages whose rendered key is
    /// equal, e.g. one device), or `none`. Default `topic`.
    pub order_by: Option<String>,
    /// QoS 0 messages waiting for a free slot; more are dropped (and
    /// counted).
    #[serde(default = "default_max_queue")]
    pub max_queue: usize,
    /// Deliveries to the module of one QoS 1 message before it goes to the
    /// dead-letter topic.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait before the first retry, in milliseconds; doubled for each one.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// Longest wait between retries, in milliseconds.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Where QoS 1 messages go after `max_attempts` failures (a template
    /// like `output_topic`). Default `shanhai/dead-letter/NAME`.
    pub dead_letter_topic: Option<String>,
}

fn default_qos() -> u8 {
    1
}

fn default_concurrency() -> usize {
    16
}

fn default_max_queue() -> usize {
    1000
}

fn default_max_attempts() -> u32 {
    5
}

fn default_retry_initial_ms() -> u64 {
    100
}

fn default_retry_max_ms() -> u64 {
    5_000
}

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BrokerAddress {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: bool,
}

/// Which messages of a trigger are handled one after another, in arrival
/// order: those with the same key. Different keys run concurrently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OrderBy {
    /// No order: every message runs as soon as a slot is free.
    Nothing,
    /// The input topic is the key.
    Topic,
    /// The rendered template is the key (`{1}`: the first wildcard's level).
    Template(TopicTemplate),
}

impl OrderBy {
    /// The key of a message on `topic` for a trigger on `filter`; `None`
    /// when messages are not ordered. Only a template needs the wildcards'
    /// levels; a topic the filter does not match (it is dropped) is its own
    /// key.
    pub(crate) fn key(&self, filter: &str, topic: &str) -> Option<String> {
        match self {
            Self::Nothing => None,
            Self::Topic => Some(topic.to_owned()),
            Self::Template(template) => Some(match super::topic::captures(filter, topic) {
                Some(captures) => template.render(topic, &captures),
                None => topic.to_owned(),
            }),
        }
    }
}

/// One trigger, validated.
#[derive(Debug, Clone)]
pub(crate) struct TriggerSettings {
    pub(crate) name: String,
    pub(crate) module: String,
    pub(crate) filter: String,
    pub(crate) output_topic: Option<TopicTemplate>,
    pub(crate) qos: u8,
    pub(crate) shared_group: Option<String>,
    pub(crate) concurrency: usize,
    pub(crate) order_by: OrderBy,
    pub(crate) max_queue: usize,
    pub(crate) max_attempts: u32,
    pub(crate) retry_initial: Duration,
    pub(crate) retry_max: Duration,
    pub(crate) dead_letter_topic: TopicTemplate,
}

impl TriggerSettings {
    /// The filter as subscribed: with the `$share/GROUP/` prefix when the
    /// trigger is shared.
    pub(crate) fn subscription(&self) -> String {
        match &self.shared_group {
            Some(group) => format!("$share/{group}/{}", self.filter),
            None => self.filter.clone(),
        }
    }

    /// The wait before retry number `retry` (1 for the first).
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.retry_initial
            .checked_mul(factor)
            .unwrap_or(self.retry_max)
            .min(self.retry_max)
    }
}

impl MqttConfig {
    /// The broker to connect to; `None` for the embedded one.
    pub(crate) fn broker_address(&self) -> Result<Option<BrokerAddress>, ConfigError> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let invalid = |why: &str| {
            Err(ConfigError::Invalid(format!(
                "mqtt.url: `{url}` {why} (write mqtt://host:port or mqtts://host:port)"
            )))
        };
        let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtt://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("mqtts://") {
            (true, rest)
        } else {
            return invalid("has an unknown scheme");
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('@') {
            return Err(ConfigError::Invalid(format!(
                "mqtt.url: credentials do not belong in the URL: set mqtt.username, and the password in the environment variable named by mqtt.password_env ({})",
                self.password_env
            )));
        }
        if rest.contains(['/', '?', '#']) {
            return invalid("has a path or query");
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((host, "")) => (host, default_port),
                Some((host, port)) => match port.strip_prefix(':').and_then(|p| p.parse().ok()) {
                    Some(port) => (host, port),
                    None => return invalid("has a bad port"),
                },
                None => return invalid("has an unclosed `[`"),
            },
            None => match rest.rsplit_once(':') {
                Some((host, port)) => match port.parse() {
                    Ok(port) => (host, port),
                    Err(_) => return invalid("has a bad port"),
                },
                None => (rest, default_port),
            },
        };
        if host.is_empty() || port == 0 {
            return invalid("needs a host and a port above 0");
        }
        Ok(Some(BrokerAddress {
            host: host.to_owned(),
            port,
            tls,
        }))
    }

    /// The client-id prefix.
    pub(crate) fn client_id(&self) -> String {
        self.client_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "gateway".into());
            format!("shanhai-{host}")
        })
    }

    /// The user name and password the embedded broker requires, if any.
    /// A broker reachable from other machines must require them: an open
    /// one lets anyone on the network publish to every trigger (and read
    /// every module's output), so that start is refused.
    pub(crate) fn embedded_credentials(&self) -> Result<Option<(String, String)>, ConfigError> {
        let password = std::env::var(&self.password_env).unwrap_or_default();
        let credentials = self.username.clone().map(|user| (user, password));
        let exposed = [("listen", self.listen), ("listen_v5", self.listen_v5)]
            .into_iter()
            .find(|(_, addr)| !addr.ip().is_loopback());
        match (exposed, &credentials) {
            (Some((key, addr)), None) => Err(ConfigError::Invalid(format!(
                "mqtt.{key} = {addr} is not a loopback address, and the embedded broker has no credentials: \
                 anyone on the network could publish and subscribe. Set mqtt.username, and the password in \
                 the environment variable named by mqtt.password_env ({}), or listen on 127.0.0.1",
                self.password_env
            ))),
            (Some((key, addr)), Some((_, password))) if password.is_empty() => {
                Err(ConfigError::Invalid(format!(
                    "mqtt.{key} = {addr} is not a loopback address, and the password for mqtt.username is empty: \
                     set it in the environment variable named by mqtt.password_env ({})",
                    self.password_env
                )))
            }
            _ => Ok(credentials),
        }
    }

    /// Every trigger, validated.
    pub(crate) fn triggers(&self) -> Result<Vec<TriggerSettings>, ConfigError> {
        self.triggers
            .iter()
            .map(|(name, trigger)| trigger.settings(name))
            .collect()
    }

    /// Checks every key; the messages name the key.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(format!("mqtt.{message}")));
        let url = self.broker_address()?;
        if let Some(id) = &self.client_id
            && (id.is_empty() || id.len() > 200 || id.contains(['/', '+', '#']))
        {
            return invalid(format!(
                "client_id: `{id}` must be 1 to 200 characters without /, + or #"
            ));
        }
        if url.as_ref().is_none_or(|u| !u.tls) {
            for (key, set) in [
                ("ca_file", self.ca_file.is_some()),
                ("client_cert_file", self.client_cert_file.is_some()),
                ("client_key_file", self.client_key_file.is_some()),
            ] {
                if set {
                    return invalid(format!("{key} needs an mqtts:// url"));
                }
            }
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return invalid("client_cert_file and client_key_file go together".into());
        }
        if self.keep_alive_s == 0 || self.keep_alive_s > 65_535 {
            return invalid("keep_alive_s must be 1 to 65535".into());
        }
        for (key, value) in [
            ("max_payload_bytes", self.max_payload_bytes),
            ("publish_queue", self.publish_queue),
            ("max_connections", self.max_connections),
        ] {
            if value == 0 {
                return invalid(format!("{key} must be positive"));
            }
        }
        if self.max_payload_bytes > 256 << 20 {
            return invalid("max_payload_bytes cannot exceed MQTT's 256 MiB".into());
        }
        if url.is_none() && self.listen.port() != 0 && self.listen == self.listen_v5 {
            return invalid("listen and listen_v5 must differ".into());
        }
        self.triggers()?;
        Ok(())
    }
}

impl MqttTriggerConfig {
    fn settings(&self, name: &str) -> Result<TriggerSettings, ConfigError> {
        let invalid = |message: String| {
            Err(ConfigError::Invalid(format!(
                "mqtt.triggers.{name}.{message}"
            )))
        };
        if !is_module_name(name) {
            return Err(ConfigError::Invalid(format!(
                "mqtt.triggers.{name}: a trigger name may contain only letters, digits, '-' and '_'"
            )));
        }
        if !is_module_name(&self.module) {
            return invalid(format!(
                "module: `{}` is not a module name (letters, digits, '-' and '_')",
                self.module
            ));
        }
        if let Some(why) = invalid_filter(&self.filter) {
            return invalid(format!("filter: `{}`: {why}", self.filter));
        }
        if self.qos > 1 {
            return invalid(format!("qos is {}: use 0 or 1", self.qos));
        }
        if let Some(group) = &self.shared_group
            && (group.is_empty() || group.contains(['/', '+', '#']))
        {
            return invalid(format!(
                "shared_group: `{group}` must be non-empty, without /, + or #"
            ));
        }
        for (key, value) in [
            ("concurrency", self.concurrency as u64),
            ("max_queue", self.max_queue as u64),
            ("max_attempts", u64::from(self.max_attempts)),
            ("retry_max_ms", self.retry_max_ms),
        ] {
            if value == 0 {
                return invalid(format!("{key} must be positive"));
            }
        }
        if self.concurrency > u16::MAX as usize / 2 {
            return invalid(format!("concurrency must be at most {}", u16::MAX / 2));
        }
        let n = wildcards(&self.filter);
        let output_topic = match &self.output_topic {
            Some(template) => Some(TopicTemplate::parse(template, n).map_err(|why| {
                ConfigError::Invalid(format!("mqtt.triggers.{name}.output_topic: {why}"))
            })?),
            None => None,
        };
        let order_by = match self.order_by.as_deref() {
            None | Some("topic") => OrderBy::Topic,
            Some("none") => OrderBy::Nothing,
            Some(template) => {
                OrderBy::Template(TopicTemplate::parse(template, n).map_err(|why| {
                    ConfigError::Invalid(format!(
                        "mqtt.triggers.{name}.order_by: {why} (or use `topic` or `none`)"
                    ))
                })?)
            }
        };
        let dead_letter = self
            .dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("shanhai/dead-letter/{name}"));
        let dead_letter_topic = TopicTemplate::parse(&dead_letter, n).map_err(|why| {
            ConfigError::Invalid(format!("mqtt.triggers.{name}.dead_letter_topic: {why}"))
        })?;
        Ok(TriggerSettings {
            name: name.to_owned(),
            module: self.module.clone(),
            filter: self.filter.clone(),
            output_topic,
            qos: self.qos,
            shared_group: self.shared_group.clone(),
            concurrency: self.concurrency,
            order_by,
            max_queue: self.max_queue,
            max_attempts: self.max_attempts,
            retry_initial: Duration::from_millis(self.retry_initial_ms),
            retry_max: Duration::from_millis(self.retry_max_ms),
            dead_letter_topic,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn an_exposed_embedded_broker_needs_credentials() {
        let mqtt = |text: &str| Config::parse(text).unwrap().mqtt.unwrap();
        let loopback = mqtt("[mqtt]\n");
        assert_eq!(loopback.embedded_credentials().unwrap(), None);

        let open = mqtt("[mqtt]\nlisten = \"0.0.0.0:1883\"\n");
        let message = open.embedded_credentials().unwrap_err().to_string();
        for key in [
            "mqtt.listen = 0.0.0.0:1883",
            "mqtt.username",
            "mqtt.password_env",
            "SHANHAI_MQTT_PASSWORD",
        ] {
            assert!(message.contains(key), "{key}: {message}");
        }
        let v5 = mqtt(
            "[mqtt]\nlisten_v5 = \"[::]:1884\"\nusername = \"dev\"\npassword_env = \"SHANHAI_TEST_UNSET_PASSWORD\"\n",
        );
        let message = v5.embedded_credentials().unwrap_err().to_string();
        assert!(
            message.contains("mqtt.listen_v5") && message.contains("empty"),
            "{message}"
        );

        // Any variable that is set stands in for the password here.
        let guarded = mqtt(
            "[mqtt]\nlisten = \"0.0.0.0:1883\"\nusername = \"dev\"\npassword_env = \"PATH\"\n",
        );
        let (user, password) = guarded.embedded_credentials().unwrap().unwrap();
        assert_eq!(user, "dev");
        assert_eq!(password, std::env::var("PATH").unwrap());
    }

    #[test]
    fn a_section_enables_the_embedded_broker() {
        let config = Config::parse("[mqtt]\n").unwrap();
        let mqtt = config.mqtt.unwrap();
        assert!(mqtt.enabled);
        assert_eq!(mqtt.broker_address().unwrap(), None);
        assert_eq!(mqtt.listen.to_string(), "127.0.0.1:1883");
        assert!(Config::parse("").unwrap().mqtt.is_none());
    }

    #[test]
    fn triggers_get_defaults() {
        let config = Config::parse(
            "[mqtt.triggers.t]\nfilter = \"in/+/x/#\"\nmodule = \"m\"\noutput_topic = \"out/{2}/{1}\"\n",
        )
        .unwrap();
        let triggers = config.mqtt.unwrap().triggers().unwrap();
        let t = &triggers[0];
        assert_eq!(t.qos, 1);
        assert_eq!(t.max_attempts, 5);
        assert_eq!(t.subscription(), "in/+/x/#");
        assert_eq!(
            t.dead_letter_topic.render("in/a/x/b", &["a", "b"]),
            "shanhai/dead-letter/t"
        );
        assert_eq!(t.backoff(1), Duration::from_millis(100));
        assert_eq!(t.backoff(3), Duration::from_millis(400));
        assert_eq!(t.backoff(40), Duration::from_secs(5));
    }

    #[test]
    fn messages_keep_their_order_by_topic_unless_told_otherwise() {
        let order = |extra: &str| {
            let config = Config::parse(&format!(
                "[mqtt.triggers.t]\nfilter = \"dev/+/x/#\"\nmodule = \"m\"\n{extra}"
            ))?;
            Ok::<_, ConfigError>(config.mqtt.unwrap().triggers()?[0].order_by.clone())
        };
        let filter = "dev/+/x/#";
        let topic = order("").unwrap();
        assert_eq!(topic, OrderBy::Topic);
        assert_eq!(topic.key(filter, "dev/7/x/a").as_deref(), Some("dev/7/x/a"));
        assert_eq!(
            order("order_by = \"none\"")
                .unwrap()
                .key(filter, "dev/7/x/a"),
            None
        );
        let device = order("order_by = \"{1}\"").unwrap();
        assert_eq!(device.key(filter, "dev/7/x/a").as_deref(), Some("7"));
        assert_eq!(device.key(filter, "dev/7/x/b").as_deref(), Some("7"));
        let err = order("order_by = \"{3}\"").unwrap_err().to_string();
        assert!(
            err.contains("mqtt.triggers.t.order_by") && err.contains("`topic` or `none`"),
            "{err}"
        );
    }

    #[test]
    fn shared_groups_prefix_the_subscription() {
        let config = Config::parse(
            "[mqtt.triggers.t]\nfilter = \"a/#\"\nmodule = \"m\"\nshared_group = \"g\"\n",
        )
        .unwrap();
        let t = &config.mqtt.unwrap().triggers().unwrap()[0];
        assert_eq!(t.subscription(), "$share/g/a/#");
    }

    #[test]
    fn urls_are_parsed() {
        let parse = |url: &str| {
            MqttConfig {
                url: Some(url.into()),
                ..MqttConfig::default()
            }
            .broker_address()
        };
        assert_eq!(
            parse("mqtt://broker.local:1884").unwrap(),
            Some(BrokerAddress {
                host: "broker.local".into(),
                port: 1884,
                tls: false
            })
        );
        let tls = parse("mqtts://[::1]").unwrap().unwrap();
        assert_eq!((tls.host.as_str(), tls.port, tls.tls), ("::1", 8883, true));
        assert_eq!(parse("mqtt://h").unwrap().unwrap().port, 1883);
        for bad in [
            "tcp://h:1",
            "mqtt://:1883",
            "mqtt://h:x",
            "mqtt://h:0",
            "mqtt://h/path",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let message = parse("mqtt://u:secret@h").unwrap_err().to_string();
        assert!(message.contains("password_env"), "{message}");
    }

    #[test]
    fn mistakes_name_their_key() {
        let cases = [
            ("[mqtt]\nlisten_v6 = 1\n", "listen_v6"),
            (
                "[mqtt.triggers.t]\nfilter = \"a/#/b\"\nmodule = \"m\"\n",
                "mqtt.triggers.t.filter",
            ),
            (
                "[mqtt.triggers.t]\nfilter = \"a\"\nmodule = \"m\"\nqos = 2\n",
                "mqtt.triggers.t.qos",
            ),
            (
                "[mqtt.triggers.t]\nfilter = \"a/+\"\nmodule = \"m\"\noutput_topic = \"o/{2}\"\n",
                "mqtt.triggers.t.output_topic",
            ),
            (
                "[mqtt.triggers.t]\nfilter = \"a\"\nmodule = \"m\"\nfliter = \"a\"\n",
                "fliter",
            ),
            (
                "[mqtt.triggers.t]\nfilter = \"a\"\nmodule = \"m\"\nconcurrency = 0\n",
                "mqtt.triggers.t.concurrency",
            ),
            (
                "[mqtt.triggers.t]\nfilter = \"a\"\nmodule = \"m\"\nshared_group = \"a/b\"\n",
                "mqtt.triggers.t.shared_group",
            ),
            ("[mqtt]\nca_file = \"ca.pem\"\n", "mqtt.ca_file"),
            ("[mqtt]\nmax_payload_bytes = 0\n", "mqtt.max_payload_bytes"),
            ("[mqtt]\nurl = \"http://x\"\n", "mqtt.url"),
        ];
        for (text, key) in cases {
            let message = err(text);
            assert!(message.contains(key), "{text}: {message}");
        }
    }
}
