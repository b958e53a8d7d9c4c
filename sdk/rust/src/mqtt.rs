//! MQTT: the messages a trigger delivers to the module ([`Message`]), the
//! messages it returns for the gateway to publish ([`Publish`]), and
//! [`publish`], the `mqtt_publish` host function.
//!
//! A trigger of the gateway (`[mqtt.triggers.NAME]`) subscribes to a topic
//! filter and runs the module's handler, set with
//! [`Handlers::mqtt`](crate::Handlers::mqtt), once per message. The
//! handler returns the messages to publish ([`IntoMqttOutput`]); one with
//! an empty topic goes to the trigger's `output_topic`.
//!
//! ```
//! use shanhai_sdk::Handlers;
//! use shanhai_sdk::mqtt::{Message, Publish};
//!
//! fn handlers() -> Handlers {
//!     Handlers::new().mqtt(|message: &Message| -> Result<Publish, String> {
//!         let text = std::str::from_utf8(message.payload()).map_err(|e| e.to_string())?;
//!         // To the trigger's output_topic.
//!         Ok(Publish::to_output_topic(text.to_uppercase()).with_qos(message.qos()))
//!     })
//! }
//! # let _ = handlers();
//! ```

use std::fmt::Display;

use shanhai_abi::import;
use shanhai_abi::wire::{MqttMessage, MqttOutput, MqttPublish};

use crate::{Error, host};

/// One MQTT message delivered to the module: a message published to a
/// topic that matches the trigger's filter.
///
/// The SDK builds it from the event; [`Message::new`] and the `with_`
/// methods build one for tests, such as a message for
/// [`MockHost::mqtt`](crate::mock::MockHost::mqtt):
///
/// ```
/// use shanhai_sdk::mqtt::Message;
///
/// let message = Message::new("sensors/258/raw").with_qos(1).with_payload(vec![1, 2]);
/// assert_eq!((message.topic(), message.qos(), message.attempt()), ("sensors/258/raw", 1, 1));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    topic: String,
    trigger: String,
    request_id: String,
    qos: u8,
    retain: bool,
    attempt: u32,
    properties: Vec<(String, Vec<u8>)>,
    payload: Vec<u8>,
}

impl Message {
    /// A first delivery (attempt 1) of a QoS 0 message on `topic`, not
    /// retained, with no trigger name, request id, properties or payload.
    pub fn new(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            trigger: String::new(),
            request_id: String::new(),
            qos: 0,
            retain: false,
            attempt: 1,
            properties: Vec::new(),
            payload: Vec::new(),
        }
    }

    pub(crate) fn from_wire(message: &MqttMessage<'_>) -> Self {
        Self {
            topic: message.topic.to_owned(),
            trigger: message.trigger.to_owned(),
            request_id: message.request_id.to_owned(),
            qos: message.qos,
            retain: message.retain,
            attempt: message.attempt,
            properties: message
                .properties
                .iter()
                .map(|p| {
                    (
                        String::from_utf8_lossy(p.name).into_owned(),
                        p.value.to_vec(),
                    )
                })
                .collect(),
            payload: message.payload.to_vec(),
        }
    }

    /// Sets the trigger's name.
    #[must_use]
    pub fn with_trigger(mut self, trigger: impl Into<String>) -> Self {
        self.trigger = trigger.into();
        self
    }

    /// Sets the event's id.
    #[must_use]
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = request_id.into();
        self
    }

    /// Sets the QoS it was received with.
    #[must_use]
    pub fn with_qos(mut self, qos: u8) -> Self {
        self.qos = qos;
        self
    }

    /// Sets whether the broker delivered it as a retained message.
    #[must_use]
    pub fn with_retain(mut self, retain: bool) -> Self {
        self.retain = retain;
        self
    }

    /// Sets the delivery attempt.
    #[must_use]
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// Adds a property.
    #[must_use]
    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.properties.push((name.into(), value.into()));
        self
    }

    /// Sets the payload.
    #[must_use]
    pub fn with_payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = payload.into();
        self
    }

    /// The topic the message was published to (never a filter).
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The trigger's name, `NAME` in `[mqtt.triggers.NAME]`.
    pub fn trigger(&self) -> &str {
        &self.trigger
    }

    /// The gateway's id of this event.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The QoS it was received with: 0 or 1.
    pub fn qos(&self) -> u8 {
        self.qos
    }

    /// Whether the broker delivered it as a retained message.
    pub fn retain(&self) -> bool {
        self.retain
    }

    /// 1 for the first delivery to the module, 2 for the first retry, ...
    /// A QoS 1 message whose handler failed is retried, and a message may
    /// be delivered more than once: handlers should be idempotent.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The message's MQTT v5 user properties, in order, plus
    /// `$content_type`, `$response_topic` and `$correlation_data` when it
    /// carries them.
    pub fn properties(&self) -> &[(String, Vec<u8>)] {
        &self.properties
    }

    /// The value of property `name`; the last one when it occurs more than
    /// once.
    pub fn property(&self, name: &str) -> Option<&[u8]> {
        self.properties
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_slice())
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The message as an MqttMessage envelope, with `request_id` when it
    /// has none.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn encode(&self, request_id: &str) -> Vec<u8> {
        MqttMessage {
            topic: &self.topic,
            trigger: &self.trigger,
            request_id: if self.request_id.is_empty() {
                request_id
            } else {
                &self.request_id
            },
            qos: self.qos,
            retain: self.retain,
            attempt: self.attempt,
            properties: self
                .properties
                .iter()
                .map(|(name, value)| shanhai_abi::wire::Header {
                    name: name.as_bytes(),
                    value,
                })
                .collect(),
            payload: &self.payload,
        }
        .encode()
    }
}

