//! `shanhai::mqtt_publish`: publish an MQTT message to a topic the module
//! is granted.
//!
//! The runtime holds no MQTT client: it checks the grant, then forwards the
//! message to the [`MqttHost`] the gateway installed
//! ([`Runtime::set_mqtt_host`](crate::Runtime::set_mqtt_host)). Without one
//! (`shanhai run`, or a gateway without MQTT) every call answers
//! `unavailable`.

use bytes::Bytes;
use shanhai_abi::grant::invalid_topic;
use shanhai_abi::{HostStatus, IMPORT_MODULE, import};
use wasmtime::{Caller, Linker};

use super::{HostState, denied, fail, guest_bytes, guest_str};

/// A message a module publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttPublication {
    /// The topic (no wildcards; already checked against the grant).
    pub topic: String,
    /// The payload.
    pub payload: Bytes,
    /// 0 or 1.
    pub qos: u8,
    /// Ask the broker to retain it.
    pub retain: bool,
}

/// What `mqtt_publish` forwards to: the gateway's MQTT client.
///
/// An implementation must not block: it queues and returns.
pub trait MqttHost: Send + Sync + 'static {
    /// Queues `message`, published on behalf of `module`. Errors are
    /// [`HostStatus::TooLarge`] for a payload over the client's limit and
    /// [`HostStatus::Unavailable`] when the client cannot take it now.
    fn publish(&self, module: &str, message: MqttPublication) -> Result<(), HostStatus>;
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        IMPORT_MODULE,
        import::MQTT_PUBLISH,
        |mut caller: Caller<'_, HostState>,
         topic_ptr: i32,
         topic_len: i32,
         payload_ptr: i32,
         payload_len: i32,
         qos: i32,
         retain: i32|
         -> i32 {
            caller.data_mut().event.staged = None;
            let topic = match guest_str(&mut caller, topic_ptr, topic_len) {
                Ok(topic) => topic,
                Err(status) => return status as i32,
            };
            let (payload, state) = match guest_bytes(&mut caller, payload_ptr, payload_len) {
                Ok(found) => found,
                Err(status) => return status as i32,
            };
            let payload = Bytes::copy_from_slice(payload);
            if let Some(why) = invalid_topic(&topic) {
                return fail(state, HostStatus::InvalidArgument, why);
            }
            let qos = match qos {
                0 | 1 => qos as u8,
                _ => return fail(state, HostStatus::InvalidArgument, "qos must be 0 or 1"),
            };
            if !state.module.grants.allows_mqtt_publish(&topic) {
                let detail = format!("no mqtt_publish grant matches topic `{topic}`");
                return denied(state, "mqtt_publish", detail);
            }
            let Some(host) = state.module.services.mqtt.get().cloned() else {
                return fail(
                    state,
                    HostStatus::Unavailable,
                    "MQTT is not enabled in this gateway",
                );
            };
            let module = state.module.name.clone();
            let message = MqttPublication {
                topic,
                payload,
                qos,
                retain: retain != 0,
            };
            match host.publish(&module, message) {
                Ok(()) => 0,
                Err(status) => status as i32,
            }
        },
    )?;
    Ok(())
}
