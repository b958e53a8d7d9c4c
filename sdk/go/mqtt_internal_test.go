//go:build !wasm

package shanhai

import (
	"testing"

	"github.com/shanhai-edge/shanhai/sdk/go/internal/hostcall"
	"github.com/shanhai-edge/shanhai/sdk/go/internal/wire"
)

func TestMQTTWithoutHandlerIsUnsupported(t *testing.T) {
	old := mqttHandler
	defer func() { mqttHandler = old }()
	mqttHandler = nil
	ev := (&wire.MQTTMessage{Topic: "a", Attempt: 1}).Append(nil)
	for _, env := range [][]byte{ev, []byte("not an envelope")} {
		if status, out := hostcall.Event(eventMQTT, env); status != statusUnsupported || len(out) != 0 {
			t.Errorf("MQTT without a handler: status %d, %q", status, out)
		}
	}
	HandleMQTT(func(*MQTTMessage) ([]MQTTPublish, error) { return nil, nil })
	if status, _ := hostcall.Event(eventMQTT, ev); status != statusOK {
		t.Errorf("MQTT with a handler: status %d", status)
	}
	if status, out := hostcall.Event(eventMQTT, []byte{1, 0, 0}); status != statusError ||
		string(out) != "bad MQTT message envelope: envelope truncated in topic" {
		t.Errorf("a bad envelope: status %d, %q", status, out)
	}
}
