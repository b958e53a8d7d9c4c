//! The MQTT trigger (`[mqtt]`, `[mqtt.triggers.NAME]`): subscriptions that
//! run a module per message and publish what it returns, and the client
//! behind the `mqtt_publish` host function.
//!
//! Every trigger has a connection of its own (client id `CLIENT_ID-NAME`)
//! with a persistent MQTT 5 session, so its acknowledgements, flow control
//! and redeliveries concern it alone; `mqtt_publish` uses one more
//! (`CLIENT_ID-publisher`). Without a `url` the gateway starts an embedded
//! broker ([`broker`]) and connects to that. See docs/mqtt.md.

mod broker;
mod client;
pub(crate) mod config;
mod publisher;
pub(crate) mod topic;
mod trigger;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttc::Outgoing;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop};
use shanhai_runtime::MqttHost;
use tokio::sync::watch;
use tokio::task::JoinSet;

use self::broker::EmbeddedBroker;
use self::client::ConnectionOptions;
use self::config::BrokerAddress;
use self::publisher::Publisher;
use self::trigger::Trigger;
use crate::config::Config;
use crate::registry::ModuleRegistry;

/// MQTT in a running gateway.
pub(crate) struct MqttTrigger {
    broker: Option<EmbeddedBroker>,
    publisher: Arc<Publisher>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl MqttTrigger {
    /// Starts the embedded broker (without `mqtt.url`), the publisher and
    /// every trigger; `None` when the config has no (enabled) `[mqtt]`.
    /// Connections are made in the background: a broker that is down is
    /// retried, not fatal.
    pub(crate) async fn start(
        registry: Arc<ModuleRegistry>,
        config: &Config,
    ) -> anyhow::Result<Option<Self>> {
        let Some(mqtt) = config.mqtt.as_ref().filter(|m| m.enabled) else {
            return Ok(None);
        };
        let triggers = mqtt.triggers()?;
        let (broker, address) = match mqtt.broker_address()? {
            Some(address) => (None, address),
            None => {
                let credentials = mqtt.embedded_credentials()?;
                let broker = EmbeddedBroker::start(mqtt, credentials).await?;
                let address = BrokerAddress {
                    host: broker.v5.ip().to_string(),
                    port: broker.v5.port(),
                    tls: false,
                };
                (Some(broker), address)
            }
        };
        let options = ConnectionOptions::new(mqtt, address)?;
        let client_id = mqtt.client_id();
        tracing::info!(broker = %options.describe(), client_id, triggers = triggers.len(), "MQTT starting");
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();

        let (client, eventloop) = AsyncClient::new(
            options.for_client(&format!("{client_id}-publisher"), true, 16),
            mqtt.publish_queue,
        );
        let publisher = Arc::new(Publisher::new(client, mqtt.max_payload_bytes));
        tasks.spawn(publisher.clone().run(eventloop, stopped.clone()));

        for settings in triggers {
            let grants = config
                .settings_for(&settings.module)
                .map(|s| s.grants)
                .unwrap_or_default();
            let receive_maximum =
                u16::try_from((settings.concurrency * 2).max(16)).unwrap_or(u16::MAX);
            let persistent = settings.qos > 0;
            let (client, eventloop) = AsyncClient::new(
                options.for_client(
                    &format!("{client_id}-{}", settings.name),
                    persistent,
                    receive_maximum,
                ),
                // Outputs and acknowledgements of every message in flight.
                usize::from(receive_maximum) * 4,
            );
            tracing::info!(
                trigger = %settings.name,
                module = %settings.module,
                subscription = %settings.subscription(),
                qos = settings.qos,
                "MQTT trigger started"
            );
            let (trigger, acks) = Trigger::new(
                settings,
                registry.clone(),
                grants,
                client,
                mqtt.max_payload_bytes,
            );
            tasks.spawn(trigger.run(eventloop, acks, stopped.clone()));
        }
        Ok(Some(Self {
            broker,
            publisher,
            stop,
            tasks,
        }))
    }

    /// The embedded broker's MQTT 3.1.1 and MQTT 5 listeners, when it runs.
    pub(crate) fn broker_addrs(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.broker.map(|b| (b.v4, b.v5))
    }

    /// The client behind `mqtt_publish`.
    pub(crate) fn host(&self) -> Arc<dyn MqttHost> {
        self.publisher.clone()
    }

    /// Stops taking messages; the future finishes once the messages
    /// already received are handled and acknowledged, and every connection
    /// has disconnected (sessions stay on the broker). The embedded broker
    /// runs until the process exits.
    pub(crate) fn stop(mut self) -> impl Future<Output = ()> {
        let _ = self.stop.send(true);
        async move { while self.tasks.join_next().await.is_some() {} }
    }
}

/// Wait before reconnecting after `failures` failures in a row: 100 ms,
/// doubling, at most 10 s.
fn reconnect_delay(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(7);
    (Duration::from_millis(100) * factor).min(Duration::from_secs(10))
}

/// Logs a connection failure: the first of a series as a warning, then
/// every tenth, so a broker that is down for long does not flood the log.
fn connection_failed(connection: &str, failures: u32, err: &ConnectionError) {
    metrics::counter!("shanhai_mqtt_connection_errors_total", "connection" => connection.to_owned())
        .increment(1);
    if failures == 1 || failures.is_multiple_of(10) {
        tracing::warn!(
            connection,
            failures,
            "MQTT connection failed; reconnecting: {err}"
        );
    }
}

/// The client drops what a lost connection left unsent (publications among
/// it) when the broker starts a new session instead of resuming the old
/// one (it lost the session: a restart without persistence, an expiry):
/// say so.
fn pending_discarded(connection: &str, session_present: bool, unsent: usize) {
    if !session_present && unsent > 0 {
        metrics::counter!("shanhai_mqtt_discarded_total", "connection" => connection.to_owned())
            .increment(unsent as u64);
        tracing::warn!(
            connection,
            unsent,
            "the broker did not resume the MQTT session: {unsent} queued packets (publications and acknowledgements) were discarded"
        );
    }
}

/// Sends DISCONNECT after what is already queued, and waits (briefly) for
/// it to be written.
async fn disconnect(client: &AsyncClient, eventloop: &mut EventLoop, connection: &str) {
    let done = tokio::time::timeout(Duration::from_secs(2), async {
        let mut request = std::pin::pin!(client.disconnect());
        let mut sent = false;
        loop {
            tokio::select! {
                result = &mut request, if !sent => {
                    sent = true;
                    if result.is_err() {
                        return;
                    }
                }
                event = eventloop.poll() => match event {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                    Ok(_) => {}
                },
            }
        }
    })
    .await;
    if done.is_err() {
        tracing::warn!(connection, "MQTT disconnect timed out");
    }
}

/// At most one `ready()` per second: for log lines that could repeat per
/// message.
#[derive(Default)]
struct Throttle {
    last_ms: AtomicU64,
}

impl Throttle {
    fn ready(&self) -> bool {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        // +1 so that the first call, at 0 ms, is ready.
        let now = START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1_000;
        let last = self.last_ms.load(Ordering::Relaxed);
        now >= last + 1_000
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_back_off_to_ten_seconds() {
        assert_eq!(reconnect_delay(1), Duration::from_millis(100));
        assert_eq!(reconnect_delay(2), Duration::from_millis(200));
        assert_eq!(reconnect_delay(50), Duration::from_secs(10));
    }

    #[test]
    fn throttles_allow_one_per_second() {
        let throttle = Throttle::default();
        assert!(throttle.ready());
        assert!(!throttle.ready());
    }
}
