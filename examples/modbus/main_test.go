//go:build !wasm

// The tests run natively, against shanhaitest's mock host.

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

// start resets the mock host and the instance's bank, sets the config
// variables vars (key, value, key, value, ...) and connects a client.
func start(t *testing.T, vars ...string) *shanhaitest.TCPClient {
	t.Helper()
	shanhaitest.Reset()
	registers = nil
	for i := 0; i+1 < len(vars); i += 2 {
		shanhaitest.SetConfig(vars[i], vars[i+1])
	}
	c, err := shanhaitest.ConnectTCP("plc", "192.0.2.7:50123")
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	return c
}

// adu builds an ADU: the MBAP header for transaction txn and unit 1, then
// pdu, whose parts are bytes (byte) or big-endian registers (uint16 and
// int).
func adu(txn uint16, pdu ...any) []byte {
	var body []byte
	for _, p := range pdu {
		switch v := p.(type) {
		case byte:
			body = append(body, v)
		case uint16:
			body = be.AppendUint16(body, v)
		case int:
			body = be.AppendUint16(body, uint16(v))
		case []byte:
			body = append(body, v...)
		default:
			panic(fmt.Sprintf("adu: %T", p))
		}
	}
	out := be.AppendUint16(nil, txn)
	out = be.AppendUint16(out, 0)
	out = be.AppendUint16(out, uint16(1+len(body)))
	out = append(out, 1)
	return append(out, body...)
}

// send sends request and compares the reply with want.
func send(t *testing.T, c *shanhaitest.TCPClient, request, want []byte) {
	t.Helper()
	reply, err := c.Send(request)
	if err != nil {
		t.Fatalf("request % x: %v", request, err)
	}
	if !bytes.Equal(reply, want) {
		t.Errorf("request % x\n got % x\nwant % x", request, reply, want)
	}
}

// exception is the exception response to a request of txn for function fn.
func exception(txn uint16, fn byte, code Exception) []byte {
	return adu(txn, fn|0x80, byte(code))
}

func TestReadHoldingRegisters(t *testing.T) {
	c := start(t, "holding", "0=100,1=200,7=42")
	send(t, c, adu(1, byte(3), 0, 2), adu(1, byte(3), byte(4), 100, 200))
	send(t, c, adu(2, byte(3), 6, 3), adu(2, byte(3), byte(6), 0, 42, 0))
	// The last register of the bank.
	send(t, c, adu(3, byte(3), 999, 1), adu(3, byte(3), byte(2), 0))
}

func TestReadInputRegisters(t *testing.T) {
	c := start(t, "holding", "0=100", "input", "0=1,1=2")
	send(t, c, adu(1, byte(4), 0, 3), adu(1, byte(4), byte(6), 1, 2, 0))
}

// The largest read fills a 253-byte PDU, and the response header counts it.
func TestReadMaximum(t *testing.T) {
	c := start(t, "input", "875=1,999=9")
	reply, err := c.Send(adu(7, byte(4), 875, 125))
	if err != nil {
		t.Fatal(err)
	}
	if len(reply) != 7+2+250 || be.Uint16(reply[4:]) != 1+2+250 || reply[8] != 250 {
		t.Fatalf("reply of %d bytes: % x", len(reply), reply[:9])
	}
	if be.Uint16(reply[9:]) != 1 || be.Uint16(reply[len(reply)-2:]) != 9 {
		t.Errorf("first and last registers: % x", reply)
	}
}

func TestWriteSingleRegister(t *testing.T) {
	c := start(t, "holding", "5=1", "input", "5=2")
	request := adu(1, byte(6), 5, 0xbeef)
	send(t, c, request, request)
	send(t, c, adu(2, byte(3), 5, 1), adu(2, byte(3), byte(2), 0xbeef))
	// Input registers are read-only.
	send(t, c, adu(3, byte(4), 5, 1), adu(3, byte(4), byte(2), 2))
}

func TestWriteMultipleRegisters(t *testing.T) {
	c := start(t)
	send(t, c, adu(1, byte(16), 10, 3, byte(6), 7, 8, 0xffff), adu(1, byte(16), 10, 3))
	send(t, c, adu(2, byte(3), 9, 5), adu(2, byte(3), byte(10), 0, 7, 8, 0xffff, 0))

	values := make([]any, 0, 123)
	for i := range 123 {
		values = append(values, i)
	}
	request := append([]any{byte(16), 877, 123, byte(246)}, values...)
	send(t, c, adu(3, request...), adu(3, byte(16), 877, 123))
	send(t, c, adu(4, byte(3), 998, 2), adu(4, byte(3), byte(4), 121, 122))
}

