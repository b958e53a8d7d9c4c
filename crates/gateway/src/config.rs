//! The gateway's TOML configuration. Only the gateway and the CLI know this
//! format; the runtime receives plain [`ModuleSettings`].
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8080"
//! modules_dir = "./modules"
//!
//! [defaults]           # limits for every module
//! deadline_ms = 5000
//!
//! [modules.hello]
//! file = "hello.wasm"  # relative to modules_dir; default NAME.wasm
//! routes = ["/greet", "/greet/*"]
//! max_instances = 4
//! [modules.hello.vars]
//! greeting = "Nǐ hǎo"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use serde::{Deserialize, Serialize};
use shanhai_runtime::{
    CompileWorker, Compiler, MemoryStrategy, ModuleLimits, ModuleSettings, RuntimeConfig,
};

pub use crate::admin::DashboardConfig;
use crate::canary::CanaryPolicy;
use crate::listener::ListenerSettings;
pub use crate::mqtt::config::{MqttConfig, MqttTriggerConfig};
pub use crate::names::{is_host_name, is_module_name};
pub use crate::signing::SigningConfig;
pub use crate::state::SqliteConfig;
pub use crate::tcp::TcpConfig;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (the message names the key).
    #[error("{path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The parser's message, with line, column and key.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener and folders.
    #[serde(default)]
    pub server: ServerConfig,
    /// Engine-wide runtime settings.
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// Limits applied to every module unless it overrides them.
    #[serde(default)]
    pub defaults: LimitsConfig,
    /// Per-module settings, by module name.
    #[serde(default)]
    pub modules: BTreeMap<String, ModuleConfig>,
    /// The admin listener (HTTP and JSON-RPC over a Unix socket).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Module signatures.
    #[serde(default)]
    pub signing: SigningConfig,
    /// How canary releases are judged.
    #[serde(default)]
    pub canary: CanaryConfig,
    /// The WebSocket trigger.
    #[serde(default)]
    pub websocket: WebSocketConfig,
    /// Timers, by name.
    #[serde(default)]
    pub timers: BTreeMap<String, TimerConfig>,
    /// TCP stream listeners, by name.
    #[serde(default)]
    pub tcp: BTreeMap<String, TcpConfig>,
    /// MQTT: the client, the embedded broker and the triggers; off unless
    /// the section exists.
    pub mqtt: Option<MqttConfig>,
    /// Where modules' state lives.
    #[serde(default)]
    pub state: StateConfig,
    /// The key-value store behind `kv_*`.
    #[serde(default)]
    pub kv: KvConfig,
    /// The SQLite databases behind `sql_exec`.
    #[serde(default)]
    pub sqlite: SqliteConfig,
    /// Outbound HTTP from modules (`http_fetch`).
    #[serde(default)]
    pub outbound_http: OutboundHttpConfig,
    /// GPIO through the Linux sysfs interface.
    #[serde(default)]
    pub gpio: GpioConfig,
}

/// `[state]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Folder of the embedded KV store and the SQLite databases.
    pub data_dir: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".shanhai/data"),
        }
    }
}

/// Which KV backend serves `kv_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KvBackend {
    /// A redb file in `state.data_dir` (one gateway).
    Embedded,
    /// A Redis server (several gateways sharing state).
    Redis,
}

/// `[kv]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KvConfig {
    /// `embedded` (default) or `redis`.
    pub backend: KvBackend,
    /// The Redis server, e.g. `redis://127.0.0.1:6379/0`. Prefer `redis_url_env`
    /// when the URL holds a password.
    pub redis_url: Option<String>,
    /// Environment variable holding the Redis URL.
    pub redis_url_env: Option<String>,
    /// Bytes of the in-process LRU cache in front of the backend; 0 disables it.
    pub cache_bytes: usize,
    /// Embedded backend: bytes of the store file's pages held in memory
    /// (redb's page cache and write buffer).
    pub store_cache_bytes: usize,
    /// With Redis: the longest a cached value is served after it was read,
    /// in milliseconds (another gateway may have changed it since).
    pub redis_cache_ttl_ms: u64,
    /// Largest value a module may store.
    pub max_value_bytes: usize,
}

impl Default for KvConfig {
    fn default() -> Self {
        let settings = shanhai_state::KvSettings::default();
        Self {
            backend: KvBackend::Embedded,
            redis_url: None,
            redis_url_env: None,
            cache_bytes: settings.cache_bytes,
            store_cache_bytes: settings.store_cache_bytes,
            redis_cache_ttl_ms: settings.redis_cache_ttl.as_millis() as u64,
            max_value_bytes: settings.max_value_bytes,
        }
    }
}

impl KvConfig {
    /// The store's settings.
    pub fn settings(&self) -> shanhai_state::KvSettings {
        shanhai_state::KvSettings {
            cache_bytes: self.cache_bytes,
            store_cache_bytes: self.store_cache_bytes,
            redis_cache_ttl: Duration::from_millis(self.redis_cache_ttl_ms),
            max_value_bytes: self.max_value_bytes,
            ..shanhai_state::KvSettings::default()
        }
    }

    /// The Redis URL, from `redis_url_env` or `redis_url`.
    pub fn redis_url(&self) -> Result<String, ConfigError> {
        if let Some(var) = &self.redis_url_env {
            return std::env::var(var).map_err(|_| {
                ConfigError::Invalid(format!(
                    "kv.redis_url_env: the environment variable {var} is not set"
                ))
            });
        }
        self.redis_url.clone().ok_or_else(|| {
            ConfigError::Invalid(
                "kv.backend = \"redis\" needs kv.redis_url or kv.redis_url_env".into(),
            )
        })
    }
}

/// `[outbound_http]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundHttpConfig {
    /// Longest a request may take, connection included, in milliseconds
    /// (the module's deadline still applies).
    pub timeout_ms: u64,
    /// Largest response body a module may receive.
    pub max_response_bytes: usize,
}