/// A message for the gateway to publish, as an MQTT handler returns it:
/// QoS 0 and not retained unless set otherwise.
///
/// ```
/// use shanhai_sdk::mqtt::Publish;
///
/// let command = Publish::new("devices/258/cmd", vec![1, 2]).with_qos(1);
/// assert_eq!((command.topic(), command.qos(), command.retain()), ("devices/258/cmd", 1, false));
/// assert_eq!(Publish::to_output_topic("{}").topic(), "");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Publish {
    topic: String,
    qos: u8,
    retain: bool,
    payload: Vec<u8>,
}

impl Publish {
    /// `payload` for `topic`, a topic name without the wildcards `+` and
    /// `#`. Publishing to a topic other than the trigger's `output_topic`
    /// needs the module's `mqtt_publish` grant.
    pub fn new(topic: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            topic: topic.into(),
            qos: 0,
            retain: false,
            payload: payload.into(),
        }
    }

    /// `payload` for the trigger's `output_topic` (an empty topic), a
    /// template the gateway fills in from the input topic.
    pub fn to_output_topic(payload: impl Into<Vec<u8>>) -> Self {
        Self::new(String::new(), payload)
    }

    /// Sets the QoS: 0 or 1.
    #[must_use]
    pub fn with_qos(mut self, qos: u8) -> Self {
        self.qos = qos;
        self
    }

    /// Asks the broker to retain the message.
    #[must_use]
    pub fn with_retain(mut self, retain: bool) -> Self {
        self.retain = retain;
        self
    }

    /// The topic; empty for the trigger's `output_topic`.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The QoS.
    pub fn qos(&self) -> u8 {
        self.qos
    }

    /// Whether the broker is asked to retain it.
    pub fn retain(&self) -> bool {
        self.retain
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn from_wire(message: &MqttPublish<'_>) -> Self {
        Self::new(message.topic, message.payload)
            .with_qos(message.qos)
            .with_retain(message.retain)
    }
}

/// What an MQTT handler may return: the messages to publish, in order —
/// `Vec<Publish>`, one [`Publish`], `Option<Publish>`, or `()` for none —
/// or a `Result` of one whose error is [`Display`].
///
/// An error answers the event with
/// [`EventStatus::Error`](crate::EventStatus::Error) and the error's text:
/// the gateway drops a QoS 0 message and retries a QoS 1 message with
/// backoff, then sends it to the dead-letter topic.
pub trait IntoMqttOutput {
    /// Converts the handler's return value; `Err` holds the error message.
    fn into_mqtt_output(self) -> Result<Vec<Publish>, String>;
}

impl IntoMqttOutput for () {
    fn into_mqtt_output(self) -> Result<Vec<Publish>, String> {
        Ok(Vec::new())
    }
}

impl IntoMqttOutput for Publish {
    fn into_mqtt_output(self) -> Result<Vec<Publish>, String> {
        Ok(vec![self])
    }
}

impl IntoMqttOutput for Vec<Publish> {
    fn into_mqtt_output(self) -> Result<Vec<Publish>, String> {
        Ok(self)
    }
}

impl IntoMqttOutput for Option<Publish> {
    fn into_mqtt_output(self) -> Result<Vec<Publish>, String> {
        Ok(self.into_iter().collect())
    }
}

impl<T: IntoMqttOutput, E: Display> IntoMqttOutput for Result<T, E> {
    fn into_mqtt_output(self) -> Result<Vec<Publish>, String> {
        self.map_err(|error| error.to_string())?.into_mqtt_output()
    }
}

