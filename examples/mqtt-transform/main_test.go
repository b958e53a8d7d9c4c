//go:build !wasm

// The tests run natively, against shanhaitest's mock host.

package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

// The reading of the package documentation.
const (
	exampleHex  = "01010267748580086611ad0ce4"
	exampleJSON = `{"sensor":258,"time":1735689600,"temperature_c":21.5,"humidity_pct":45.25,"battery_mv":3300}`
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// deliver resets the mock host and delivers a message on topic.
func deliver(t *testing.T, topic string, qos byte, payload []byte) ([]shanhai.MQTTPublish, error) {
	t.Helper()
	shanhaitest.Reset()
	return shanhaitest.DeliverMQTT(shanhai.MQTTMessage{Topic: topic, Trigger: "sensors", QoS: qos, Payload: payload})
}

// wantError checks that the event failed with message want.
func wantError(t *testing.T, err error, want string) {
	t.Helper()
	var ee *shanhaitest.EventError
	if !errors.As(err, &ee) || ee.Status != shanhaitest.StatusError || ee.Message != want {
		t.Errorf("got %v, want %q", err, want)
	}
}

func TestRawBecomesJSONOnTheOutputTopic(t *testing.T) {
	for _, qos := range []byte{0, 1} {
		out, err := deliver(t, "sensors/258/raw", qos, unhex(t, exampleHex))
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != 1 || out[0].Topic != "" || out[0].QoS != qos || out[0].Retain ||
			string(out[0].Payload) != exampleJSON {
			t.Errorf("QoS %d: %+v", qos, out)
		}
	}
	// Nothing is published through mqtt_publish: the gateway publishes the
	// output.
	if got := shanhaitest.MQTTPublished(); got != nil {
		t.Errorf("published %+v", got)
	}
}

func TestSetBecomesABinaryCommand(t *testing.T) {
	out, err := deliver(t, "sensors/kitchen/set", 1, []byte(exampleJSON))
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].Topic != "devices/kitchen/cmd" || out[0].QoS != 1 || out[0].Retain ||
		!bytes.Equal(out[0].Payload, unhex(t, exampleHex)) {
		t.Errorf("%+v", out)
	}
}

// Binary to JSON and back gives the same bytes, for values at the edges of
// each field.
func TestRoundTrips(t *testing.T) {
	for _, h := range []string{
		exampleHex,
		"01" + "0000" + "00000000" + "8000" + "0000" + "0000", // -327.68 °C, 0 %
		"01" + "ffff" + "ffffffff" + "7fff" + "2710" + "ffff", // 327.67 °C, 100 %
		"01" + "0007" + "6774858a" + "fdf3" + "0001" + "0bb8", // -5.25 °C, 0.01 %
	} {
		json, err := deliver(t, "sensors/1/raw", 0, unhex(t, h))
		if err != nil {
			t.Fatalf("%s: %v", h, err)
		}
		back, err := deliver(t, "sensors/1/set", 0, json[0].Payload)
		if err != nil {
			t.Fatalf("%s: %s: %v", h, json[0].Payload, err)
		}
		if hex.EncodeToString(back[0].Payload) != h {
			t.Errorf("%s -> %s -> %x", h, json[0].Payload, back[0].Payload)
		}
	}
}

func TestJSONIsRoundedAndExtraFieldsIgnored(t *testing.T) {
	out, err := deliver(t, "sensors/1/set", 0, []byte(
		`{"run":7,"sensor":1,"time":0,"temperature_c":-0.004,"humidity_pct":33.335,"battery_mv":0}`))
	if err != nil {
		t.Fatal(err)
	}
	// -0.004 °C rounds to 0, 33.335 % to 33.34 (3334 = 0x0d06).
	if got := hex.EncodeToString(out[0].Payload); got != "01"+"0001"+"00000000"+"0000"+"0d06"+"0000" {
		t.Errorf("got %s", got)
	}
}

func TestMalformedPayloads(t *testing.T) {
	// want is the whole message, or its start when it ends with ": "
	// (the rest is encoding/json's).
	for _, tc := range []struct {
		name, topic, payload, want string
	}{
		{"short", "sensors/1/raw", "0101026774858008", "the payload is 8 bytes; a binary reading is 13"},
		{"long", "sensors/1/raw", exampleHex + "00", "the payload is 14 bytes; a binary reading is 13"},
		{"empty", "sensors/1/raw", "", "the payload is 0 bytes; a binary reading is 13"},
		{"version 2", "sensors/1/raw", "02" + exampleHex[2:], "binary reading format version 2 is not 1"},
		{"humidity", "sensors/1/raw", "01010267748580086627110ce4", "humidity 100.01 % is over 100 %"},
		{"not JSON", "sensors/1/set", hex.EncodeToString([]byte("21.5")),
			"the JSON reading does not parse: "},
		{"missing fields", "sensors/1/set", hex.EncodeToString([]byte(`{"sensor":1,"time":2}`)),
			"the JSON reading lacks temperature_c, humidity_pct, battery_mv"},
		{"sensor out of range", "sensors/1/set", hex.EncodeToString([]byte(
			`{"sensor":65536,"time":0,"temperature_c":0,"humidity_pct":0,"battery_mv":0}`)),
			"the JSON reading does not parse: "},
		{"too hot", "sensors/1/set", hex.EncodeToString([]byte(
			`{"sensor":1,"time":0,"temperature_c":400,"humidity_pct":0,"battery_mv":0}`)),
			"temperature_c 400 is outside -327.68 to 327.67"},
		{"too humid", "sensors/1/set", hex.EncodeToString([]byte(
			`{"sensor":1,"time":0,"temperature_c":0,"humidity_pct":100.5,"battery_mv":0}`)),
			"humidity_pct 100.5 is outside 0 to 100"},
		{"trailing data", "sensors/1/set", hex.EncodeToString([]byte(exampleJSON + " {}")),
			"the JSON reading is followed by more data"},
		{"unknown action", "sensors/1/get", "", `topic "sensors/1/get" is neither sensors/<id>/raw nor sensors/<id>/set`},
		{"too deep", "sensors/1/raw/x", "", `topic "sensors/1/raw/x" is neither sensors/<id>/raw nor sensors/<id>/set`},
		{"no id", "sensors//raw", "", `topic "sensors//raw" is neither sensors/<id>/raw nor sensors/<id>/set`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := deliver(t, tc.topic, 1, unhex(t, tc.payload))
			var ee *shanhaitest.EventError
			if strings.HasSuffix(tc.want, ": ") && errors.As(err, &ee) && strings.HasPrefix(ee.Message, tc.want) {
				return
			}
			wantError(t, err, tc.want)
		})
	}
}

func TestDecodeBinary(t *testing.T) {
	r, err := DecodeBinary(unhex(t, exampleHex))
	want := Reading{Sensor: 258, Time: 1735689600, TemperatureC: 21.5, HumidityPct: 45.25, BatteryMV: 3300}
	if err != nil || r != want {
		t.Errorf("got %+v, %v", r, err)
	}
	if got := hex.EncodeToString(want.AppendBinary(nil)); got != exampleHex {
		t.Errorf("AppendBinary: %s", got)
	}
}