impl Default for OutboundHttpConfig {
    fn default() -> Self {
        let settings = shanhai_runtime::OutboundHttpSettings::default();
        Self {
            timeout_ms: settings.timeout.as_millis() as u64,
            max_response_bytes: settings.max_response_bytes,
        }
    }
}

/// `[gpio]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpioConfig {
    /// The sysfs GPIO folder (`export`, `gpioN/direction`, `gpioN/value`).
    pub sysfs_root: PathBuf,
}

impl Default for GpioConfig {
    fn default() -> Self {
        Self {
            sysfs_root: PathBuf::from("/sys/class/gpio"),
        }
    }
}

/// `[modules.NAME.grants]`: what the module's host calls may touch. Each
/// capability is denied unless granted here.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrantsConfig {
    /// The module's own KV namespace.
    pub kv: bool,
    /// Shared KV stores, by name.
    pub kv_stores: Vec<String>,
    /// The module's own SQLite database.
    pub sqlite: bool,
    /// Shared SQLite databases, by name.
    pub sqlite_databases: Vec<String>,
    /// Hosts outbound HTTP may reach: `host` (ports 80 and 443),
    /// `host:port`, `host:*` (any port), and `*.domain` in place of a host
    /// for its subdomains. A name never reaches a loopback, private or
    /// link-local address; an entry naming such an address does.
    pub http: Vec<String>,
    /// Topic filters `mqtt_publish` may publish to.
    pub mqtt_publish: Vec<String>,
    /// GPIO pins the module may read.
    pub gpio_in: Vec<u32>,
    /// GPIO pins the module may drive.
    pub gpio_out: Vec<u32>,
}

impl GrantsConfig {
    fn grants(&self) -> shanhai_runtime::Grants {
        shanhai_runtime::Grants {
            kv: self.kv,
            kv_stores: self.kv_stores.clone(),
            sqlite: self.sqlite,
            sqlite_databases: self.sqlite_databases.clone(),
            http: self.http.clone(),
            mqtt_publish: self.mqtt_publish.clone(),
            gpio_in: self.gpio_in.clone(),
            gpio_out: self.gpio_out.clone(),
        }
    }

    fn validate(&self, module: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| {
            Err(ConfigError::Invalid(format!(
                "modules.{module}.grants.{key}: {message}"
            )))
        };
        for (key, names) in [
            ("kv_stores", &self.kv_stores),
            ("sqlite_databases", &self.sqlite_databases),
        ] {
            if let Some(bad) = names.iter().find(|n| !is_module_name(n)) {
                return invalid(
                    key,
                    format!("`{bad}`: a name may contain only letters, digits, '-' and '_'"),
                );
            }
        }
        for filter in &self.mqtt_publish {
            if let Some(why) = topic_filter_error(filter) {
                return invalid("mqtt_publish", format!("`{filter}`: {why}"));
            }
        }
        for entry in &self.http {
            if let Some(why) = shanhai_runtime::http_grant_error(entry) {
                return invalid("http", why);
            }
        }
        Ok(())
    }
}

/// Why `filter` is not a valid MQTT topic filter, if it is not.
pub fn topic_filter_error(filter: &str) -> Option<&'static str> {
    if filter.is_empty() {
        return Some("a topic filter cannot be empty");
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Some("`#` must be a whole level and the last one");
        }
        if level.contains('+') && *level != "+" {
            return Some("`+` must be a whole level");
        }
    }
    None
}

/// Expands `${VAR}` references to environment variables in a secret's value.
fn expand_env(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err("an unterminated `${`".into());
        };
        let var = &after[..end];
        match std::env::var(var) {
            Ok(v) => out.push_str(&v),
            Err(_) => return Err(format!("the environment variable {var} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `[timers.NAME]`: run a module on a schedule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimerConfig {
    /// The module to run.
    pub module: String,
    /// Run every this many milliseconds, at a fixed rate.
    pub every_ms: Option<u64>,
    /// Or: a cron expression with seconds, in UTC
    /// (`sec min hour day-of-month month day-of-week`).
    pub cron: Option<String>,
    /// Delay each run by a random amount below this many milliseconds.
    #[serde(default)]
    pub jitter_ms: u64,
    /// Passed to the module with every run.
    #[serde(default)]
    pub payload: String,
    /// Start a run even while the previous one is still going.
    #[serde(default)]
    pub overlap: bool,
}

/// `[websocket]`: limits and heartbeats of WebSocket connections.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketConfig {
    /// Connections the process holds at most; upgrades beyond get 503.
    pub max_connections: usize,
    /// Connections one module holds at most (see also
    /// `[modules.NAME.websocket] max_connections`).
    pub max_connections_per_module: usize,
    /// Largest message, either direction; a client's bigger one closes it
    /// with 1009.
    pub max_message_bytes: usize,
    /// Bytes queued for one connection before it is closed (1008) as a
    /// consumer that cannot keep up.
    pub send_queue_bytes: usize,
    /// Messages queued for one connection before the same.
    pub send_queue_messages: usize,
    /// How often each connection is pinged, in milliseconds.
    pub ping_interval_ms: u64,
    /// A peer silent this long (no pong, no data) is evicted, in
    /// milliseconds.
    pub peer_timeout_ms: u64,
    /// A connection without a data message this long is closed, in
    /// milliseconds; 0 disables it.
    pub idle_timeout_ms: u64,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        let settings = crate::ws::WsSettings::default();
        Self {
            max_connections: settings.max_connections,
            max_connections_per_module: settings.max_connections_per_module,
            max_message_bytes: settings.max_message_bytes,
            send_queue_bytes: settings.send_queue_bytes,
            send_queue_messages: settings.send_queue_messages,
            ping_interval_ms: settings.ping_interval.as_millis() as u64,
            peer_timeout_ms: settings.peer_timeout.as_millis() as u64,
            idle_timeout_ms: 0,
        }
    }
}