/// Encodes a handler's messages as an MqttOutput, refusing one the gateway
/// could not publish with a message that names it, rather than hand the
/// gateway an output it refuses.
pub(crate) fn encode_output(messages: &[Publish]) -> Result<Vec<u8>, String> {
    for (i, message) in messages.iter().enumerate() {
        let problem = if message.qos > 1 {
            format!("QoS {} is not 0 or 1", message.qos)
        } else if message.topic.contains(['+', '#']) {
            format!(
                "topic {:?}: a topic to publish to cannot contain the wildcards + or #",
                message.topic
            )
        } else {
            continue;
        };
        return Err(format!(
            "MQTT message {} of {}: {problem}",
            i + 1,
            messages.len()
        ));
    }
    Ok(MqttOutput {
        messages: messages
            .iter()
            .map(|m| MqttPublish {
                topic: &m.topic,
                qos: m.qos,
                retain: m.retain,
                payload: &m.payload,
            })
            .collect(),
    }
    .encode())
}

/// Publishes `payload` to `topic` with QoS `qos` (0 or 1), asking the
/// broker to retain it when `retain` is set, through the gateway's MQTT
/// client, during any event. The message is queued: `Ok` means the gateway
/// took it, not that the broker has it.
///
/// ```
/// use shanhai_sdk::{Error, HostError, Timer};
///
/// fn tick(_timer: &Timer) -> Result<(), Error> {
///     match shanhai_sdk::mqtt::publish("sensors/1/reading", b"{}", 0, false) {
///         Err(e) if e.kind() == HostError::Unavailable => {
///             shanhai_sdk::warn!("no MQTT client: {e}");
///             Ok(())
///         }
///         other => other,
///     }
/// }
/// # let _ = tick;
/// ```
///
/// # Errors
/// An [`Error`] whose [`kind`](Error::kind) is [`HostError::Denied`] when
/// no filter of the module's `mqtt_publish` grant matches `topic`;
/// [`HostError::InvalidArgument`] for an empty topic, one with the
/// wildcards `+` or `#`, or a QoS other than 0 or 1;
/// [`HostError::TooLarge`] beyond the gateway's `mqtt.max_payload_bytes`;
/// [`HostError::Unavailable`] when the gateway runs no MQTT client or its
/// queue is full. Its [`message`](Error::message) is the gateway's
/// explanation, when it gave one.
///
/// [`HostError::Denied`]: crate::HostError::Denied
/// [`HostError::InvalidArgument`]: crate::HostError::InvalidArgument
/// [`HostError::TooLarge`]: crate::HostError::TooLarge
/// [`HostError::Unavailable`]: crate::HostError::Unavailable
pub fn publish(topic: &str, payload: &[u8], qos: u8, retain: bool) -> Result<(), Error> {
    host::mqtt_publish(topic, payload, i32::from(qos), retain)
        .map_err(|kind| host::explain(import::MQTT_PUBLISH, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_the_envelope() {
        let message = Message::new("sensors/1/raw")
            .with_trigger("raw")
            .with_request_id("r-1")
            .with_qos(1)
            .with_retain(true)
            .with_attempt(3)
            .with_property("unit", "C")
            .with_property("unit", "K")
            .with_payload(vec![0, 255]);
        let envelope = message.encode("unused");
        assert_eq!(
            Message::from_wire(&MqttMessage::decode(&envelope).unwrap()),
            message
        );
        assert_eq!(message.property("unit"), Some(&b"K"[..]));
        assert_eq!(message.property("none"), None);
        let anonymous = Message::new("a").encode("mock-1");
        assert_eq!(
            MqttMessage::decode(&anonymous).unwrap().request_id,
            "mock-1"
        );
    }

    #[test]
    fn outputs_convert() {
        assert_eq!(().into_mqtt_output(), Ok(Vec::new()));
        let p = Publish::new("a", "x");
        assert_eq!(p.clone().into_mqtt_output(), Ok(vec![p.clone()]));
        assert_eq!(Some(p.clone()).into_mqtt_output(), Ok(vec![p.clone()]));
        assert_eq!(None::<Publish>.into_mqtt_output(), Ok(Vec::new()));
        let err: Result<Vec<Publish>, &str> = Err("bad payload");
        assert_eq!(err.into_mqtt_output(), Err("bad payload".to_owned()));
    }

    #[test]
    fn outputs_encode_and_refuse_what_cannot_be_published() {
        let messages = [
            Publish::to_output_topic("{}").with_qos(1),
            Publish::new("devices/1/cmd", vec![1]).with_retain(true),
        ];
        let bytes = encode_output(&messages).unwrap();
        let decoded = MqttOutput::decode(&bytes).unwrap();
        let back: Vec<Publish> = decoded.messages.iter().map(Publish::from_wire).collect();
        assert_eq!(back, messages);
        assert_eq!(
            encode_output(&[Publish::new("a", ""), Publish::new("a", "").with_qos(2)]),
            Err("MQTT message 2 of 2: QoS 2 is not 0 or 1".to_owned())
        );
        assert_eq!(
            encode_output(&[Publish::new("a/#", "")]),
            Err(
                "MQTT message 1 of 1: topic \"a/#\": a topic to publish to cannot contain \
                 the wildcards + or #"
                    .to_owned()
            )
        );
    }
}
