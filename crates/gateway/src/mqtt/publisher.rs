//! The connection behind `mqtt_publish`: the runtime's [`MqttHost`].
//!
//! Modules publish from any event (a timer, a TCP frame, an HTTP request),
//! so their messages go through one connection of their own, not through a
//! trigger's. `publish` never waits: it queues into the client's bounded
//! request channel and answers `unavailable` when that is full.

use std::sync::Arc;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, ClientError, Event, EventLoop};
use shanhai_abi::HostStatus;
use shanhai_runtime::{MqttHost, MqttPublication};
use tokio::sync::watch;

use super::{Throttle, reconnect_delay};

/// The gateway's [`MqttHost`].
pub(crate) struct Publisher {
    client: AsyncClient,
    max_payload: usize,
    full: Throttle,
}

impl Publisher {
    /// A publisher whose connection `eventloop` is driven by [`run`].
    pub(crate) fn new(client: AsyncClient, max_payload: usize) -> Self {
        Self {
            client,
            max_payload,
            full: Throttle::default(),
        }
    }

    /// Polls the connection until `stop`; then sends what is queued and
    /// disconnects.
    pub(crate) async fn run(
        self: Arc<Self>,
        mut eventloop: EventLoop,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut failures = 0u32;
        let mut unsent = 0;
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                event = eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        failures = 0;
                        super::pending_discarded("publisher", ack.session_present, unsent);
                        unsent = 0;
                        tracing::info!(session_present = ack.session_present, "MQTT publisher connected");
                    }
                    Ok(_) => {}
                    Err(err) => {
                        unsent = eventloop.pending.len();
                        failures += 1;
                        super::connection_failed("publisher", failures, &err);
                        tokio::select! {
                            _ = stop.changed() => break,
                            () = tokio::time::sleep(reconnect_delay(failures)) => {}
                        }
                    }
                },
            }
        }
        super::disconnect(&self.client, &mut eventloop, "publisher").await;
    }
}

impl MqttHost for Publisher {
    fn publish(&self, module: &str, message: MqttPublication) -> Result<(), HostStatus> {
        if message.payload.len() > self.max_payload {
            metrics::counter!("shanhai_mqtt_publish_failures_total", "module" => module.to_owned(), "reason" => "too_large")
                .increment(1);
            return Err(HostStatus::TooLarge);
        }
        let qos = if message.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        match self
            .client
            .try_publish(message.topic, qos, message.retain, message.payload)
        {
            Ok(()) => {
                metrics::counter!("shanhai_mqtt_published_total", "source" => "module")
                    .increment(1);
                Ok(())
            }
            Err(ClientError::TryRequest(_) | ClientError::Request(_)) => {
                metrics::counter!("shanhai_mqtt_publish_failures_total", "module" => module.to_owned(), "reason" => "queue_full")
                    .increment(1);
                if self.full.ready() {
                    tracing::warn!(
                        module,
                        "mqtt_publish refused: the publish queue is full (mqtt.publish_queue) or the client stopped"
                    );
                }
                Err(HostStatus::Unavailable)
            }
        }
    }
}