impl WebSocketConfig {
    /// The trigger's settings, once validated.
    pub(crate) fn settings(&self) -> Result<crate::ws::WsSettings, ConfigError> {
        let positive = [
            ("max_connections", self.max_connections as u64),
            (
                "max_connections_per_module",
                self.max_connections_per_module as u64,
            ),
            ("max_message_bytes", self.max_message_bytes as u64),
            ("send_queue_bytes", self.send_queue_bytes as u64),
            ("send_queue_messages", self.send_queue_messages as u64),
            ("ping_interval_ms", self.ping_interval_ms),
            ("peer_timeout_ms", self.peer_timeout_ms),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Invalid(format!(
                "websocket.{key} must be positive"
            )));
        }
        if self.peer_timeout_ms <= self.ping_interval_ms {
            return Err(ConfigError::Invalid(
                "websocket.peer_timeout_ms must exceed ping_interval_ms, or every peer is evicted before it can answer a ping".into(),
            ));
        }
        Ok(crate::ws::WsSettings {
            max_connections: self.max_connections,
            max_connections_per_module: self.max_connections_per_module,
            max_message_bytes: self.max_message_bytes,
            send_queue_bytes: self.send_queue_bytes,
            send_queue_messages: self.send_queue_messages,
            ping_interval: Duration::from_millis(self.ping_interval_ms),
            peer_timeout: Duration::from_millis(self.peer_timeout_ms),
            idle_timeout: (self.idle_timeout_ms > 0)
                .then(|| Duration::from_millis(self.idle_timeout_ms)),
            ..crate::ws::WsSettings::default()
        })
    }
}

/// `[modules.NAME.websocket]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleWebSocket {
    /// Paths where the module accepts upgrades; default `/NAME/ws`.
    pub routes: Option<Vec<String>>,
    /// Connections this module holds at most.
    pub max_connections: Option<usize>,
}

/// `[canary]`: when a canary is rolled back by itself.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CanaryConfig {
    /// Length of the sliding window, in seconds.
    pub window_s: u64,
    /// Highest tolerated share of server errors, as a fraction (0.005 is
    /// 0.5%).
    pub max_error_rate: f64,
    /// Requests each version must serve in the window before the canary is
    /// judged.
    pub min_requests: u64,
    /// Highest tolerated ratio of the canary's p95 latency to the stable
    /// version's.
    pub latency_factor: f64,
    /// The stable p95 is taken as at least this many milliseconds.
    pub latency_floor_ms: u64,
    /// The request header whose value pins a client to one version.
    pub sticky_header: String,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        let policy = CanaryPolicy::default();
        Self {
            window_s: policy.window.as_secs(),
            max_error_rate: policy.max_error_rate,
            min_requests: policy.min_requests,
            latency_factor: policy.latency_factor,
            latency_floor_ms: policy.latency_floor.as_millis() as u64,
            sticky_header: policy.sticky_header.as_str().to_owned(),
        }
    }
}

impl CanaryConfig {
    /// The policy, once validated.
    pub fn policy(&self) -> Result<CanaryPolicy, ConfigError> {
        let invalid = |message: &str| Err(ConfigError::Invalid(format!("canary.{message}")));
        if self.window_s == 0 {
            return invalid("window_s must be positive");
        }
        if !(0.0..1.0).contains(&self.max_error_rate) {
            return invalid("max_error_rate is a fraction: at least 0 and below 1 (0.005 is 0.5%)");
        }
        if self.latency_factor.is_nan() || self.latency_factor < 1.0 {
            return invalid("latency_factor must be at least 1");
        }
        let Ok(sticky_header) = HeaderName::try_from(self.sticky_header.as_str()) else {
            return invalid("sticky_header is not a valid header name");
        };
        Ok(CanaryPolicy {
            window: Duration::from_secs(self.window_s),
            max_error_rate: self.max_error_rate,
            min_requests: self.min_requests,
            latency_factor: self.latency_factor,
            latency_floor: Duration::from_millis(self.latency_floor_ms),
            sticky_header,
        })
    }
}

/// `[modules.NAME.canary]`: a canary loaded when the gateway starts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleCanary {
    /// The canary's file, relative to `modules_dir`. It is not served as a
    /// module of its own.
    pub file: PathBuf,
    /// Its share of the module's traffic, in percent (0.01 to 100).
    pub weight: f64,
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve the admin API at all.
    pub enabled: bool,
    /// Address of the admin HTTP listener. Without a token it must be a
    /// loopback address.
    pub listen: SocketAddr,
    /// Bearer token for the admin API. Prefer `token_env` for real secrets.
    pub token: Option<String>,
    /// Environment variable holding the bearer token.
    pub token_env: String,
    /// With neither of the above, on a loopback listener: the file holding
    /// the token, generated (mode 0600) at first start and read by the
    /// CLI. Empty runs a loopback listener without a token.
    pub token_file: PathBuf,
    /// Host names the admin API may be reached by, besides IP addresses
    /// and `localhost`: any other `Host` is refused (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Path of the JSON-RPC 2.0 Unix socket; empty disables it.
    pub socket: PathBuf,
    /// A connection whose request head has not arrived this long after it
    /// opened (or after the previous response) is closed, in milliseconds.
    pub header_timeout_ms: u64,
    /// A request body (an upload) must arrive whole within this long of
    /// its head, in milliseconds; otherwise 408 `body_timeout`.
    pub body_timeout_ms: u64,
    /// A connection with no request in flight and no byte moving this long
    /// is closed, in milliseconds.
    pub keepalive_timeout_ms: u64,
    /// Connections held at most; more get 503 and are closed. Default: 64,
    /// or an eighth of `RLIMIT_NOFILE` when that is fewer.
    pub max_connections: Option<usize>,
    /// Connections held at most from one address. Default: a quarter of
    /// `max_connections`.
    pub max_connections_per_ip: Option<usize>,
    /// `[admin.dashboard]`: the web dashboard at `/ui/`.
    pub dashboard: DashboardConfig,
}