// Writes change the bank of the instance: another connection that reaches
// the same instance reads them.
func TestWritesStayInTheInstance(t *testing.T) {
	c := start(t, "holding", "1=1")
	send(t, c, adu(1, byte(6), 1, 2), adu(1, byte(6), 1, 2))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	d, err := shanhaitest.ConnectTCP("plc", "")
	if err != nil {
		t.Fatal(err)
	}
	send(t, d, adu(1, byte(3), 1, 1), adu(1, byte(3), byte(2), 2))
}

func TestIllegalFunction(t *testing.T) {
	c := start(t)
	for _, fn := range []byte{1, 2, 5, 15, 23, 43, 0x7f, 0x80, 0x83} {
		send(t, c, adu(9, fn, 0, 1), exception(9, fn, IllegalFunction))
	}
	// With no data at all, too.
	send(t, c, adu(10, byte(1)), exception(10, 1, IllegalFunction))
}

func TestIllegalDataAddress(t *testing.T) {
	c := start(t)
	for _, tc := range []struct {
		name    string
		request []byte
	}{
		{"read past the end", adu(1, byte(3), 999, 2)},
		{"read at 1000", adu(1, byte(4), 1000, 1)},
		{"read at 65535", adu(1, byte(3), 0xffff, 125)},
		{"write at 1000", adu(1, byte(6), 1000, 5)},
		{"write many past the end", adu(1, byte(16), 998, 3, byte(6), 1, 2, 3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			send(t, c, tc.request, exception(1, tc.request[7], IllegalDataAddress))
		})
	}
	// Nothing was written.
	send(t, c, adu(2, byte(3), 998, 2), adu(2, byte(3), byte(4), 0, 0))
}

func TestIllegalDataValue(t *testing.T) {
	c := start(t)
	for _, tc := range []struct {
		name    string
		request []byte
	}{
		{"read 0", adu(1, byte(3), 0, 0)},
		{"read 126", adu(1, byte(4), 0, 126)},
		// The quantity is checked before the address.
		{"read 200 past the end", adu(1, byte(3), 999, 200)},
		{"write 0", adu(1, byte(16), 0, 0, byte(0))},
		{"write 124", adu(1, byte(16), 0, 124, byte(248), make([]byte, 248))},
		{"byte count not twice the quantity", adu(1, byte(16), 0, 2, byte(2), 1)},
		{"fewer values than the byte count", adu(1, byte(16), 0, 2, byte(4), 1)},
		{"more values than the byte count", adu(1, byte(16), 0, 1, byte(2), 1, 2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			send(t, c, tc.request, exception(1, tc.request[7], IllegalDataValue))
		})
	}
}

// A PDU of the wrong length is answered with exception 3.
func TestMalformedPDU(t *testing.T) {
	c := start(t)
	for _, tc := range []struct {
		name    string
		request []byte
	}{
		{"read without data", adu(1, byte(3))},
		{"read cut short", adu(1, byte(3), 0, byte(1))},
		{"read too long", adu(1, byte(4), 0, 1, byte(0))},
		{"write single cut short", adu(1, byte(6), 0)},
		{"write single too long", adu(1, byte(6), 0, 1, 2)},
		{"write many without a byte count", adu(1, byte(16), 0, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			send(t, c, tc.request, exception(1, tc.request[7], IllegalDataValue))
		})
	}
}

// Responses echo the transaction id and the unit id.
func TestResponsesEchoTheHeader(t *testing.T) {
	c := start(t, "holding", "0=5")
	request := []byte{0xab, 0xcd, 0, 0, 0, 6, 0xf7, 3, 0, 0, 0, 1}
	send(t, c, request, []byte{0xab, 0xcd, 0, 0, 0, 5, 0xf7, 3, 2, 0, 5})
	request = []byte{0x12, 0x34, 0, 0, 0, 2, 0x00, 0x2b}
	send(t, c, request, []byte{0x12, 0x34, 0, 0, 0, 3, 0x00, 0xab, 1})
}

