//! The embedded broker (rumqttd): the zero-config default when `[mqtt]` has
//! no `url`.
//!
//! rumqttd runs its router and each listener on threads of its own and has
//! no way to stop them, so the broker lives as long as the process. It binds
//! its listeners itself; to report the address of a port-0 listener, and to
//! fail the start with a clear message when a port is taken, each address is
//! bound here first and handed to rumqttd as a concrete port.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use super::config::MqttConfig;

/// The embedded broker's listeners.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EmbeddedBroker {
    /// MQTT 3.1.1, for devices.
    pub(crate) v4: SocketAddr,
    /// MQTT 5, for the gateway's own connections (and v5 devices).
    pub(crate) v5: SocketAddr,
}

/// The broker's per-filter log: messages a subscriber of the filter has
/// yet to read, in segments. A subscriber more than `BACKLOG_BYTES` behind
/// (a slow one, or a persistent session that is away) loses the oldest
/// messages. Segments every reader has read are freed (vendored rumqttd,
/// patch 8), so a filter whose subscribers keep up holds at most its
/// segment being filled: smaller segments hold less, and each must take
/// two messages of the largest size.
const SEGMENT_BYTES: usize = 1 << 20;
const BACKLOG_BYTES: usize = 64 << 20;

/// The size and count of a log's segments for `max_payload_bytes`.
fn segments(max_payload_bytes: usize) -> (usize, usize) {
    let size = SEGMENT_BYTES.max(2 * max_payload_bytes);
    (size, (BACKLOG_BYTES / size).max(2))
}

impl EmbeddedBroker {
    /// Starts the broker and waits until both listeners accept connections.
    pub(crate) async fn start(
        config: &MqttConfig,
        credentials: Option<(String, String)>,
    ) -> anyhow::Result<Self> {
        let store_dir = check_store_dir(config)?;
        let v4 = reserve(config.listen, "mqtt.listen")?;
        let v5 = reserve(config.listen_v5, "mqtt.listen_v5")?;
        let connections = ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: config.max_payload_bytes,
            max_inflight_count: 256,
            auth: credentials.map(|(user, password)| HashMap::from([(user, password)])),
            external_auth: None,
            dynamic_filters: true,
        };
        let server = |name: &str, listen: SocketAddr| ServerSettings {
            name: name.to_owned(),
            listen,
            tls: None,
            next_connection_delay_ms: 0,
            connections: connections.clone(),
        };
        let (segment_size, segment_count) = segments(config.max_payload_bytes);
        let broker_config = Config {
            id: 0,
            router: RouterConfig {
                max_connections: config.max_connections,
                max_outgoing_packet_count: 200,
                max_segment_size: segment_size,
                max_segment_count: segment_count,
                durable_dir: store_dir,
                ..RouterConfig::default()
            },
            v4: Some(HashMap::from([("v4".to_owned(), server("mqtt-v4", v4))])),
            v5: Some(HashMap::from([("v5".to_owned(), server("mqtt-v5", v5))])),
            ..Config::default()
        };
        std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                let mut broker = Broker::new(broker_config);
                if let Err(err) = broker.start() {
                    tracing::error!(error = %err, "the embedded MQTT broker stopped");
                }
            })?;
        for addr in [v4, v5] {
            wait_listening(addr).await?;
        }
        tracing::info!(%v4, %v5, "embedded MQTT broker listening (MQTT 3.1.1 and 5)");
        Ok(Self { v4, v5 })
    }
}

/// Binds `addr` to prove it is free (and to pick a port for port 0), then
/// releases it for rumqttd.
fn reserve(addr: SocketAddr, key: &str) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).map_err(|err| {
        anyhow::anyhow!("binding {key} {addr} for the embedded MQTT broker: {err}")
    })?;
    Ok(listener.local_addr()?)
}

async fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the embedded MQTT broker did not start listening on {addr} (was the port taken meanwhile?)"
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The folder of the broker's durable log (`mqtt.store_dir`), opened here
/// first so a bad one fails the start naming the key: the broker thread
/// could only log it.
fn check_store_dir(config: &MqttConfig) -> anyhow::Result<Option<std::path::PathBuf>> {
    let dir = &config.store_dir;
    if dir.as_os_str().is_empty() {
        return Ok(None);
    }
    // Opening the log here (creating the folder, reading the log back and
    // rewriting it; the broker opens it again) turns a folder or log it
    // cannot use into a failed start rather than a broker that forgets.
    rumqttd::durable::Durable::open(dir, usize::MAX).map_err(|err| {
        anyhow::anyhow!(
            "mqtt.store_dir {}: {err}: the embedded broker logs there the QoS 1 messages it acknowledges to persistent sessions (set another folder, or \"\" to keep them in memory only)",
            dir.display()
        )
    })?;
    Ok(Some(dir.clone()))
}

#[cfg(test)]
mod durable_log_tests {
    //! The embedded broker's durable log (vendor/rumqttd, patch 6).
    use std::collections::BTreeMap;
    use std::fs::OpenOptions;
    use std::time::Duration;