impl AdminConfig {
    /// The admin listener's connection settings.
    pub(crate) fn listener(&self) -> ListenerSettings {
        ListenerSettings {
            header_timeout_ms: self.header_timeout_ms,
            body_timeout_ms: self.body_timeout_ms,
            keepalive_timeout_ms: self.keepalive_timeout_ms,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            token: None,
            token_env: "SHANHAI_ADMIN_TOKEN".into(),
            token_file: PathBuf::from(".shanhai/admin.token"),
            allowed_hosts: Vec::new(),
            socket: PathBuf::from(".shanhai/admin.sock"),
            header_timeout_ms: 10_000,
            // Uploads are up to 64 MiB.
            body_timeout_ms: 120_000,
            keepalive_timeout_ms: 60_000,
            max_connections: None,
            max_connections_per_ip: None,
            dashboard: DashboardConfig::default(),
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the HTTP listener.
    pub listen: SocketAddr,
    /// Folder whose `NAME.wasm` files are served at `/NAME`.
    pub modules_dir: PathBuf,
    /// Folder of the compiled-code cache; empty disables it. Created with
    /// mode 0700; a folder others can write to is refused.
    pub cache_dir: PathBuf,
    /// The key authenticating cache entries (created with mode 0600 if
    /// missing); empty means `CACHE_DIR.key`, beside the folder.
    pub cache_key_file: PathBuf,
    /// Reload modules when their files in `modules_dir` change.
    pub watch: bool,
    /// On shutdown, how long requests in flight may take to finish.
    pub drain_timeout_ms: u64,
    /// How long a request for a module that is still loading (at start)
    /// waits for it before it is answered 503 `loading`.
    pub loading_wait_ms: u64,
    /// A connection whose request head has not arrived this long after it
    /// opened (or after the previous response) is closed, in milliseconds.
    pub header_timeout_ms: u64,
    /// A request body must arrive whole within this long of its head, in
    /// milliseconds; otherwise 408 `body_timeout` and the connection closes.
    pub body_timeout_ms: u64,
    /// A connection with no request in flight and no byte moving this long
    /// is closed, in milliseconds (an upgraded WebSocket is not: see
    /// `[websocket]`).
    pub keepalive_timeout_ms: u64,
    /// Connections held at most, WebSocket ones included; more get 503 and
    /// are closed. Default: half of `RLIMIT_NOFILE` (whose soft limit is
    /// raised to the hard one at start).
    pub max_connections: Option<usize>,
    /// Connections held at most from one address. Default: a quarter of
    /// `max_connections`.
    pub max_connections_per_ip: Option<usize>,
}

impl ServerConfig {
    /// The HTTP listener's connection settings.
    pub(crate) fn listener(&self) -> ListenerSettings {
        ListenerSettings {
            header_timeout_ms: self.header_timeout_ms,
            body_timeout_ms: self.body_timeout_ms,
            keepalive_timeout_ms: self.keepalive_timeout_ms,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            modules_dir: PathBuf::from("modules"),
            cache_dir: PathBuf::from(".shanhai/cache"),
            cache_key_file: PathBuf::new(),
            watch: true,
            drain_timeout_ms: 10_000,
            loading_wait_ms: 5_000,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            keepalive_timeout_ms: 60_000,
            max_connections: None,
            max_connections_per_ip: None,
        }
    }
}

/// `[runtime]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    /// Meter fuel so that per-module `fuel` limits apply (slower).
    pub fuel: bool,
    /// Instance slots shared by all modules.
    pub total_instances: u32,
    /// Epoch tick in milliseconds: deadline granularity.
    pub epoch_tick_ms: u64,
    /// KiB of each linear memory kept resident when a pool slot is reused:
    /// faster fresh instances (command modules) for more resident memory.
    pub memory_keep_resident_kb: usize,
    /// How linear memories are laid out: `auto` (from the address space
    /// the process has), `guarded`, `bounded` or `on-demand`.
    pub memory_strategy: String,
    /// How long creating and initialising one instance may take (at load
    /// and when a pool grows), time blocked in host calls included.
    pub init_deadline_ms: u64,
    /// Modules compiled at once; 0 means the runtime's default (1: each
    /// compile already uses every core).
    pub compile_concurrency: usize,
    /// What runs module code: `auto` (Cranelift's native code where it has
    /// a backend, x86-64 and aarch64; the Pulley interpreter on 32-bit
    /// ARM), `cranelift`, or `pulley` (the interpreter anywhere: slower,
    /// for comparing with armv7).
    pub compiler: String,
    /// Page a module's compiled code out of memory while the module is
    /// dormant (no instance, no event for `idle_timeout_ms`, or none since
    /// it loaded); its next event reads the code back from the cache file.
    pub release_idle_code: bool,
    /// Compile modules in a child process (when the compile cache is on):
    /// the compile's memory goes back to the system when it exits, and a
    /// box running short of memory loses one compile, not the gateway.
    pub compile_in_child: bool,
    /// How to start that child: set by `shanhai serve` to the running
    /// executable, never read from a file.
    #[serde(skip)]
    pub compile_worker: Option<CompileWorker>,
    /// Threads that run the listeners, the triggers and module code; 0
    /// means one per core. Read once, at start. Fewer threads than cores
    /// leave the rest to what shares the box (a broker, a database): each
    /// hand-off between the gateway's tasks then stays on its thread
    /// instead of waking another (docs/benchmarks.md, "MQTT through a
    /// module").
    pub worker_threads: usize,
}

/// Most `runtime.worker_threads`: beyond any core count a box has.
const MAX_WORKER_THREADS: usize = 1024;

impl Default for RuntimeSection {
    fn default() -> Self {
        let defaults = RuntimeConfig::default();
        Self {
            fuel: defaults.consume_fuel,
            total_instances: defaults.total_instances,
            epoch_tick_ms: defaults.epoch_tick.as_millis() as u64,
            memory_keep_resident_kb: defaults.memory_keep_resident >> 10,
            memory_strategy: defaults.memory_strategy.as_str().to_owned(),
            init_deadline_ms: defaults.init_deadline.as_millis() as u64,
            compile_concurrency: 0,
            compiler: defaults.compiler.as_str().to_owned(),
            release_idle_code: defaults.release_idle_code,
            compile_in_child: true,
            compile_worker: None,
            worker_threads: 0,
        }
    }
}

/// Limits; every field is optional and falls back to the level above.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Wall-clock deadline per event, in milliseconds.
    pub deadline_ms: Option<u64>,
    /// Linear-memory cap in MiB.
    pub max_memory_mb: Option<usize>,
    /// Fuel per event (needs `runtime.fuel = true`).
    pub fuel: Option<u64>,
    /// Largest accepted request body in bytes.
    pub max_request_bytes: Option<usize>,
    /// Largest response in bytes.
    pub max_response_bytes: Option<usize>,
    /// Most live instances.
    pub max_instances: Option<usize>,
    /// Most events waiting for an instance.
    pub max_queue: Option<usize>,
    /// Longest wait for an instance, in milliseconds.
    pub queue_timeout_ms: Option<u64>,
    /// Instances kept initialised even when idle.
    pub min_instances: Option<usize>,
    /// Events an instance serves before it is recycled; 0 means no limit.
    pub max_requests_per_instance: Option<u64>,
    /// Idle instances above `min_instances` are dropped after this long, in
    /// milliseconds.
    pub idle_timeout_ms: Option<u64>,
    /// How long an event waits for a busy instance before the pool grows,
    /// in milliseconds.
    pub scale_up_wait_ms: Option<u64>,
    /// Log lines a second the module may write (log import, stdout and
    /// stderr together); past it lines are dropped, counted in
    /// `shanhai_log_lines_dropped_total` and summed up in one log line a
    /// second. 0: no limit.
    pub log_lines_per_second: Option<u32>,
    /// Log lines the module may write at once above that rate.
    pub log_burst: Option<u32>,
}

