//go:build !wasm

package shanhaitest

import (
	"errors"
	"maps"
	"slices"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/internal/hostcall"
	"github.com/shanhai-edge/shanhai/sdk/go/internal/wire"
)

// DeliverMQTT delivers m to the guest's MQTT handler (see
// [shanhai.HandleMQTT]), as a trigger of the gateway does with a message
// that matches its filter, and returns the messages the handler returned
// for the gateway to publish: the event's output, decoded. A message
// whose Topic is empty goes to the trigger's output_topic.
//
// The handler's error (or panic) is an *[EventError] with status error and
// its message; a module without an MQTT handler answers unsupported, also
// an *EventError. An output the gateway would refuse as malformed is an
// error too.
//
// The gateway never sends an Attempt of 0 or an empty RequestID, so
// DeliverMQTT fills them in: Attempt 1 (the first delivery) and a fresh
// id. Properties are sent sorted by name.
func DeliverMQTT(m shanhai.MQTTMessage) ([]shanhai.MQTTPublish, error) {
	if m.Attempt == 0 {
		m.Attempt = 1
	}
	if m.RequestID == "" {
		m.RequestID = newRequestID()
	}
	ev := wire.MQTTMessage{
		Topic:     m.Topic,
		Trigger:   m.Trigger,
		RequestID: m.RequestID,
		QoS:       m.QoS,
		Retain:    m.Retain,
		Attempt:   m.Attempt,
		Payload:   m.Payload,
	}
	for _, name := range slices.Sorted(maps.Keys(m.Properties)) {
		ev.Properties = append(ev.Properties, wire.Header{Name: name, Value: m.Properties[name]})
	}
	status, out := Dispatch(KindMQTT, ev.Append(nil))
	if status != StatusOK {
		return nil, &EventError{Status: status, Message: string(out)}
	}
	o, err := wire.DecodeMQTTOutput(out)
	if err != nil {
		return nil, errors.New("shanhaitest: malformed MQTT output: " + err.Error())
	}
	var msgs []shanhai.MQTTPublish
	for _, p := range o.Messages {
		msgs = append(msgs, shanhai.MQTTPublish{Topic: p.Topic, QoS: p.QoS, Retain: p.Retain, Payload: p.Payload})
	}
	return msgs, nil
}

// GrantMQTTPublish sets the module's mqtt_publish grant, the topic filters
// (with the wildcards + and #) that [shanhai.PublishMQTT] may publish to,
// as `[modules.NAME.grants] mqtt_publish = [...]` does in the gateway's
// config. With none, the default after Reset, every topic is denied.
func GrantMQTTPublish(filters ...string) { hostcall.SetMQTTGrants(filters) }

// FailMQTTPublish makes every [shanhai.PublishMQTT] that passes the
// checks of topic, QoS and grant fail with the status of err, one of the
// SDK's sentinels such as [shanhai.ErrUnavailable], and message as the
// gateway's explanation (may be empty) — the way a gateway without an
// MQTT client, or with a full queue, answers. FailMQTTPublish(nil, "")
// makes them succeed again.
//
// It panics if err is not nil and not a *[shanhai.HostError].
func FailMQTTPublish(err error, message string) {
	if err == nil {
		hostcall.SetMQTTFailure(0, "")
		return
	}
	var he *shanhai.HostError
	if !errors.As(err, &he) {
		panic("shanhaitest: FailMQTTPublish with an error that is not a *shanhai.HostError")
	}
	hostcall.SetMQTTFailure(he.Status, message)
}

// SetMaxMQTTPayload sets the largest payload [shanhai.PublishMQTT]
// accepts, the gateway's mqtt.max_payload_bytes; 0, the default after
// Reset, removes the limit.
func SetMaxMQTTPayload(n int) { hostcall.SetMaxMQTTPayload(n) }

// MQTTPublished returns the messages the guest published with
// [shanhai.PublishMQTT] since the last Reset, oldest first; only those the
// host accepted.
func MQTTPublished() []shanhai.MQTTPublish {
	var msgs []shanhai.MQTTPublish
	for _, p := range hostcall.MQTTPublished() {
		msgs = append(msgs, shanhai.MQTTPublish{Topic: p.Topic, QoS: p.QoS, Retain: p.Retain, Payload: p.Payload})
	}
	return msgs
}

// TopicMatches reports whether the MQTT topic filter filter (with the
// wildcards + and #) matches topic, as the gateway matches triggers'
// filters and mqtt_publish grants.
func TopicMatches(filter, topic string) bool { return hostcall.TopicMatches(filter, topic) }
