//! The MQTT envelopes: a message in ([`MqttMessage`], event kind 5) and the
//! messages a module publishes in reply ([`MqttOutput`]).

use super::{DecodeError, Header, Reader, put_field, put_headers};

/// An MQTT message delivered to a module, event kind
/// [`EventKind::Mqtt`](crate::EventKind::Mqtt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttMessage<'a> {
    /// The topic the message was published to (never a filter).
    pub topic: &'a str,
    /// The trigger's name (`[mqtt.triggers.NAME]` in the gateway's config).
    pub trigger: &'a str,
    /// The id of this event.
    pub request_id: &'a str,
    /// The QoS it was received with: 0 or 1.
    pub qos: u8,
    /// Whether the broker delivered it as a retained message.
    pub retain: bool,
    /// 1 for the first delivery to the module, 2 for the first retry, ...
    pub attempt: u32,
    /// MQTT v5 user properties, plus `$content_type`, `$response_topic`
    /// and `$correlation_data` when the message carries them.
    pub properties: Vec<Header<'a>>,
    /// The payload.
    pub payload: &'a [u8],
}

impl<'a> MqttMessage<'a> {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let properties: usize = self
            .properties
            .iter()
            .map(|p| 8 + p.name.len() + p.value.len())
            .sum();
        let mut out = Vec::with_capacity(
            3 * 4
                + self.topic.len()
                + self.trigger.len()
                + self.request_id.len()
                + 2
                + 4
                + 4
                + properties
                + self.payload.len(),
        );
        put_field(&mut out, self.topic.as_bytes());
        put_field(&mut out, self.trigger.as_bytes());
        put_field(&mut out, self.request_id.as_bytes());
        out.push(self.qos);
        out.push(u8::from(self.retain));
        out.extend_from_slice(&self.attempt.to_le_bytes());
        put_headers(&mut out, &self.properties);
        out.extend_from_slice(self.payload);
        out
    }

    /// Decodes a message.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        let topic = r.text("topic")?;
        let trigger = r.text("trigger name")?;
        let request_id = r.text("request id")?;
        let qos = r.take(1, "qos")?[0];
        let retain = r.take(1, "retain flag")?[0] != 0;
        let attempt = r.u32("attempt")?;
        let properties = r.headers()?;
        Ok(Self {
            topic,
            trigger,
            request_id,
            qos,
            retain,
            attempt,
            properties,
            payload: r.0,
        })
    }
}

/// One message to publish, as a module returns it from an MQTT event (or
/// any other event whose trigger publishes its output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttPublish<'a> {
    /// The topic; empty means the trigger's `output_topic`.
    pub topic: &'a str,
    /// 0 or 1.
    pub qos: u8,
    /// Ask the broker to retain it.
    pub retain: bool,
    /// The payload.
    pub payload: &'a [u8],
}

/// The output of an MQTT event: the messages to publish, in order. An empty
/// output (no bytes at all) publishes nothing, like a count of 0.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MqttOutput<'a> {
    /// The messages.
    pub messages: Vec<MqttPublish<'a>>,
}

impl<'a> MqttOutput<'a> {
    /// Encodes the output.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let count = u32::try_from(self.messages.len()).expect("more than 4 billion messages");
        out.extend_from_slice(&count.to_le_bytes());
        for m in &self.messages {
            put_field(&mut out, m.topic.as_bytes());
            out.push(m.qos);
            out.push(u8::from(m.retain));
            put_field(&mut out, m.payload);
        }
        out
    }

    /// Decodes an output; empty bytes are an empty output. Bytes after the
    /// last message are an error (a guest bug worth reporting).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        let mut r = Reader(bytes);
        // Each message needs at least two length prefixes and two flags.
        let count = r.count(10, "message count")?;
        let mut messages = Vec::with_capacity(count);
        for _ in 0..count {
            let topic = r.text("publish topic")?;
            let qos = r.take(1, "publish qos")?[0];
            let retain = r.take(1, "publish retain flag")?[0] != 0;
            let payload = r.field("publish payload")?;
            messages.push(MqttPublish {
                topic,
                qos,
                retain,
                payload,
            });
        }
        r.end("MQTT output")?;
        Ok(Self { messages })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = MqttMessage::decode(&bytes);
            let _ = MqttOutput::decode(&bytes);
        }

        #[test]
        fn messages_round_trip(
            topic in "[a-z0-9/]{1,30}",
            qos in 0u8..=1,
            retain in any::<bool>(),
            attempt in 1u32..10,
            payload in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            let message = MqttMessage {
                topic: &topic,
                trigger: "t",
                request_id: "r-1",
                qos,
                retain,
                attempt,
                properties: vec![Header { name: b"unit", value: b"C" }],
                payload: &payload,
            };
            let bytes = message.encode();
            prop_assert_eq!(MqttMessage::decode(&bytes).unwrap(), message);
        }

        #[test]
        fn outputs_round_trip(
            topics in proptest::collection::vec("[a-z0-9/]{0,20}", 0..5),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let output = MqttOutput {
                messages: topics
                    .iter()
                    .map(|t| MqttPublish { topic: t, qos: 1, retain: false, payload: &payload })
                    .collect(),
            };
            let bytes = output.encode();
            prop_assert_eq!(MqttOutput::decode(&bytes).unwrap(), output);
        }
    }

    #[test]
    fn empty_output_publishes_nothing_and_trailing_bytes_are_refused() {
        assert_eq!(MqttOutput::decode(&[]).unwrap().messages.len(), 0);
        let mut bytes = MqttOutput::default().encode();
        bytes.push(0);
        assert_eq!(
            MqttOutput::decode(&bytes),
            Err(DecodeError::Trailing("MQTT output"))
        );
    }
}