/// `[modules.NAME]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleConfig {
    /// The module file, relative to `modules_dir`; default `NAME.wasm`.
    pub file: Option<PathBuf>,
    /// Extra routes: exact paths, or prefixes ending in `/*`. With `hosts`,
    /// the module's only routes on those hosts.
    #[serde(default)]
    pub routes: Vec<String>,
    /// Host names this module alone serves (`Host` header, port ignored),
    /// giving it a web origin of its own. On them it answers every path (or
    /// only its `routes`), and it is not served on the shared origin.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Config variables readable by the guest.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Secrets readable by the guest like variables; `${VAR}` expands to
    /// environment variable VAR. Never logged or shown by the admin API.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Capabilities granted to the module.
    #[serde(default)]
    pub grants: GrantsConfig,
    /// A canary of this module, started with the gateway.
    pub canary: Option<ModuleCanary>,
    /// The module's WebSocket routes and limit.
    pub websocket: Option<ModuleWebSocket>,
    /// Limits overriding `[defaults]`.
    #[serde(flatten)]
    pub limits: LimitsConfig,
}

/// Where a module is served over HTTP (see [`Config::http_routes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleRoutes {
    /// The module's own hosts; empty for the shared origin.
    pub hosts: Vec<String>,
    /// Exact paths, or prefixes ending in `/*`.
    pub routes: Vec<String>,
}

