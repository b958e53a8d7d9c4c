package shanhai

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/shanhai-edge/shanhai/sdk/go/internal/hostcall"
	"github.com/shanhai-edge/shanhai/sdk/go/internal/wire"
)

// MQTTMessage is one MQTT message delivered to the module by a trigger of
// the gateway ([mqtt.triggers.NAME]): a message published to a topic that
// matches the trigger's filter.
type MQTTMessage struct {
	// Topic is the topic the message was published to (never a filter).
	Topic string
	// Trigger is the trigger's name, NAME in [mqtt.triggers.NAME].
	Trigger string
	// RequestID is the gateway's id of this event.
	RequestID string
	// QoS is the QoS the message was received with: 0 or 1.
	QoS byte
	// Retain is true when the broker delivered a retained message.
	Retain bool
	// Attempt is 1 for the first delivery to the module, 2 for the first
	// retry, ... (a QoS 1 message whose handler failed is retried).
	Attempt uint32
	// Properties holds the message's MQTT v5 user properties, plus
	// "$content_type", "$response_topic" and "$correlation_data" when the
	// message carries them; nil when there are none. A name that occurs
	// more than once keeps its last value.
	Properties map[string]string
	// Payload is the payload. It is a view of the event's envelope, valid
	// only until the handler returns: copy it to keep any part of it.
	Payload []byte
}

// MQTTPublish is a message for the gateway to publish, as an MQTT
// handler returns it.
type MQTTPublish struct {
	// Topic is the topic to publish to: a topic name, UTF-8 without the
	// wildcards + and #. Empty means the trigger's output_topic, a
	// template the gateway fills in from the input topic.
	Topic string
	// QoS is 0 or 1.
	QoS byte
	// Retain asks the broker to retain the message.
	Retain bool
	// Payload is the payload.
	Payload []byte
}

// mqttHandler is the handler registered with HandleMQTT, nil when there
// is none. Like httpHandler it is written in init and read during events.
var mqttHandler func(m *MQTTMessage) ([]MQTTPublish, error)

// HandleMQTT registers h as the handler for every MQTT message a trigger
// delivers to this module (event kind 5). h returns the messages to
// publish, in order (none is fine); the gateway publishes them, and only
// then acknowledges a QoS 1 message to the broker. Publishing to a topic
// other than the trigger's output_topic needs the module's mqtt_publish
// grant, as [PublishMQTT] does.
//
// An error fails the event (status error with the error's text), and so
// does a panic, which also logs its stack: the gateway drops a QoS 0
// message, and retries a QoS 1 message with backoff, then sends it to the
// dead-letter topic. A message may be delivered more than once (see
// [MQTTMessage.Attempt]), so h should be idempotent.
//
// Call it from an init function; a later call replaces the handler.
// Without a handler, MQTT events answer unsupported.
func HandleMQTT(h func(m *MQTTMessage) ([]MQTTPublish, error)) {
	if h == nil {
		panic("shanhai: HandleMQTT with a nil handler")
	}
	mqttHandler = h
}

// PublishMQTT publishes payload to topic with QoS qos (0 or 1), asking
// the broker to retain it when retain is set, through the gateway's MQTT
// client, during any event. The message is queued: nil means the gateway
// took it, not that the broker has it.
//
// It fails with an error matching [ErrDenied] when no filter of the
// module's mqtt_publish grant matches topic; [ErrInvalidArgument] for an
// empty topic, one with the wildcards + or #, or a QoS other than 0 or 1;
// [ErrTooLarge] beyond the gateway's mqtt.max_payload_bytes; and
// [ErrUnavailable] when the gateway runs no MQTT client or its queue is
// full. The error is a *[HostError] whose Message holds the gateway's
// explanation when it gave one.
func PublishMQTT(topic string, payload []byte, qos byte, retain bool) error {
	_, err := clearingResult("mqtt_publish", hostcall.MQTTPublish(topic, payload, int32(qos), retain))
	return err
}

// mqttSpans is reused by every MQTT event, like requestSpans.
var mqttSpans wire.MQTTMessageSpans

// mqttOut is the output buffer reused by every MQTT event.
var mqttOut []byte

// mqttEvent handles event kind 5.
func mqttEvent(in []byte) int32 {
	h := mqttHandler
	if h == nil {
		return statusUnsupported
	}
	s := &mqttSpans
	if err := s.Decode(in); err != nil {
		return fail("bad MQTT message envelope: " + err.Error())
	}
	head := string(in[:s.Payload])
	m := &MQTTMessage{
		Topic:     s.Topic.In(head),
		Trigger:   s.Trigger.In(head),
		RequestID: s.RequestID.In(head),
		QoS:       s.QoS,
		Retain:    s.Retain,
		Attempt:   s.Attempt,
		Payload:   in[s.Payload:len(in):len(in)],
	}
	if len(s.Properties) > 0 {
		m.Properties = make(map[string]string, len(s.Properties))
		for _, p := range s.Properties {
			m.Properties[p.Name.In(head)] = p.Value.In(head)
		}
	}
	out, err := h(m)
	if err != nil {
		return fail(err.Error())
	}
	if len(out) == 0 {
		return statusOK
	}
	buf := wire.AppendU32(mqttOut[:0], uint32(len(out)))
	for i, p := range out {
		if why := invalidOutput(p); why != "" {
			return fail(fmt.Sprintf("MQTT message %d of %d: %s", i+1, len(out), why))
		}
		buf = wire.AppendMQTTPublish(buf, p.Topic, p.QoS, p.Retain, p.Payload)
	}
	status := writeOutput(buf)
	// One large output should not pin its memory for the lifetime of a
	// pooled instance.
	if cap(buf) > bigBuffer {
		buf = nil
	}
	mqttOut = buf
	return status
}

// invalidOutput says why the gateway could not publish p, or "" if it
// can: the guest fails such an event itself, with a message that names
// the problem, rather than hand the gateway an output it refuses.
func invalidOutput(p MQTTPublish) string {
	switch {
	case p.QoS > 1:
		return fmt.Sprintf("QoS %d is not 0 or 1", p.QoS)
	case !utf8.ValidString(p.Topic):
		return "the topic is not valid UTF-8"
	case strings.ContainsAny(p.Topic, "+#"):
		return fmt.Sprintf("topic %q: a topic to publish to cannot contain the wildcards + or #", p.Topic)
	}
	return ""
}
