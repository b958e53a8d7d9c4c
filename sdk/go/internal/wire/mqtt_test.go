package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"reflect"
	"testing"
)

// mqttVectors is the MQTT part of testdata/vectors.json.
type mqttVectors struct {
	MQTTMessage []struct {
		Name       string      `json:"name"`
		Topic      string      `json:"topic"`
		Trigger    string      `json:"trigger"`
		RequestID  string      `json:"request_id"`
		QoS        byte        `json:"qos"`
		Retain     bool        `json:"retain"`
		Attempt    uint32      `json:"attempt"`
		Properties [][2]string `json:"properties"`
		PayloadHex string      `json:"payload_hex"`
		Hex        string      `json:"hex"`
	} `json:"mqtt_message"`
	MQTTOutput []struct {
		Name     string `json:"name"`
		Messages []struct {
			Topic      string `json:"topic"`
			QoS        byte   `json:"qos"`
			Retain     bool   `json:"retain"`
			PayloadHex string `json:"payload_hex"`
		} `json:"messages"`
		Hex string `json:"hex"`
	} `json:"mqtt_output"`
}

func loadMQTTVectors(t *testing.T) mqttVectors {
	t.Helper()
	b, err := os.ReadFile("../../testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v mqttVectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.MQTTMessage) == 0 || len(v.MQTTOutput) == 0 {
		t.Fatal("vectors.json lacks the MQTT envelopes")
	}
	return v
}

func TestVectorsMQTTMessage(t *testing.T) {
	for _, v := range loadMQTTVectors(t).MQTTMessage {
		t.Run(v.Name, func(t *testing.T) {
			want := unhex(t, v.Hex)
			m := MQTTMessage{
				Topic: v.Topic, Trigger: v.Trigger, RequestID: v.RequestID, QoS: v.QoS, Retain: v.Retain,
				Attempt: v.Attempt, Properties: headers(v.Properties), Payload: unhex(t, v.PayloadHex),
			}
			if got := m.Append(nil); !bytes.Equal(got, want) {
				t.Errorf("encoded\n %x\nwant\n %x", got, want)
			}
			got, err := DecodeMQTTMessage(want)
			if err != nil {
				t.Fatal(err)
			}
			got.Properties, got.Payload = normalize(got.Properties), normalize(got.Payload)
			m.Properties, m.Payload = normalize(m.Properties), normalize(m.Payload)
			if !reflect.DeepEqual(got, m) {
				t.Errorf("decoded %+v\nwant %+v", got, m)
			}
		})
	}
}

func TestVectorsMQTTOutput(t *testing.T) {
	for _, v := range loadMQTTVectors(t).MQTTOutput {
		t.Run(v.Name, func(t *testing.T) {
			want := unhex(t, v.Hex)
			var o MQTTOutput
			for _, m := range v.Messages {
				o.Messages = append(o.Messages, MQTTPublish{
					Topic: m.Topic, QoS: m.QoS, Retain: m.Retain, Payload: unhex(t, m.PayloadHex),
				})
			}
			if got := o.Append(nil); !bytes.Equal(got, want) {
				t.Errorf("encoded\n %x\nwant\n %x", got, want)
			}
			got, err := DecodeMQTTOutput(want)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normalizeOutput(got), normalizeOutput(o)) {
				t.Errorf("decoded %+v\nwant %+v", got, o)
			}
		})
	}
}

// normalizeOutput makes empty and nil slices compare equal.
func normalizeOutput(o MQTTOutput) MQTTOutput {
	o.Messages = normalize(o.Messages)
	for i := range o.Messages {
		o.Messages[i].Payload = normalize(o.Messages[i].Payload)
	}
	return o
}

func TestMQTTRoundTrips(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 500 {
		var props []Header
		for range r.IntN(4) {
			props = append(props, Header{Name: randText(r, 16), Value: string(randBytes(r, 32))})
		}
		m := MQTTMessage{
			Topic: randText(r, 40), Trigger: randText(r, 12), RequestID: randText(r, 20),
			QoS: byte(r.IntN(2)), Retain: r.IntN(2) == 1, Attempt: r.Uint32(),
			Properties: props, Payload: randBytes(r, 256),
		}
		got, err := DecodeMQTTMessage(m.Append(nil))
		if err != nil {
			t.Fatal(err)
		}
		got.Properties, got.Payload = normalize(got.Properties), normalize(got.Payload)
		m.Properties, m.Payload = normalize(m.Properties), normalize(m.Payload)
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("message round trip: got %+v, want %+v", got, m)
		}

		var o MQTTOutput
		for range r.IntN(5) {
			o.Messages = append(o.Messages, MQTTPublish{
				Topic: randText(r, 30), QoS: byte(r.IntN(2)), Retain: r.IntN(2) == 1, Payload: randBytes(r, 64),
			})
		}
		gotOut, err := DecodeMQTTOutput(o.Append(nil))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(normalizeOutput(gotOut), normalizeOutput(o)) {
			t.Fatalf("output round trip: got %+v, want %+v", gotOut, o)
		}
	}
}