impl ModuleRoutes {
    /// The routes as the admin API lists them: `HOST/PATH` on a module's
    /// own hosts.
    pub fn listed(&self) -> Vec<String> {
        if self.hosts.is_empty() {
            return self.routes.clone();
        }
        self.hosts
            .iter()
            .flat_map(|host| {
                self.routes
                    .iter()
                    .map(move |route| format!("{host}{route}"))
            })
            .collect()
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|err| match err {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: err.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let mut hosts_seen = BTreeMap::new();
        for (name, module) in &self.modules {
            if !is_module_name(name) {
                return Err(ConfigError::Invalid(format!(
                    "modules.{name}: a module name may contain only letters, digits, '-' and '_'"
                )));
            }
            for route in &module.routes {
                if !route.starts_with('/') || route.contains("/api/exec") {
                    return Err(ConfigError::Invalid(format!(
                        "modules.{name}.routes: `{route}` must start with '/' and must not shadow /api/exec"
                    )));
                }
            }
            for host in &module.hosts {
                if !is_host_name(host) {
                    return Err(ConfigError::Invalid(format!(
                        "modules.{name}.hosts: `{host}` is not a host name: lower-case letters, digits, '-' and '.', without a port or scheme"
                    )));
                }
                if let Some(owner) = hosts_seen.insert(host.as_str(), name.as_str()) {
                    return Err(ConfigError::Invalid(format!(
                        "modules.{name}.hosts: `{host}` is already served by module `{owner}`; a host belongs to one module"
                    )));
                }
            }
            module.grants.validate(name)?;
            self.settings_for(name)?;
            if let Some(canary) = &module.canary {
                weight_basis_points(canary.weight).map_err(|message| {
                    ConfigError::Invalid(format!("modules.{name}.canary.weight: {message}"))
                })?;
            }
        }
        self.canary.policy()?;
        self.websocket.settings()?;
        self.server.listener().validate("server")?;
        self.admin.listener().validate("admin")?;
        for (name, timer) in &self.timers {
            if !is_module_name(name) || !is_module_name(&timer.module) {
                return Err(ConfigError::Invalid(format!(
                    "timers.{name}: timer and module names may contain only letters, digits, '-' and '_'"
                )));
            }
            crate::timer::Schedule::of(name, timer)?;
        }
        for (name, tcp) in &self.tcp {
            tcp.validate(name)?;
        }
        if let Some(mqtt) = &self.mqtt {
            mqtt.validate()?;
        }
        for (name, module) in &self.modules {
            for route in module
                .websocket
                .iter()
                .flat_map(|w| w.routes.iter().flatten())
            {
                if !route.starts_with('/') || route.ends_with("/*") {
                    return Err(ConfigError::Invalid(format!(
                        "modules.{name}.websocket.routes: `{route}` must be an exact path starting with '/'"
                    )));
                }
            }
        }
        crate::signing::parse_trusted_keys(&self.signing)
            .map_err(|err| ConfigError::Invalid(err.to_string()))?;
        if self.kv.backend == KvBackend::Redis {
            self.kv.redis_url()?;
        }
        self.sqlite.limits()?;
        if self.outbound_http.timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "outbound_http.timeout_ms must be positive".into(),
            ));
        }
        if self.runtime.total_instances == 0
            || self.runtime.epoch_tick_ms == 0
            || self.runtime.init_deadline_ms == 0
        {
            return Err(ConfigError::Invalid(
                "runtime.total_instances, runtime.epoch_tick_ms and runtime.init_deadline_ms must be positive".into(),
            ));
        }
        if self.runtime.worker_threads > MAX_WORKER_THREADS {
            return Err(ConfigError::Invalid(format!(
                "runtime.worker_threads: {} is more than {MAX_WORKER_THREADS}; 0 means one per core",
                self.runtime.worker_threads
            )));
        }
        self.memory_strategy()?;
        self.compiler()?;
        Ok(())
    }

    fn compiler(&self) -> Result<Compiler, ConfigError> {
        Compiler::parse(&self.runtime.compiler).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "runtime.compiler: `{}` is not one of {}",
                self.runtime.compiler,
                Compiler::NAMES.join(", ")
            ))
        })
    }

    fn memory_strategy(&self) -> Result<MemoryStrategy, ConfigError> {
        MemoryStrategy::parse(&self.runtime.memory_strategy).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "runtime.memory_strategy: `{}` is not one of {}",
                self.runtime.memory_strategy,
                MemoryStrategy::NAMES.join(", ")
            ))
        })
    }

    /// The largest memory cap of any module: `[defaults]` and every
    /// `[modules.NAME]`.
    fn largest_memory_cap(&self) -> usize {
        std::iter::once("")
            .chain(self.modules.keys().map(String::as_str))
            .filter_map(|name| self.settings_for(name).ok())
            .map(|settings| settings.limits.max_memory_bytes)
            .max()
            .unwrap_or(ModuleLimits::default().max_memory_bytes)
    }

    /// The runtime settings.
    pub fn runtime_config(&self) -> RuntimeConfig {
        RuntimeConfig {
            cache_dir: (!self.server.cache_dir.as_os_str().is_empty())
                .then(|| self.server.cache_dir.clone()),
            cache_key_file: (!self.server.cache_key_file.as_os_str().is_empty())
                .then(|| self.server.cache_key_file.clone()),
            consume_fuel: self.runtime.fuel,
            total_instances: self.runtime.total_instances,
            epoch_tick: Duration::from_millis(self.runtime.epoch_tick_ms),
            memory_keep_resident: self.runtime.memory_keep_resident_kb << 10,
            memory_strategy: self.memory_strategy().unwrap_or_default(),
            compiler: self.compiler().unwrap_or_default(),
            largest_memory_cap: self.largest_memory_cap(),
            init_deadline: Duration::from_millis(self.runtime.init_deadline_ms),
            compile_concurrency: match self.runtime.compile_concurrency {
                0 => RuntimeConfig::default().compile_concurrency,
                n => n,
            },
            release_idle_code: self.runtime.release_idle_code,
            compile_worker: self
                .runtime
                .compile_worker
                .clone()
                .filter(|_| self.runtime.compile_in_child),
            // Measured, not offered: docs/benchmarks.md, "Go guests".
            codegen: Vec::new(),
        }
    }

    /// The settings of module `name`: its section over `[defaults]` over the
    /// built-in defaults.
    pub fn settings_for(&self, name: &str) -> Result<ModuleSettings, ConfigError> {
        let module = self.modules.get(name);
        let own = module.map(|m| &m.limits);
        let pick =
            |f: fn(&LimitsConfig) -> Option<u64>| own.and_then(f).or_else(|| f(&self.defaults));
        let pick_size =
            |f: fn(&LimitsConfig) -> Option<usize>| own.and_then(f).or_else(|| f(&self.defaults));
        let base = ModuleLimits::default();
        let limits = ModuleLimits {
            deadline: pick(|l| l.deadline_ms).map_or(base.deadline, Duration::from_millis),
            // Saturating: on a 32-bit host a shift would wrap (4096 MiB
            // is 0 there).
            max_memory_bytes: pick_size(|l| l.max_memory_mb)
                .map_or(base.max_memory_bytes, |mb| mb.saturating_mul(1 << 20)),
            fuel: pick(|l| l.fuel).or(base.fuel),
            max_request_bytes: pick_size(|l| l.max_request_bytes).unwrap_or(base.max_request_bytes),
            max_response_bytes: pick_size(|l| l.max_response_bytes)
                .unwrap_or(base.max_response_bytes),
            max_instances: pick_size(|l| l.max_instances).unwrap_or(base.max_instances),
            max_queue: pick_size(|l| l.max_queue).unwrap_or(base.max_queue),
            queue_timeout: pick(|l| l.queue_timeout_ms)
                .map_or(base.queue_timeout, Duration::from_millis),
            min_instances: pick_size(|l| l.min_instances).unwrap_or(base.min_instances),
            max_requests_per_instance: pick(|l| l.max_requests_per_instance)
                .or(base.max_requests_per_instance)
                .filter(|&n| n > 0),
            idle_timeout: pick(|l| l.idle_timeout_ms)
                .map_or(base.idle_timeout, Duration::from_millis),
            scale_up_wait: pick(|l| l.scale_up_wait_ms)
                .map_or(base.scale_up_wait, Duration::from_millis),
            log_lines_per_second: own
                .and_then(|l| l.log_lines_per_second)
                .or(self.defaults.log_lines_per_second)
                .unwrap_or(base.log_lines_per_second),
            log_burst: own
                .and_then(|l| l.log_burst)
                .or(self.defaults.log_burst)
                .unwrap_or(base.log_burst),
        };
        if limits.min_instances > limits.max_instances {
            let section = if module.is_some() {
                format!("modules.{name}")
            } else {
                "defaults".into()
            };
            return Err(ConfigError::Invalid(format!(
                "{section}: min_instances ({}) exceeds max_instances ({})",
                limits.min_instances, limits.max_instances
            )));
        }
        let section = if module.is_some() {
            format!("modules.{name}")
        } else {
            "defaults".into()
        };
        if limits.deadline.is_zero() || limits.max_instances == 0 || limits.max_memory_bytes == 0 {
            return Err(ConfigError::Invalid(format!(
                "{section}: deadline_ms, max_instances and max_memory_mb must be positive"
            )));
        }
        if limits.log_lines_per_second > 0 && limits.log_burst == 0 {
            return Err(ConfigError::Invalid(format!(
                "{section}.log_burst must be positive while log_lines_per_second is (0 lines a second means no limit)"
            )));
        }
        // The configured figure, not the bytes: those saturate on a 32-bit host.
        if pick_size(|l| l.max_memory_mb).is_some_and(|mb| mb > 4096) {
            return Err(ConfigError::Invalid(format!(
                "{section}.max_memory_mb: a 32-bit WebAssembly memory cannot exceed 4096 MiB"
            )));
        }
        let mut vars = module.map(|m| m.vars.clone()).unwrap_or_default();
        for (key, value) in module.iter().flat_map(|m| &m.secrets) {
            let value = expand_env(value)
                .map_err(|why| ConfigError::Invalid(format!("{section}.secrets.{key}: {why}")))?;
            vars.insert(key.clone(), value);
        }
        let grants = module.map(|m| m.grants.grants()).unwrap_or_default();
        Ok(ModuleSettings {
            limits,
            vars,
            grants,
        })
    }

    /// Module `name`'s canary file, when the config names one.
    pub fn canary_path(&self, name: &str) -> Option<PathBuf> {
        let canary = self.modules.get(name)?.canary.as_ref()?;
        Some(self.modules_dir_path(&canary.file))
    }

    /// Whether `path` is a canary file named by the config: such a file is
    /// not a module of its own.
    pub fn is_canary_file(&self, path: &Path) -> bool {
        self.modules
            .keys()
            .filter_map(|name| self.canary_path(name))
            .any(|canary| canary == path)
    }

    /// The HTTP routes of module `name`: `/NAME`, `/NAME/*` and its
    /// configured routes on the shared origin; or, with `hosts`, its
    /// configured routes (every path, `/*`, when there are none) on each
    /// of those hosts only.
    pub fn http_routes(&self, name: &str) -> ModuleRoutes {
        let section = self.modules.get(name);
        let configured = section.map(|s| s.routes.clone()).unwrap_or_default();
        let hosts = section.map(|s| s.hosts.clone()).unwrap_or_default();
        if hosts.is_empty() {
            let mut routes = vec![format!("/{name}"), format!("/{name}/*")];
            routes.extend(configured);
            ModuleRoutes { hosts, routes }
        } else if configured.is_empty() {
            ModuleRoutes {
                hosts,
                routes: vec!["/*".to_owned()],
            }
        } else {
            ModuleRoutes {
                hosts,
                routes: configured,
            }
        }
    }

    /// Where module `name` accepts WebSocket upgrades.
    pub fn websocket_routes(&self, name: &str) -> Vec<String> {
        self.modules
            .get(name)
            .and_then(|m| m.websocket.as_ref())
            .and_then(|w| w.routes.clone())
            .unwrap_or_else(|| vec![format!("/{name}/ws")])
    }

    /// The most WebSocket connections module `name` may hold, when its
    /// section says.
    pub fn websocket_limit(&self, name: &str) -> Option<usize> {
        self.modules.get(name)?.websocket.as_ref()?.max_connections
    }

    /// A file named relative to `modules_dir`.
    pub fn modules_dir_path(&self, file: &Path) -> PathBuf {
        self.server.modules_dir.join(file)
    }

    /// Where module `name`'s file is.
    pub fn module_path(&self, name: &str) -> PathBuf {
        let file = self.modules.get(name).and_then(|m| m.file.clone());
        let file = file.unwrap_or_else(|| PathBuf::from(format!("{name}.wasm")));
        self.server.modules_dir.join(file)
    }
}

