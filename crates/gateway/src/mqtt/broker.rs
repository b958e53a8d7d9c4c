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

/// Memory segment of the broker's per-filter log. A subscriber more than
/// `SEGMENTS` segments behind (a slow one, or a persistent session that is
/// away) loses the oldest messages: rumqttd keeps its log in memory only.
const SEGMENT_BYTES: usize = 4 << 20;
const SEGMENTS: usize = 16;

impl EmbeddedBroker {
    /// Starts the broker and waits until both listeners accept connections.
    pub(crate) async fn start(
        config: &MqttConfig,
        credentials: Option<(String, String)>,
    ) -> anyhow::Result<Self> {
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
        let broker_config = Config {
            id: 0,
            router: RouterConfig {
                max_connections: config.max_connections,
                max_outgoing_packet_count: 200,
                max_segment_size: SEGMENT_BYTES.max(2 * config.max_payload_bytes),
                max_segment_count: SEGMENTS,
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