// Every cut of a message before its properties is an error that names
// the element it stopped in; a cut inside the payload is a shorter
// payload.
func TestTruncatedMQTTMessages(t *testing.T) {
	m := MQTTMessage{
		Topic: "sensors/1/raw", Trigger: "raw", RequestID: "id", QoS: 1, Attempt: 2,
		Properties: []Header{{"unit", "C"}}, Payload: []byte("payload"),
	}
	enc := m.Append(nil)
	head := len(enc) - len(m.Payload)
	topic := 4 + len(m.Topic)
	trigger := topic + 4 + len(m.Trigger)
	id := trigger + 4 + len(m.RequestID)
	want := func(cut int) string {
		switch {
		case cut < topic:
			return "topic"
		case cut < trigger:
			return "trigger name"
		case cut < id:
			return "request id"
		case cut < id+1:
			return "qos"
		case cut < id+2:
			return "retain flag"
		case cut < id+6:
			return "attempt"
		default:
			return "" // somewhere in the properties
		}
	}
	var s MQTTMessageSpans
	for cut := range len(enc) {
		err := s.Decode(enc[:cut])
		if cut >= head {
			if err != nil || s.Payload != head || string(s.Topic.Bytes(enc)) != m.Topic {
				t.Fatalf("cut at %d in the payload: %v, payload at %d", cut, err, s.Payload)
			}
			continue
		}
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Fatalf("cut at %d: got %v, want a DecodeError", cut, err)
		}
		if what := want(cut); what != "" && err.Error() != "envelope truncated in "+what {
			t.Errorf("cut at %d: %q, want truncated in %s", cut, err, what)
		}
	}
}

// Every cut of a non-empty output is an error (an empty one is an empty
// output).
func TestTruncatedMQTTOutputs(t *testing.T) {
	o := MQTTOutput{Messages: []MQTTPublish{
		{Topic: "a/b", QoS: 1, Payload: []byte("x")},
		{Retain: true, Payload: []byte("yz")},
	}}
	enc := o.Append(nil)
	if _, err := DecodeMQTTOutput(nil); err != nil {
		t.Errorf("empty output: %v", err)
	}
	for cut := 1; cut < len(enc); cut++ {
		var de *DecodeError
		if _, err := DecodeMQTTOutput(enc[:cut]); !errors.As(err, &de) {
			t.Errorf("cut at %d: got %v, want a DecodeError", cut, err)
		}
	}
}

func TestMQTTDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		decode func() error
		want   string
	}{
		{"empty message", func() error {
			_, err := DecodeMQTTMessage(nil)
			return err
		}, "envelope truncated in topic"},
		{"topic not UTF-8", func() error {
			_, err := DecodeMQTTMessage(AppendField(nil, []byte{'a', 0xff}))
			return err
		}, "topic is not valid UTF-8"},
		{"trigger not UTF-8", func() error {
			_, err := DecodeMQTTMessage(AppendField(AppendFieldString(nil, "t"), []byte{0xc3}))
			return err
		}, "trigger name is not valid UTF-8"},
		{"hostile property count", func() error {
			b := (&MQTTMessage{Topic: "t"}).Append(nil)
			binary.LittleEndian.PutUint32(b[len(b)-4:], 1<<31)
			_, err := DecodeMQTTMessage(b)
			return err
		}, "header count 2147483648 exceeds the envelope size"},
		{"hostile message count", func() error {
			_, err := DecodeMQTTOutput([]byte{0xff, 0xff, 0xff, 0xff, 0, 0})
			return err
		}, "header count 4294967295 exceeds the envelope size"},
		{"output cut in its count", func() error {
			_, err := DecodeMQTTOutput([]byte{1, 0})
			return err
		}, "envelope truncated in message count"},
		{"publish topic not UTF-8", func() error {
			b := AppendField(AppendU32(nil, 1), []byte{0xff})
			b = AppendField(append(b, 0, 0), nil)
			_, err := DecodeMQTTOutput(b)
			return err
		}, "publish topic is not valid UTF-8"},
		{"payload longer than the output", func() error {
			b := AppendFieldString(AppendU32(nil, 1), "t")
			b = AppendU32(append(b, 0, 0), 9)
			_, err := DecodeMQTTOutput(append(b, "abc"...))
			return err
		}, "envelope truncated in publish payload"},
		{"bytes after the last message", func() error {
			b := (&MQTTOutput{Messages: []MQTTPublish{{Topic: "t"}}}).Append(nil)
			_, err := DecodeMQTTOutput(append(b, 0))
			return err
		}, "bytes after the end of the MQTT output"},
		{"bytes after a count of 0", func() error {
			_, err := DecodeMQTTOutput([]byte{0, 0, 0, 0, 7})
			return err
		}, "bytes after the end of the MQTT output"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.decode()
			if err == nil || err.Error() != tc.want {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// Decode reuses the Properties array, and a message with fewer properties
// must not see those of an earlier one.
func TestMQTTMessageSpansReuse(t *testing.T) {
	var s MQTTMessageSpans
	long := (&MQTTMessage{Topic: "a", Properties: []Header{{"a", "1"}, {"b", "2"}}}).Append(nil)
	short := (&MQTTMessage{Topic: "b", Payload: []byte("x")}).Append(nil)
	if err := s.Decode(long); err != nil {
		t.Fatal(err)
	}
	if err := s.Decode(short); err != nil {
		t.Fatal(err)
	}
	if len(s.Properties) != 0 || string(s.Topic.Bytes(short)) != "b" || string(short[s.Payload:]) != "x" {
		t.Fatalf("after reuse: %+v", s)
	}
}

// Hostile bytes give an error, never a panic, and a payload offset inside
// the envelope.
func FuzzMQTTDecoders(f *testing.F) {
	f.Add([]byte{})
	f.Add((&MQTTMessage{Topic: "a/b", Properties: []Header{{"a", "b"}}, Payload: []byte("x")}).Append(nil))
	f.Add((&MQTTOutput{Messages: []MQTTPublish{{Topic: "a", Payload: []byte("x")}}}).Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s MQTTMessageSpans
		if s.Decode(b) == nil && s.Payload > len(b) {
			t.Fatal("payload offset past the end")
		}
		_, _ = DecodeMQTTOutput(b)
	})
}
