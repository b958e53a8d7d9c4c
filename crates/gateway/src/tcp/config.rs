//! `[tcp.NAME]`: the raw config of a TCP listener, and its validation.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Framer;
use crate::config::{ConfigError, is_module_name};

/// How a listener cuts its stream into frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// A big-endian length prefix, then the frame.
    Length,
    /// Frames end with a delimiter.
    Delimiter,
    /// Modbus/TCP application data units (MBAP header + PDU).
    Modbus,
}

/// `[tcp.NAME]`: a TCP listener whose frames run a module.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The module that handles the frames.
    pub module: String,
    /// How the stream is cut into frames: `length`, `delimiter` or `modbus`.
    pub framing: Framing,
    /// `length` framing: bytes of the big-endian length prefix (1, 2 or 4).
    #[serde(default = "default_length_bytes")]
    pub length_bytes: usize,
    /// `delimiter` framing: the bytes that end a frame.
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// Largest frame; a bigger one closes the connection.
    #[serde(default = "default_max_frame_bytes")]
    pub max_frame_bytes: usize,
    /// Close a connection that completes no frame for this long, in
    /// milliseconds (counted from the connection's opening, then from the
    /// reply to its last frame: bytes that never make a frame do not keep
    /// it open); 0 disables it.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Close a connection whose client does not take a reply within this
    /// long, in milliseconds.
    #[serde(default = "default_write_timeout_ms")]
    pub write_timeout_ms: u64,
    /// Connections held at most; more are accepted and closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_length_bytes() -> usize {
    4
}

fn default_delimiter() -> String {
    "\n".into()
}

fn default_max_frame_bytes() -> usize {
    64 << 10
}

fn default_idle_timeout_ms() -> u64 {
    60_000
}

fn default_write_timeout_ms() -> u64 {
    10_000
}

fn default_max_connections() -> usize {
    1000
}

impl TcpConfig {
    /// Checks `[tcp.NAME]`.
    pub(crate) fn validate(&self, name: &str) -> Result<(), ConfigError> {
        if !is_module_name(name) || !is_module_name(&self.module) {
            return Err(ConfigError::Invalid(format!(
                "tcp.{name}: listener and module names may contain only letters, digits, '-' and '_'"
            )));
        }
        for (key, value) in [
            ("max_connections", self.max_connections as u64),
            ("write_timeout_ms", self.write_timeout_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!(
                    "tcp.{name}.{key} must be positive"
                )));
            }
        }
        Framer::of(name, self)?;
        Ok(())
    }

    /// The idle timeout, unless disabled.
    pub(crate) fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_ms > 0).then(|| Duration::from_millis(self.idle_timeout_ms))
    }

    /// The write timeout.
    pub(crate) fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn tcp_sections_are_checked() {
        let base = "[tcp.a]\nlisten = \"127.0.0.1:0\"\nmodule = \"m\"\nframing = \"length\"\n";
        let config = Config::parse(base).unwrap();
        let a = &config.tcp["a"];
        assert_eq!((a.write_timeout_ms, a.idle_timeout_ms), (10_000, 60_000));
        for (extra, key) in [
            ("write_timeout_ms = 0", "tcp.a.write_timeout_ms"),
            ("max_connections = 0", "tcp.a.max_connections"),
            ("length_bytes = 3", "tcp.a.length_bytes"),
        ] {
            let err = Config::parse(&format!("{base}{extra}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
    }
}
