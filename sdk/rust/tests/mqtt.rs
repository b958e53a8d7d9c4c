//! MQTT handlers and `mqtt::publish` end to end through the mock host,
//! using only the public API.

#![cfg(not(target_arch = "wasm32"))]

use std::cell::RefCell;
use std::rc::Rc;

use shanhai_abi::wire::{MqttMessage, MqttOutput, MqttPublish};
use shanhai_sdk::mock::{Failure, MockHost, Outcome};
use shanhai_sdk::mqtt::{self, Message, Publish};
use shanhai_sdk::{Error, EventKind, EventStatus, Handlers, HostError, LogLevel};

const KIND: i32 = EventKind::Mqtt as i32;

/// A host whose MQTT handler records every message and then answers with
/// `result`.
fn recording(
    result: impl Fn(&Message) -> Result<Vec<Publish>, String> + 'static,
) -> (MockHost, Rc<RefCell<Vec<Message>>>) {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let record = Rc::clone(&seen);
    let host = MockHost::new(Handlers::new().mqtt(move |message: &Message| {
        record.borrow_mut().push(message.clone());
        result(message)
    }));
    (host, seen)
}

fn error(message: &str) -> Failure {
    Failure {
        status: EventStatus::Error,
        message: message.into(),
    }
}

#[test]
fn the_handler_sees_the_message() {
    let (mut host, seen) = recording(|_| Ok(Vec::new()));
    let message = Message::new("sensors/258/raw")
        .with_trigger("transform")
        .with_request_id("r-6")
        .with_qos(1)
        .with_retain(true)
        .with_attempt(2)
        .with_property("unit", "centi")
        .with_property("$correlation_data", vec![0, 255])
        .with_payload(vec![1, 2, 3]);
    assert_eq!(host.mqtt(&message).unwrap(), []);
    let seen = seen.borrow();
    assert_eq!(*seen, [message]);
    let seen = &seen[0];
    assert_eq!(
        (seen.topic(), seen.trigger(), seen.request_id()),
        ("sensors/258/raw", "transform", "r-6")
    );
    assert_eq!((seen.qos(), seen.retain(), seen.attempt()), (1, true, 2));
    assert_eq!(seen.property("unit"), Some(&b"centi"[..]));
    assert_eq!(seen.property("$correlation_data"), Some(&[0, 255][..]));
    assert_eq!(seen.properties().len(), 2);
    assert_eq!(seen.payload(), [1, 2, 3]);
}

#[test]
fn messages_without_a_request_id_get_one() {
    let (mut host, seen) = recording(|_| Ok(Vec::new()));
    host.mqtt(&Message::new("a")).unwrap();
    host.mqtt(&Message::new("a")).unwrap();
    let ids: Vec<String> = seen
        .borrow()
        .iter()
        .map(|m| m.request_id().to_owned())
        .collect();
    assert_eq!(ids, ["mock-1", "mock-2"]);
}