// A frame that is not a request ADU fails the event, and the gateway
// closes the connection.
func TestNotARequest(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
		want  string
	}{
		{"empty", nil, "a frame of 0 bytes is not a Modbus/TCP request"},
		{"header only", []byte{0, 1, 0, 0, 0, 1, 1}, "a frame of 7 bytes is not a Modbus/TCP request"},
		{"protocol 1", []byte{0, 1, 0, 1, 0, 2, 1, 3}, "MBAP protocol id 1 is not Modbus (0)"},
		{"length too large", []byte{0, 1, 0, 0, 0, 9, 1, 3, 0, 0}, "MBAP length 9, but 4 bytes follow it"},
		{"length too small", []byte{0, 1, 0, 0, 0, 2, 1, 3, 0, 0}, "MBAP length 2, but 4 bytes follow it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := start(t)
			_, err := c.Send(tc.frame)
			var ee *shanhaitest.EventError
			if !errors.As(err, &ee) || ee.Status != shanhaitest.StatusError || ee.Message != tc.want {
				t.Errorf("got %v, want %q", err, tc.want)
			}
			if !c.Closed() {
				t.Error("the connection stays open")
			}
		})
	}
}

func TestParseRegisters(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[int]uint16
	}{
		{"", nil},
		{"0=100,1=200,7=42", map[int]uint16{0: 100, 1: 200, 7: 42}},
		{" 3 = 7 ,\n 999=65535, ", map[int]uint16{3: 7, 999: 65535}},
		{"5=0", nil},
	} {
		var got [bankSize]uint16
		if err := parseRegisters(tc.in, &got); err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		var want [bankSize]uint16
		for a, v := range tc.want {
			want[a] = v
		}
		if got != want {
			t.Errorf("%q: got a different bank", tc.in)
		}
	}
	for in, want := range map[string]string{
		"7":           `"7" is not address=value`,
		"a=1":         `"a=1": the address is not a number from 0 to 999`,
		"1000=1":      `"1000=1": the address is not a number from 0 to 999`,
		"-1=1":        `"-1=1": the address is not a number from 0 to 999`,
		"1=65536":     `"1=65536": the value is not a number from 0 to 65535`,
		"1=-1":        `"1=-1": the value is not a number from 0 to 65535`,
		"1=0x10":      `"1=0x10": the value is not a number from 0 to 65535`,
		"1=":          `"1=": the value is not a number from 0 to 65535`,
		"1=1,2=2,1=3": "address 1 is set twice",
	} {
		var bank [bankSize]uint16
		if err := parseRegisters(in, &bank); err == nil || err.Error() != want {
			t.Errorf("%q: got %v, want %q", in, err, want)
		}
	}
}

// A bad config variable refuses connections, with a message that names
// the variable.
func TestBadConfigRefusesConnections(t *testing.T) {
	shanhaitest.Reset()
	registers = nil
	shanhaitest.SetConfig("holding", "0=1")
	shanhaitest.SetConfig("input", "0=x")
	_, err := shanhaitest.ConnectTCP("plc", "")
	want := `config variable input: "0=x": the value is not a number from 0 to 65535`
	var ee *shanhaitest.EventError
	if !errors.As(err, &ee) || ee.Message != want {
		t.Errorf("got %v, want %q", err, want)
	}
	// Fixed, the next connection works.
	shanhaitest.SetConfig("input", "0=9")
	c, err := shanhaitest.ConnectTCP("plc", "")
	if err != nil {
		t.Fatal(err)
	}
	send(t, c, adu(1, byte(4), 0, 1), adu(1, byte(4), byte(2), 9))
}

func TestRequestJSON(t *testing.T) {
	for _, tc := range []struct {
		adu  []byte
		want string
	}{
		{adu(1, byte(3), 0, 2), `{"transaction":1,"unit":1,"function":3,"address":0,"quantity":2}`},
		{adu(2, byte(4), 10, 1), `{"transaction":2,"unit":1,"function":4,"address":10,"quantity":1}`},
		{adu(3, byte(6), 7, 42), `{"transaction":3,"unit":1,"function":6,"address":7,"quantity":1,"values":[42]}`},
		{adu(4, byte(16), 10, 2, byte(4), 7, 8), `{"transaction":4,"unit":1,"function":16,"address":10,"quantity":2,"values":[7,8]}`},
	} {
		r, err := DecodeRequest(tc.adu)
		if err != nil {
			t.Fatalf("% x: %v", tc.adu, err)
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tc.want {
			t.Errorf("% x\n got %s\nwant %s", tc.adu, b, tc.want)
		}
	}
}

// An exception still decodes what identifies the request.
func TestDecodeRequestExceptions(t *testing.T) {
	r, err := DecodeRequest(adu(5, byte(3), 999, 2))
	if err != IllegalDataAddress || r.Transaction != 5 || r.Unit != 1 || r.Function != 3 {
		t.Errorf("got %+v, %v", r, err)
	}
	if _, err := DecodeRequest(adu(5, byte(8), 0)); !errors.Is(err, IllegalFunction) ||
		err.Error() != "modbus exception 1: illegal function" {
		t.Errorf("got %v", err)
	}
}

// Every request is one log line: a valid one at info level, an exception
// at warn level.
func TestLogs(t *testing.T) {
	c := start(t)
	send(t, c, adu(1, byte(3), 0, 2), adu(1, byte(3), byte(4), 0, 0))
	send(t, c, adu(2, byte(16), 10, 2, byte(4), 7, 8), adu(2, byte(16), 10, 2))
	send(t, c, adu(3, byte(5), 0, 0xff00), exception(3, 5, IllegalFunction))
	want := []shanhaitest.LogLine{
		{Level: 2, Text: "modbus request transaction=1 unit=1 function=3 address=0 quantity=2"},
		{Level: 2, Text: "modbus request transaction=2 unit=1 function=16 address=10 quantity=2 values=7,8"},
		{Level: 3, Text: "modbus exception transaction=3 unit=1 function=5 exception=1"},
	}
	logs := shanhaitest.Logs()
	if len(logs) != len(want) {
		t.Fatalf("logs:\n%s", logText(logs))
	}
	for i := range want {
		if logs[i] != want[i] {
			t.Errorf("log %d: %+v, want %+v", i, logs[i], want[i])
		}
	}
}

func logText(lines []shanhaitest.LogLine) string {
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "%d %s\n", l.Level, l.Text)
	}
	return b.String()
}

