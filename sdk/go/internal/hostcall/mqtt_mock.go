//go:build !wasm

package hostcall

import (
	"slices"
	"strings"
	"unicode/utf8"
)

// The mock host's MQTT client: what mqtt_publish does in the gateway for
// one module, minus the broker. It checks the topic, the QoS and the
// module's mqtt_publish grant as the runtime does, stages the same
// explanations on failure, and records what it accepted. Everything is
// guarded by mu.

// MQTTPublication is one message mqtt_publish accepted.
type MQTTPublication struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
}

// maxMQTTTopic is the longest topic MQTT can carry (a u16 length).
const maxMQTTTopic = 65535

var (
	mqttGrants     []string
	mqttPublished  []MQTTPublication
	mqttFailStatus int32 // 0: publications that pass the checks are accepted
	mqttFailMsg    string
	maxMQTTPayload int // 0: no limit
)

func resetMQTT() {
	mqttGrants, mqttPublished = nil, nil
	mqttFailStatus, mqttFailMsg = 0, ""
	maxMQTTPayload = 0
}

// SetMQTTGrants replaces the module's mqtt_publish grant: the topic
// filters (with + and # wildcards) it may publish to. None, the default,
// denies every topic, as the gateway does.
func SetMQTTGrants(filters []string) {
	mu.Lock()
	defer mu.Unlock()
	mqttGrants = slices.Clone(filters)
}

// SetMQTTFailure makes every mqtt_publish that passes the checks fail with
// status (a negative host status), staging message when it is not empty,
// the way a gateway without MQTT or with a full queue answers. Status 0
// accepts them again.
func SetMQTTFailure(status int32, message string) {
	mu.Lock()
	defer mu.Unlock()
	mqttFailStatus, mqttFailMsg = status, message
}

// SetMaxMQTTPayload sets the largest payload mqtt_publish accepts, the
// gateway's mqtt.max_payload_bytes; 0 removes the limit.
func SetMaxMQTTPayload(n int) {
	mu.Lock()
	defer mu.Unlock()
	maxMQTTPayload = n
}

// MQTTPublished returns a copy of the messages accepted so far, oldest
// first.
func MQTTPublished() []MQTTPublication {
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(mqttPublished)
}

// MQTTPublish queues an MQTT message on topic: the checks and the
// explanations of crates/runtime's host/mqtt.rs, then the failure set
// with SetMQTTFailure, then the payload limit.
func MQTTPublish(topic string, payload []byte, qos int32, retain bool) int32 {
	mu.Lock()
	defer mu.Unlock()
	staged, hasStaged = nil, false
	if !utf8.ValidString(topic) {
		return StatusInvalidArgument
	}
	if why := invalidTopic(topic); why != "" {
		return stageFailure(StatusInvalidArgument, why)
	}
	if qos != 0 && qos != 1 {
		return stageFailure(StatusInvalidArgument, "qos must be 0 or 1")
	}
	if !slices.ContainsFunc(mqttGrants, func(filter string) bool { return TopicMatches(filter, topic) }) {
		return stageFailure(StatusDenied, "no mqtt_publish grant matches topic `"+topic+"`")
	}
	if mqttFailStatus != 0 {
		return stageFailure(mqttFailStatus, mqttFailMsg)
	}
	if maxMQTTPayload > 0 && len(payload) > maxMQTTPayload {
		return StatusTooLarge
	}
	mqttPublished = append(mqttPublished, MQTTPublication{
		Topic: topic, Payload: slices.Clone(payload), QoS: byte(qos), Retain: retain,
	})
	return 0
}

// stageFailure stages message, when there is one, as the explanation of a
// failed call and returns status. mu is held.
func stageFailure(status int32, message string) int32 {
	if message != "" {
		staged, hasStaged = []byte(message), true
	}
	return status
}

// invalidTopic says why topic cannot be published to, or "" if it can
// (MQTT 3.1.1 §4.7.3: topic names are non-empty UTF-8 without wildcards or
// NUL).
func invalidTopic(topic string) string {
	switch {
	case topic == "":
		return "the topic is empty"
	case strings.ContainsAny(topic, "+#"):
		return "a topic to publish to cannot contain the wildcards + or #"
	case strings.ContainsRune(topic, 0):
		return "the topic contains NUL"
	case len(topic) > maxMQTTTopic:
		return "the topic is longer than 65,535 bytes"
	}
	return ""
}

// TopicMatches reports whether the MQTT topic filter filter matches topic
// (MQTT 3.1.1 §4.7: + is one level, a final # the rest, including none;
// topics starting with $ match no filter starting with a wildcard), as
// the gateway matches grants and subscriptions.
func TopicMatches(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	levels := strings.Split(topic, "/")
	filters := strings.Split(filter, "/")
	for i, f := range filters {
		if f == "#" {
			return i == len(filters)-1
		}
		if i >= len(levels) || (f != "+" && f != levels[i]) {
			return false
		}
	}
	return len(levels) == len(filters)
}