#[test]
fn the_handlers_messages_are_the_output() {
    let out = vec![
        Publish::to_output_topic(r#"{"t":21.5}"#),
        Publish::new("devices/258/cmd", vec![1, 2])
            .with_qos(1)
            .with_retain(true),
    ];
    let returned = out.clone();
    let (mut host, _) = recording(move |_| Ok(returned.clone()));
    assert_eq!(host.mqtt(&Message::new("sensors/1/raw")).unwrap(), out);

    // The raw output is an MqttOutput envelope.
    let envelope = Message::new("sensors/1/raw");
    let raw = host.event(
        KIND,
        &MqttMessage {
            topic: envelope.topic(),
            trigger: "",
            request_id: "r",
            qos: 0,
            retain: false,
            attempt: 1,
            properties: Vec::new(),
            payload: b"",
        }
        .encode(),
    );
    let expected = MqttOutput {
        messages: out
            .iter()
            .map(|p| MqttPublish {
                topic: p.topic(),
                qos: p.qos(),
                retain: p.retain(),
                payload: p.payload(),
            })
            .collect(),
    }
    .encode();
    assert_eq!(
        raw,
        Outcome {
            status: EventStatus::Ok,
            output: expected
        }
    );
}

#[test]
fn nothing_to_publish_writes_no_output() {
    let (mut host, _) = recording(|_| Ok(Vec::new()));
    let envelope = MqttMessage {
        topic: "a",
        trigger: "t",
        request_id: "r",
        qos: 1,
        retain: false,
        attempt: 1,
        properties: Vec::new(),
        payload: b"x",
    }
    .encode();
    assert_eq!(
        host.event(KIND, &envelope),
        Outcome {
            status: EventStatus::Ok,
            output: Vec::new()
        }
    );
}

#[test]
fn every_return_type_works() {
    let mut host = MockHost::new(Handlers::new().mqtt(|m: &Message| match m.topic() {
        "one" => Some(Publish::new("out", "1")),
        _ => None,
    }));
    assert_eq!(
        host.mqtt(&Message::new("one")).unwrap(),
        [Publish::new("out", "1")]
    );
    assert_eq!(host.mqtt(&Message::new("two")).unwrap(), []);
    let mut host = MockHost::new(Handlers::new().mqtt(|_: &Message| ()));
    assert_eq!(host.mqtt(&Message::new("a")).unwrap(), []);
    let mut host =
        MockHost::new(Handlers::new().mqtt(|m: &Message| Publish::new("echo", m.payload())));
    assert_eq!(
        host.mqtt(&Message::new("a").with_payload("p")).unwrap(),
        [Publish::new("echo", "p")]
    );
}

#[test]
fn errors_fail_the_event() {
    let (mut host, _) = recording(|m| {
        if m.payload().len() == 13 {
            Ok(vec![Publish::to_output_topic("ok")])
        } else {
            Err(format!("payload of {} bytes, want 13", m.payload().len()))
        }
    });
    assert_eq!(
        host.mqtt(&Message::new("a").with_payload("abc"))
            .unwrap_err(),
        error("payload of 3 bytes, want 13")
    );
    assert_eq!(
        host.mqtt(&Message::new("a").with_payload(vec![0; 13]))
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn messages_the_gateway_cannot_publish_fail_the_event() {
    let (mut host, _) = recording(|m| {
        Ok(vec![
            Publish::new("fine", ""),
            match m.topic() {
                "qos" => Publish::new("a", "").with_qos(2),
                _ => Publish::new("a/+/b", ""),
            },
        ])
    });
    assert_eq!(
        host.mqtt(&Message::new("qos")).unwrap_err(),
        error("MQTT message 2 of 2: QoS 2 is not 0 or 1")
    );
    assert_eq!(
        host.mqtt(&Message::new("wildcard")).unwrap_err(),
        error(
            "MQTT message 2 of 2: topic \"a/+/b\": a topic to publish to cannot contain the \
             wildcards + or #"
        )
    );
}

#[test]
fn outputs_over_the_limit_fail_with_a_message() {
    let mut host =
        MockHost::new(Handlers::new().mqtt(|_: &Message| Publish::to_output_topic(vec![0; 100])))
            .with_max_response_bytes(100);
    let failure = host.mqtt(&Message::new("a")).unwrap_err();
    assert_eq!(failure.status, EventStatus::Error);
    assert!(
        failure
            .message
            .starts_with("cannot write the 114-byte result"),
        "{}",
        failure.message
    );
}

#[test]
fn modules_without_an_mqtt_handler_answer_unsupported() {
    let mut host = MockHost::new(Handlers::new().function("f", |_: &[u8]| Vec::new()));
    assert_eq!(
        host.mqtt(&Message::new("a")).unwrap_err(),
        Failure {
            status: EventStatus::Unsupported,
            message: String::new()
        }
    );
}

#[test]
fn malformed_envelopes_fail_the_event() {
    let (mut host, seen) = recording(|_| Ok(Vec::new()));
    let outcome = host.event(KIND, &[1, 0, 0]);
    assert_eq!(outcome.status, EventStatus::Error);
    assert_eq!(
        String::from_utf8(outcome.output).unwrap(),
        "malformed MQTT message envelope: envelope truncated in topic"
    );
    assert!(seen.borrow().is_empty());
}

/// A host whose MQTT handler publishes the message's payload to the topic
/// its own payload names, with `qos`, and reports the outcome as its
/// output.
fn publisher(qos: u8) -> MockHost {
    MockHost::new(Handlers::new().mqtt(move |m: &Message| {
        let topic = std::str::from_utf8(m.payload()).unwrap();
        let outcome = match mqtt::publish(topic, b"{}", qos, true) {
            Ok(()) => "ok".to_owned(),
            Err(e) => {
                shanhai_sdk::warn!("{e}");
                format!("{:?} {:?}", e.kind(), e.message())
            }
        };
        Publish::to_output_topic(outcome)
    }))
}

fn publish_outcome(host: &mut MockHost, topic: &str) -> String {
    let out = host.mqtt(&Message::new("in").with_payload(topic)).unwrap();
    String::from_utf8(out[0].payload().to_vec()).unwrap()
}

#[test]
fn publish_reaches_a_granted_topic() {
    let mut host = publisher(1).with_mqtt_grant("devices/+/cmd");
    assert_eq!(publish_outcome(&mut host, "devices/7/cmd"), "ok");
    assert_eq!(
        host.mqtt_published(),
        [Publish::new("devices/7/cmd", "{}")
            .with_qos(1)
            .with_retain(true)]
    );
}

#[test]
fn publish_failures_carry_the_hosts_explanation() {
    let mut host = publisher(0);
    assert_eq!(
        publish_outcome(&mut host, "a/b"),
        r#"Denied Some("no mqtt_publish grant matches topic `a/b`")"#
    );
    assert_eq!(
        host.logs()[0].message,
        "mqtt_publish failed: denied: no mqtt_publish grant matches topic `a/b`"
    );
    assert_eq!(host.logs()[0].level, LogLevel::Warn);

    let mut host = publisher(0).with_mqtt_grant("#");
    for (topic, expected) in [
        ("", r#"InvalidArgument Some("the topic is empty")"#),
        (
            "a/#",
            r#"InvalidArgument Some("a topic to publish to cannot contain the wildcards + or #")"#,
        ),
        ("a\0b", r#"InvalidArgument Some("the topic contains NUL")"#),
    ] {
        assert_eq!(publish_outcome(&mut host, topic), expected, "{topic:?}");
    }
    let mut host = publisher(2).with_mqtt_grant("#");
    assert_eq!(
        publish_outcome(&mut host, "a"),
        r#"InvalidArgument Some("qos must be 0 or 1")"#
    );
    let mut host = publisher(0)
        .with_mqtt_grant("#")
        .with_max_mqtt_payload_bytes(1);
    assert_eq!(publish_outcome(&mut host, "a"), "TooLarge None");
    assert!(host.mqtt_published().is_empty());
}

#[test]
fn publish_failures_can_be_simulated() {
    let mut host = publisher(0).with_mqtt_grant("a");
    host.set_mqtt_failure(Some((
        HostError::Unavailable,
        "MQTT is not enabled in this gateway",
    )));
    assert_eq!(
        publish_outcome(&mut host, "a"),
        r#"Unavailable Some("MQTT is not enabled in this gateway")"#
    );
    // The grant is checked first.
    assert_eq!(
        publish_outcome(&mut host, "b"),
        r#"Denied Some("no mqtt_publish grant matches topic `b`")"#
    );
    host.set_mqtt_failure(Some((HostError::Unavailable, "")));
    assert_eq!(publish_outcome(&mut host, "a"), "Unavailable None");
    host.set_mqtt_failure(None);
    assert_eq!(publish_outcome(&mut host, "a"), "ok");
    assert_eq!(host.mqtt_published().len(), 1);
}

/// `mqtt_publish` clears the stage, so a failure without an explanation
/// never reports the value an earlier call staged.
#[test]
fn a_failure_without_explanation_does_not_pick_up_a_staged_value() {
    let mut host = MockHost::new(Handlers::new().mqtt(|_: &Message| -> Result<(), Error> {
        let staged = shanhai_sdk::config("secret").unwrap();
        assert_eq!(staged.as_deref(), Some("a staged value"));
        mqtt::publish("a", b"", 0, false)
    }))
    .with_config("secret", "a staged value")
    .with_mqtt_grant("a");
    host.set_mqtt_failure(Some((HostError::Unavailable, "")));
    assert_eq!(
        host.mqtt(&Message::new("in")).unwrap_err(),
        error("mqtt_publish failed: unavailable")
    );
}

/// `publish` works from any event, for example a timer run.
#[test]
fn timers_may_publish() {
    let mut host = MockHost::new(Handlers::new().timer(|timer: &shanhai_sdk::Timer| {
        mqtt::publish(&format!("sensors/{}/reading", timer.run()), b"{}", 0, false)
    }))
    .with_mqtt_grant("sensors/+/reading");
    host.timer(&shanhai_sdk::Timer::new("poll").with_run(3))
        .unwrap();
    assert_eq!(
        host.mqtt_published(),
        [Publish::new("sensors/3/reading", "{}")]
    );
    let mut host = MockHost::new(
        Handlers::new().timer(|_: &shanhai_sdk::Timer| mqtt::publish("elsewhere", b"{}", 0, false)),
    );
    assert_eq!(
        host.timer(&shanhai_sdk::Timer::new("poll")).unwrap_err(),
        error("mqtt_publish failed: denied: no mqtt_publish grant matches topic `elsewhere`")
    );
}