    use bytes::Bytes;
    use rumqttd::durable::{COMPACT_SLACK, Durable, LOG_FILE, crc32};

    fn publish(durable: &mut Durable, topic: &str, payload: &str) -> Option<u64> {
        durable.published(
            &Bytes::from(topic.to_owned()),
            &Bytes::from(payload.to_owned()),
        )
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn owed_messages_and_sessions_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut durable = Durable::open(dir.path(), usize::MAX).unwrap();
        durable.connected("trigger", true, Some(Duration::from_secs(3600)), false);
        durable.subscribed("trigger", "in/+", 1);
        durable.connected("watcher", true, None, false);
        durable.subscribed("watcher", "in/#", 0);
        let first = publish(&mut durable, "in/a", "one").unwrap();
        let second = publish(&mut durable, "in/b", "two").unwrap();
        // Only a QoS 0 subscription matches: nothing to keep.
        assert_eq!(publish(&mut durable, "in/a/b", "three"), None);
        durable.acked("trigger", first);
        durable.sync().unwrap();
        drop(durable);

        let durable = Durable::open(dir.path(), usize::MAX).unwrap();
        let pending: Vec<_> = durable
            .pending()
            .map(|(seq, m)| (seq, m.payload.clone()))
            .collect();
        assert_eq!(pending, vec![(second, Bytes::from("two"))]);
        let session = &durable.sessions()["trigger"];
        assert_eq!(session.filters, BTreeMap::from([("in/+".to_owned(), 1)]));
        assert_eq!(session.expiry, Some(Duration::from_secs(3600)));
        assert!(durable.sessions().contains_key("watcher"));
    }

    #[test]
    fn the_log_is_readable_by_this_user_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("mqtt");
        drop(Durable::open(&store, usize::MAX).unwrap());
        let mode =
            |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store), 0o700);
        assert_eq!(mode(&store.join(LOG_FILE)), 0o600);
    }

    #[test]
    fn a_torn_last_record_is_dropped_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut durable = Durable::open(dir.path(), usize::MAX).unwrap();
        durable.connected("c", true, None, false);
        durable.subscribed("c", "t", 1);
        publish(&mut durable, "t", "kept").unwrap();
        publish(&mut durable, "t", "torn").unwrap();
        durable.sync().unwrap();
        drop(durable);
        let path = dir.path().join(LOG_FILE);
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();

        let durable = Durable::open(dir.path(), usize::MAX).unwrap();
        let payloads: Vec<_> = durable.pending().map(|(_, m)| m.payload.clone()).collect();
        assert_eq!(payloads, vec![Bytes::from("kept")]);
    }

    #[test]
    fn clean_starts_and_expiry_forget_what_a_session_was_owed() {
        let dir = tempfile::tempdir().unwrap();
        let mut durable = Durable::open(dir.path(), usize::MAX).unwrap();
        durable.connected("clean", true, None, false);
        durable.subscribed("clean", "t", 1);
        durable.connected("brief", true, Some(Duration::ZERO), false);
        durable.subscribed("brief", "t", 1);
        publish(&mut durable, "t", "m").unwrap();
        durable.disconnected("brief", true, Some(Duration::ZERO));
        // Reconnecting with a clean start discards the session.
        durable.connected("clean", false, None, false);
        durable.sync().unwrap();
        drop(durable);

        let durable = Durable::open(dir.path(), usize::MAX).unwrap();
        assert!(durable.sessions().is_empty(), "{:?}", durable.sessions());
        assert_eq!(durable.pending().count(), 0);
    }

    #[test]
    fn the_log_is_compacted_to_what_is_live() {
        let dir = tempfile::tempdir().unwrap();
        let mut durable = Durable::open(dir.path(), usize::MAX).unwrap();
        durable.connected("c", true, None, false);
        durable.subscribed("c", "t", 1);
        let payload = "x".repeat(64 << 10);
        for _ in 0..400 {
            let seq = publish(&mut durable, "t", &payload).unwrap();
            durable.acked("c", seq);
            durable.sync().unwrap();
        }
        let size = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
        assert!(
            size < COMPACT_SLACK + (1 << 20),
            "the log holds {size} bytes"
        );
        assert!(durable.sessions().contains_key("c"));
    }

    #[test]
    fn a_session_that_never_acks_cannot_fill_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut durable = Durable::open(dir.path(), 1000).unwrap();
        durable.connected("away", true, None, false);
        durable.subscribed("away", "t", 1);
        let seqs: Vec<u64> = (0..10)
            .map(|i| publish(&mut durable, "t", &format!("{i:0>199}")).unwrap())
            .collect();
        durable.sync().unwrap();
        let kept: Vec<u64> = durable.pending().map(|(seq, _)| seq).collect();
        // 200 bytes each (topic and payload): the newest five fit.
        assert_eq!(kept, seqs[5..]);
        drop(durable);
        let durable = Durable::open(dir.path(), 1000).unwrap();
        assert_eq!(durable.pending().count(), 5);
    }
}