// With mqtt_topic set, every request carried out is published as JSON, in
// order; exceptions are not.
func TestRequestsArePublished(t *testing.T) {
	c := start(t, "holding", "0=100", "mqtt_topic", "plc/requests")
	shanhaitest.GrantMQTTPublish("plc/#")
	send(t, c, adu(1, byte(3), 0, 2), adu(1, byte(3), byte(4), 100, 0))
	send(t, c, adu(2, byte(5), 0, 0xff00), exception(2, 5, IllegalFunction))
	send(t, c, adu(3, byte(16), 10, 2, byte(4), 7, 8), adu(3, byte(16), 10, 2))
	want := []string{
		`{"transaction":1,"unit":1,"function":3,"address":0,"quantity":2}`,
		`{"transaction":3,"unit":1,"function":16,"address":10,"quantity":2,"values":[7,8]}`,
	}
	got := shanhaitest.MQTTPublished()
	if len(got) != len(want) {
		t.Fatalf("published %+v", got)
	}
	for i, m := range got {
		if m.Topic != "plc/requests" || m.QoS != 0 || m.Retain || string(m.Payload) != want[i] {
			t.Errorf("publication %d: %s %d %v %s", i, m.Topic, m.QoS, m.Retain, m.Payload)
		}
	}
}

// Without mqtt_topic nothing is published, grant or not.
func TestNothingIsPublishedWithoutATopic(t *testing.T) {
	c := start(t)
	shanhaitest.GrantMQTTPublish("#")
	send(t, c, adu(1, byte(3), 0, 1), adu(1, byte(3), byte(2), 0))
	if got := shanhaitest.MQTTPublished(); got != nil {
		t.Errorf("published %+v", got)
	}
}

// A refused publication leaves the Modbus response as it is and logs a
// warning.
func TestRefusedPublicationsOnlyWarn(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func()
		want  string
	}{
		{"no grant", func() {}, "shanhai: mqtt_publish: denied: no mqtt_publish grant matches topic `plc/requests`"},
		{"no MQTT client", func() {
			shanhaitest.GrantMQTTPublish("plc/requests")
			shanhaitest.FailMQTTPublish(shanhai.ErrUnavailable, "MQTT is not enabled in this gateway")
		}, "shanhai: mqtt_publish: unavailable: MQTT is not enabled in this gateway"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := start(t, "holding", "0=5", "mqtt_topic", "plc/requests")
			tc.setup()
			send(t, c, adu(1, byte(3), 0, 1), adu(1, byte(3), byte(2), 5))
			request := adu(2, byte(6), 0, 9)
			send(t, c, request, request)
			if c.Closed() {
				t.Fatal("the connection was closed")
			}
			var warnings []string
			for _, l := range shanhaitest.Logs() {
				if l.Level == 3 {
					warnings = append(warnings, l.Text)
				}
			}
			want := fmt.Sprintf("modbus publish failed topic=plc/requests transaction=1 error=%q", tc.want)
			if len(warnings) != 2 || warnings[0] != want {
				t.Errorf("warnings %q, want %q and one for transaction 2", warnings, want)
			}
		})
	}
}
