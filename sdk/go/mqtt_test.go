//go:build !wasm

package shanhai_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/internal/wire"
	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

// handleMQTT resets the mock host and registers h as the MQTT handler.
func handleMQTT(t *testing.T, h func(m *shanhai.MQTTMessage) ([]shanhai.MQTTPublish, error)) {
	t.Helper()
	shanhaitest.Reset()
	shanhai.HandleMQTT(h)
}

func TestMQTTHandlerSeesTheMessage(t *testing.T) {
	var got shanhai.MQTTMessage
	handleMQTT(t, func(m *shanhai.MQTTMessage) ([]shanhai.MQTTPublish, error) {
		got = *m
		got.Payload = bytes.Clone(m.Payload)
		return nil, nil
	})
	want := shanhai.MQTTMessage{
		Topic:      "sensors/258/raw",
		Trigger:    "transform",
		RequestID:  "r-6",
		QoS:        1,
		Retain:     true,
		Attempt:    3,
		Properties: map[string]string{"unit": "centi", "$content_type": "application/octet-stream"},
		Payload:    []byte{1, 2, 3},
	}
	out, err := shanhaitest.DeliverMQTT(want)
	if err != nil || out != nil {
		t.Fatalf("DeliverMQTT: %v, %v", out, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("handler saw\n %+v\nwant\n %+v", got, want)
	}
}

// The gateway never sends attempt 0 or an empty request id; DeliverMQTT
// fills them in, and a message without properties has nil Properties.
func TestDeliverMQTTDefaults(t *testing.T) {
	var got shanhai.MQTTMessage
	handleMQTT(t, func(m *shanhai.MQTTMessage) ([]shanhai.MQTTPublish, error) {
		got = *m
		return nil, nil
	})
	if _, err := shanhaitest.DeliverMQTT(shanhai.MQTTMessage{Topic: "a"}); err != nil {
		t.Fatal(err)
	}
	if got.Attempt != 1 || !strings.HasPrefix(got.RequestID, "shanhaitest-") || got.Properties != nil ||
		len(got.Payload) != 0 || got.QoS != 0 || got.Retain {
		t.Errorf("handler saw %+v", got)
	}
}

// The handler's messages are the event's output, in order, as an
// MqttOutput envelope.
func TestMQTTHandlerOutput(t *testing.T) {
	want := []shanhai.MQTTPublish{
		{Payload: []byte(`{"t":21.5}`)},
		{Topic: "devices/258/cmd", QoS: 1, Retain: true, Payload: []byte{1, 2}},
		{Topic: "empty/payload"},
	}
	handleMQTT(t, func(*shanhai.MQTTMessage) ([]shanhai.MQTTPublish, error) { return want, nil })
	got, err := shanhaitest.DeliverMQTT(shanhai.MQTTMessage{Topic: "sensors/1/raw"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i].Topic != want[i].Topic || got[i].QoS != want[i].QoS || got[i].Retain != want[i].Retain ||
			!bytes.Equal(got[i].Payload, want[i].Payload) {
			t.Errorf("message %d: %+v, want %+v", i, got[i], want[i])
		}
	}

	ev := (&wire.MQTTMessage{Topic: "sensors/1/raw", Attempt: 1}).Append(nil)
	status, out := shanhaitest.Dispatch(shanhaitest.KindMQTT, ev)
	var o wire.MQTTOutput
	for _, m := range want {
		o.Messages = append(o.Messages, wire.MQTTPublish{Topic: m.Topic, QoS: m.QoS, Retain: m.Retain, Payload: m.Payload})
	}
	if status != shanhaitest.StatusOK || !bytes.Equal(out, o.Append(nil)) {
		t.Errorf("status %d, output %x\nwant %x", status, out, o.Append(nil))
	}
}

// A handler may publish the payload it was given: the output is encoded
// before the event's envelope is reused.
func TestMQTTHandlerEchoesThePayload(t *testing.T) {
	handleMQTT(t, func(m *shanhai.MQTTMessage) ([]shanhai.MQTTPublish, error) {
		return []shanhai.MQTTPublish{{Topic: "echo/" + m.Topic, Payload: m.Payload}}, nil
	})
	for _, p := range []string{"one", "two, longer"} {
		got, err := shanhaitest.DeliverMQTT(shanhai.MQTTMessage{Topic: "in", Payload: []byte(p)})
		if err != nil || len(got) != 1 || got[0].Topic != "echo/in" || string(got[0].Payload) != p {
			t.Errorf("%q: %+v, %v", p, got, err)
		}
	}
}

// Nothing to publish is no output at all.
func TestMQTTNothingToPublish(t *testing.T) {
	handleMQTT(t, func(*shanhai.MQTTMessage) ([]shanhai.MQTTPublish, error) {
		return []shanhai.MQTTPublish{}, nil
	})
	ev := (&wire.MQTTMessage{Topic: "a", Attempt: 1}).Append(nil)
	if status, out := shanhaitest.Dispatch(shanhaitest.KindMQTT, ev); status != shanhaitest.StatusOK || len(out) != 0 {
		t.Errorf("status %d, output %q", status, out)
	}
}

func TestMQTTHandlerError(t *testing.T) {
	handleMQTT(t, func(m *shanhai.MQTTMessage) ([]shanhai.MQTTPublish, error) {
		return []shanhai.MQTTPublish{{Topic: "ignored"}}, errors.New("payload of 3 bytes, want 13")
	})
	_, err := shanhaitest.DeliverMQTT(shanhai.MQTTMessage{Topic: "a", Payload: []byte("abc")})
	wantEventError(t, err, shanhaitest.StatusError, "payload of 3 bytes, want 13")
}

// A panic fails the event like an error, logs its stack, and leaves the
// instance usable.
func TestMQTTHandlerPanic(t *testing.T) {
	handleMQTT(t, func(m *shanhai.MQTTMessage) ([]shanhai.MQTTPublish, error) {
		if string(m.Payload) == "boom" {
			panic("exploded")
		}
		return []shanhai.MQTTPublish{{Topic: "ok"}}, nil
	})
	_, err := shanhaitest.DeliverMQTT(shanhai.MQTTMessage{Topic: "a", Payload: []byte("boom")})
	wantEventError(t, err, shanhaitest.StatusError, "panic: exploded")
	logs := shanhaitest.Logs()
	if len(logs) != 1 || logs[0].Level != 4 || !strings.HasPrefix(logs[0].Text, "panic: exploded\n") {
		t.Errorf("logs %+v, want the panic with its stack", logs)
	}
	if got, err := shanhaitest.DeliverMQTT(shanhai.MQTTMessage{Topic: "a"}); err != nil || len(got) != 1 {
		t.Errorf("the message after a panic: %+v, %v", got, err)
	}
}

// A message the gateway could not publish fails the event in the guest,
// with a message that names it.
func TestMQTTInvalidOutput(t *testing.T) {
	for _, tc := range []struct {
		msg  shanhai.MQTTPublish
		want string
	}{
		{shanhai.MQTTPublish{Topic: "a", QoS: 2}, "MQTT message 2 of 2: QoS 2 is not 0 or 1"},
		{shanhai.MQTTPublish{Topic: "a/+"}, `MQTT message 2 of 2: topic "a/+": a topic to publish to cannot contain the wildcards + or #`},
		{shanhai.MQTTPublish{Topic: "#"}, `MQTT message 2 of 2: topic "#": a topic to publish to cannot contain the wildcards + or #`},
		{shanhai.MQTTPublish{Topic: "a\xff"}, "MQTT message 2 of 2: the topic is not valid UTF-8"},
	} {
		handleMQTT(t, func(*shanhai.MQTTMessage) ([]shanhai.MQTTPublish, error) {
			return []shanhai.MQTTPublish{{Topic: "fine"}, tc.msg}, nil
		})
		_, err := shanhaitest.DeliverMQTT(shanhai.MQTTMessage{Topic: "in"})
		wantEventError(t, err, shanhaitest.StatusError, tc.want)
	}
}

// An output over max_response_bytes fails the event with a message.
func TestMQTTOutputTooLarge(t *testing.T) {
	handleMQTT(t, func(*shanhai.MQTTMessage) ([]shanhai.MQTTPublish, error) {
		return []shanhai.MQTTPublish{{Payload: make([]byte, 100)}}, nil
	})
	shanhaitest.SetMaxOutput(100)
	_, err := shanhaitest.DeliverMQTT(shanhai.MQTTMessage{Topic: "in"})
	var ee *shanhaitest.EventError
	if !errors.As(err, &ee) || !strings.Contains(ee.Message, "output of 114 bytes refused") {
		t.Errorf("got %v", err)
	}
}

func TestPublishMQTT(t *testing.T) {
	handleMQTT(t, func(m *shanhai.MQTTMessage) ([]shanhai.MQTTPublish, error) {
		return nil, shanhai.PublishMQTT("devices/7/cmd", m.Payload, 1, true)
	})
	shanhaitest.GrantMQTTPublish("devices/+/cmd")
	if _, err := shanhaitest.DeliverMQTT(shanhai.MQTTMessage{Topic: "in", Payload: []byte("on")}); err != nil {
		t.Fatal(err)
	}
	want := []shanhai.MQTTPublish{{Topic: "devices/7/cmd", QoS: 1, Retain: true, Payload: []byte("on")}}
	if got := shanhaitest.MQTTPublished(); !reflect.DeepEqual(got, want) {
		t.Errorf("published %+v, want %+v", got, want)
	}
	shanhaitest.Reset()
	if got := shanhaitest.MQTTPublished(); got != nil {
		t.Errorf("after Reset: %+v", got)
	}
}

// Every failure is a *HostError that matches its sentinel and carries the
// host's explanation.
func TestPublishMQTTFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func()
		topic   string
		qos     byte
		payload int
		is      error
		want    string
	}{
		{"no grant", func() {}, "a/b", 0, 1, shanhai.ErrDenied,
			"shanhai: mqtt_publish: denied: no mqtt_publish grant matches topic `a/b`"},
		{"outside the grant", func() { shanhaitest.GrantMQTTPublish("devices/+/cmd", "x/#") }, "devices/1/2/cmd", 0, 1,
			shanhai.ErrDenied, "shanhai: mqtt_publish: denied: no mqtt_publish grant matches topic `devices/1/2/cmd`"},
		{"empty topic", func() { shanhaitest.GrantMQTTPublish("#") }, "", 0, 1, shanhai.ErrInvalidArgument,
			"shanhai: mqtt_publish: invalid argument: the topic is empty"},
		{"wildcard", func() { shanhaitest.GrantMQTTPublish("#") }, "a/+", 0, 1, shanhai.ErrInvalidArgument,
			"shanhai: mqtt_publish: invalid argument: a topic to publish to cannot contain the wildcards + or #"},
		{"QoS 2", func() { shanhaitest.GrantMQTTPublish("#") }, "a", 2, 1, shanhai.ErrInvalidArgument,
			"shanhai: mqtt_publish: invalid argument: qos must be 0 or 1"},
		{"not UTF-8", func() { shanhaitest.GrantMQTTPublish("#") }, "a\xff", 0, 1, shanhai.ErrInvalidArgument,
			"shanhai: mqtt_publish: invalid argument"},
		{"too large", func() { shanhaitest.GrantMQTTPublish("#"); shanhaitest.SetMaxMQTTPayload(4) }, "a", 0, 5,
			shanhai.ErrTooLarge, "shanhai: mqtt_publish: too large"},
		{"no MQTT client", func() {
			shanhaitest.GrantMQTTPublish("#")
			shanhaitest.FailMQTTPublish(shanhai.ErrUnavailable, "MQTT is not enabled in this gateway")
		}, "a", 0, 1, shanhai.ErrUnavailable, "shanhai: mqtt_publish: unavailable: MQTT is not enabled in this gateway"},
		// mqtt_publish clears what config_get staged, so a failure without
		// an explanation does not pick up the config value.
		{"queue full, after config_get", func() {
			shanhaitest.GrantMQTTPublish("#")
			shanhaitest.SetConfig("k", "a staged config value")
			shanhaitest.FailMQTTPublish(shanhai.ErrUnavailable, "")
		}, "a", 0, 1, shanhai.ErrUnavailable, "shanhai: mqtt_publish: unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			shanhaitest.Reset()
			shanhai.Export("publish", func([]byte) ([]byte, error) {
				if _, err := shanhai.Config("k"); err != nil && !errors.Is(err, shanhai.ErrNotFound) {
					return nil, err
				}
				err = shanhai.PublishMQTT(tc.topic, make([]byte, tc.payload), tc.qos, false)
				return nil, nil
			})
			tc.setup()
			if _, callErr := shanhaitest.Call("publish", nil); callErr != nil {
				t.Fatal(callErr)
			}
			var he *shanhai.HostError
			if !errors.Is(err, tc.is) || !errors.As(err, &he) || he.Func != "mqtt_publish" || err.Error() != tc.want {
				t.Errorf("got %v, want %q", err, tc.want)
			}
			if got := shanhaitest.MQTTPublished(); got != nil {
				t.Errorf("published %+v", got)
			}
		})
	}
	// Back to normal, the same call succeeds.
	shanhaitest.FailMQTTPublish(nil, "")
	shanhaitest.SetMaxMQTTPayload(0)
	shanhaitest.GrantMQTTPublish("a")
	shanhai.Export("publish", func([]byte) ([]byte, error) { return nil, shanhai.PublishMQTT("a", nil, 0, false) })
	if _, err := shanhaitest.Call("publish", nil); err != nil || len(shanhaitest.MQTTPublished()) != 1 {
		t.Errorf("after the failures: %v, %+v", err, shanhaitest.MQTTPublished())
	}
}

func TestHostErrorMessages(t *testing.T) {
	err := &shanhai.HostError{Func: "kv_cas", Status: -8}
	if err.Error() != "shanhai: kv_cas: conflict" || !errors.Is(err, shanhai.ErrConflict) || errors.Is(err, shanhai.ErrDenied) {
		t.Errorf("%v", err)
	}
	err.Message = "the value changed"
	if err.Error() != "shanhai: kv_cas: conflict: the value changed" || !errors.Is(err, shanhai.ErrConflict) {
		t.Errorf("%v", err)
	}
}

func TestTopicMatches(t *testing.T) {
	for _, tc := range []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"#", "a/b", true},
		{"#", "$SYS/x", false},
		{"+/b", "$SYS/b", false},
		{"$SYS/#", "$SYS/x", true},
		{"a/+/c", "a//c", true},
		{"a/b", "a/b/", false},
		{"a/#/c", "a/b/c", false},
	} {
		if got := shanhaitest.TopicMatches(tc.filter, tc.topic); got != tc.want {
			t.Errorf("%q %q: %v", tc.filter, tc.topic, got)
		}
	}
}