/// A canary weight in percent as basis points (10,000 is all traffic).
pub fn weight_basis_points(percent: f64) -> Result<u32, String> {
    if percent.is_finite() && percent > 0.0 && percent <= 100.0 {
        Ok(((percent * 100.0).round() as u32).max(1))
    } else {
        Err(format!(
            "{percent} is not a percentage above 0 and at most 100"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_gives_defaults() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(
            config.settings_for("x").unwrap().limits,
            ModuleLimits::default()
        );
    }

    /// The embedded store's page cache is bounded by default (redb's own
    /// default is 1 GiB), and `[kv]` sets it.
    #[test]
    fn the_kv_store_cache_is_bounded_and_set_by_kv() {
        let settings = Config::parse("").unwrap().kv.settings();
        assert_eq!(settings.store_cache_bytes, 16 << 20);
        let settings = Config::parse(
            "[kv]
store_cache_bytes = 4194304
",
        )
        .unwrap()
        .kv
        .settings();
        assert_eq!(settings.store_cache_bytes, 4 << 20);
        assert_eq!(
            settings.cache_bytes,
            16 << 20,
            "the other cache keeps its default"
        );
    }

    /// The packaged config (release tarballs, /etc/shanhai/shanhai.toml)
    /// is one the gateway accepts, and keeps all state in the unit's
    /// writable folders.
    #[test]
    fn the_packaged_config_parses() {
        let config = Config::parse(include_str!("../../../dist/shanhai.toml")).unwrap();
        assert_eq!(
            config.mqtt.expect("an [mqtt] section").store_dir,
            PathBuf::from("/var/lib/shanhai/mqtt")
        );
        assert_eq!(
            config.state.data_dir,
            PathBuf::from("/var/lib/shanhai/data")
        );
    }

    #[test]
    fn module_overrides_defaults() {
        let config = Config::parse(
            "[defaults]\ndeadline_ms = 100\nmax_instances = 3\n[modules.a]\ndeadline_ms = 7\n[modules.a.vars]\nk = \"v\"\n",
        )
        .unwrap();
        let a = config.settings_for("a").unwrap();
        assert_eq!(a.limits.deadline, Duration::from_millis(7));
        assert_eq!(a.limits.max_instances, 3);
        assert_eq!(a.vars["k"], "v");
        assert_eq!(
            config.settings_for("b").unwrap().limits.deadline,
            Duration::from_millis(100)
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("[modules.a]\ndeadline = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("deadline"), "{err}");
        let err = Config::parse("[server]\nlisten = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn the_compiler_is_named_in_the_config() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.runtime_config().compiler, Compiler::Auto);
        let config = Config::parse("[runtime]\ncompiler = \"pulley\"\n").unwrap();
        assert_eq!(config.runtime_config().compiler, Compiler::Pulley);
        let err = Config::parse("[runtime]\ncompiler = \"llvm\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("runtime.compiler") && err.contains("auto, cranelift, pulley"),
            "{err}"
        );
    }

    #[test]
    fn bad_trusted_keys_fail_at_load() {
        let err = Config::parse("[signing]\ntrusted_keys = [\"ed25519:1234\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("signing.trusted_keys[0]"), "{err}");
    }

    #[test]
    fn canary_settings_are_checked() {
        let config = Config::parse(
            "[canary]\nmin_requests = 20\n[modules.a.canary]\nfile = \"a2.wasm\"\nweight = 12.5\n",
        )
        .unwrap();
        assert_eq!(config.canary.policy().unwrap().min_requests, 20);
        assert_eq!(
            config.canary_path("a").unwrap(),
            Path::new("modules/a2.wasm")
        );
        assert!(config.is_canary_file(Path::new("modules/a2.wasm")));
        for bad in [
            "[canary]\nmax_error_rate = 5\n",
            "[canary]\nlatency_factor = 0.5\n",
            "[canary]\nsticky_header = \"a b\"\n",
            "[modules.a.canary]\nfile = \"a2.wasm\"\nweight = 0\n",
            "[modules.a.canary]\nfile = \"a2.wasm\"\nweight = 101\n",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(weight_basis_points(0.01), Ok(1));
        assert_eq!(weight_basis_points(100.0), Ok(10_000));
    }

    #[test]
    fn log_limits_have_defaults_and_overrides() {
        let config = Config::parse(
            "[defaults]\nlog_lines_per_second = 20\n[modules.a]\nlog_burst = 5\n[modules.b]\nlog_lines_per_second = 0\n",
        )
        .unwrap();
        let a = config.settings_for("a").unwrap().limits;
        assert_eq!((a.log_lines_per_second, a.log_burst), (20, 5));
        let b = config.settings_for("b").unwrap().limits;
        assert_eq!((b.log_lines_per_second, b.log_burst), (0, 200));
        let c = Config::parse("").unwrap().settings_for("c").unwrap().limits;
        assert_eq!((c.log_lines_per_second, c.log_burst), (100, 200));
        let err = Config::parse("[modules.a]\nlog_burst = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("modules.a.log_burst"), "{err}");
    }

    #[test]
    fn http_grants_are_checked() {
        let config = Config::parse(
            "[modules.a.grants]\nhttp = [\"api.example.com\", \"db.lan:*\", \"[::1]:8080\", \"*.x.org:8443\"]\n",
        )
        .unwrap();
        let grants = config.settings_for("a").unwrap().grants;
        assert!(grants.allows_http("api.example.com", 443));
        assert!(!grants.allows_http("api.example.com", 8080));
        assert!(grants.allows_http("db.lan", 5984));
        for bad in ["host:0", "host:x", "[::1", "a/b", "user@host", ""] {
            let text = format!("[modules.a.grants]\nhttp = [{bad:?}]\n");
            let err = Config::parse(&text).unwrap_err().to_string();
            assert!(err.contains("modules.a.grants.http"), "{bad}: {err}");
        }
    }

    #[test]
    fn invalid_values_are_refused() {
        assert!(Config::parse("[modules.a]\nmax_instances = 0\n").is_err());
        assert!(Config::parse("[modules.\"a b\"]\n").is_err());
        assert!(Config::parse("[modules.a]\nroutes = [\"nope\"]\n").is_err());
    }
}
