// Command mqtt-transform converts sensor readings between the compact
// binary payload that constrained devices send and JSON, for an MQTT
// trigger of the gateway:
//
//   - a message on sensors/<id>/raw carries a binary reading; the module
//     returns it as JSON with an empty topic, so the gateway publishes it
//     to the trigger's output_topic (sensors/{1}/json, say);
//   - a message on sensors/<id>/set carries a JSON reading; the module
//     returns it as a binary reading for devices/<id>/cmd, an explicit
//     topic, which the module's mqtt_publish grant must cover.
//
// <id> is the topic's second level, any name; a topic whose third level
// is neither raw nor set is an error. Both replies have the QoS of the
// message and are not retained.
//
// # The binary reading
//
// Thirteen bytes, big-endian:
//
//	offset  size  field
//	0       1     format version, 1
//	1       2     sensor id, uint16
//	3       4     time of the reading, uint32 seconds since the Unix epoch
//	7       2     temperature, int16, hundredths of a degree Celsius
//	9       2     relative humidity, uint16, hundredths of a percent (0 to 10000)
//	11      2     battery voltage, uint16, millivolts
//
// For example 01 0102 67748580 0866 11ad 0ce4 is sensor 258 at
// 2025-01-01T00:00:00Z, 21.5 °C, 45.25 % and 3300 mV, whose JSON is
//
//	{"sensor":258,"time":1735689600,"temperature_c":21.5,"humidity_pct":45.25,"battery_mv":3300}
//
// A JSON reading needs all five fields (others are ignored); temperature
// and humidity are rounded to hundredths.
//
// # Errors
//
// A payload that is not a reading (a binary one of another length or
// version, or with a humidity over 100 %; JSON that does not parse, lacks
// a field or holds a value the binary form cannot) fails the event with a
// message that says what is wrong, so the gateway's retries and its
// dead-letter topic apply to QoS 1 messages.
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o mqtt-transform.wasm .
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
)

// BinaryLen is the length of a binary reading.
const BinaryLen = 13

// FormatVersion is the version byte of the binary readings this module
// reads and writes.
const FormatVersion = 1

var be = binary.BigEndian

func init() {
	shanhai.HandleMQTT(transform)
}

// main is empty: the gateway calls the module's exports, not main.
func main() {}

// Reading is one sensor reading. Temperature and humidity hold whole
// hundredths, as the binary form does.
type Reading struct {
	Sensor       uint16  `json:"sensor"`
	Time         uint32  `json:"time"`
	TemperatureC float64 `json:"temperature_c"`
	HumidityPct  float64 `json:"humidity_pct"`
	BatteryMV    uint16  `json:"battery_mv"`
}

// DecodeBinary decodes a binary reading.
func DecodeBinary(b []byte) (Reading, error) {
	if len(b) != BinaryLen {
		return Reading{}, fmt.Errorf("the payload is %d bytes; a binary reading is %d", len(b), BinaryLen)
	}
	if b[0] != FormatVersion {
		return Reading{}, fmt.Errorf("binary reading format version %d is not %d", b[0], FormatVersion)
	}
	humidity := be.Uint16(b[9:])
	if humidity > 10000 {
		return Reading{}, fmt.Errorf("humidity %.2f %% is over 100 %%", float64(humidity)/100)
	}
	return Reading{
		Sensor:       be.Uint16(b[1:]),
		Time:         be.Uint32(b[3:]),
		TemperatureC: float64(int16(be.Uint16(b[7:]))) / 100,
		HumidityPct:  float64(humidity) / 100,
		BatteryMV:    be.Uint16(b[11:]),
	}, nil
}

// AppendBinary appends r in the binary form, its temperature and humidity
// rounded to hundredths; ParseJSON has checked that they fit.
func (r Reading) AppendBinary(dst []byte) []byte {
	dst = append(dst, FormatVersion)
	dst = be.AppendUint16(dst, r.Sensor)
	dst = be.AppendUint32(dst, r.Time)
	dst = be.AppendUint16(dst, uint16(int16(math.Round(r.TemperatureC*100))))
	dst = be.AppendUint16(dst, uint16(math.Round(r.HumidityPct*100)))
	return be.AppendUint16(dst, r.BatteryMV)
}

// jsonReading is a JSON reading as parsed, nil for a missing field.
type jsonReading struct {
	Sensor       *uint16  `json:"sensor"`
	Time         *uint32  `json:"time"`
	TemperatureC *float64 `json:"temperature_c"`
	HumidityPct  *float64 `json:"humidity_pct"`
	BatteryMV    *uint16  `json:"battery_mv"`
}

// ParseJSON parses a JSON reading: an object with all five fields of
// Reading, whose temperature (-327.68 to 327.67 °C) and humidity (0 to
// 100 %) the binary form can hold. Other fields are ignored.
func ParseJSON(b []byte) (Reading, error) {
	var in jsonReading
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&in); err != nil {
		return Reading{}, fmt.Errorf("the JSON reading does not parse: %w", err)
	}
	if d.More() {
		return Reading{}, errors.New("the JSON reading is followed by more data")
	}
	var missing []string
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"sensor", in.Sensor != nil}, {"time", in.Time != nil}, {"temperature_c", in.TemperatureC != nil},
		{"humidity_pct", in.HumidityPct != nil}, {"battery_mv", in.BatteryMV != nil},
	} {
		if !f.set {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return Reading{}, fmt.Errorf("the JSON reading lacks %s", strings.Join(missing, ", "))
	}
	r := Reading{
		Sensor:       *in.Sensor,
		Time:         *in.Time,
		TemperatureC: math.Round(*in.TemperatureC*100) / 100,
		HumidityPct:  math.Round(*in.HumidityPct*100) / 100,
		BatteryMV:    *in.BatteryMV,
	}
	if r.TemperatureC < -327.68 || r.TemperatureC > 327.67 {
		return Reading{}, fmt.Errorf("temperature_c %v is outside -327.68 to 327.67", *in.TemperatureC)
	}
	if r.HumidityPct < 0 || r.HumidityPct > 100 {
		return Reading{}, fmt.Errorf("humidity_pct %v is outside 0 to 100", *in.HumidityPct)
	}
	return r, nil
}

// CommandTopic is the topic a set message for device id is published to.
func CommandTopic(id string) string { return "devices/" + id + "/cmd" }

// transform is the MQTT handler.
func transform(m *shanhai.MQTTMessage) ([]shanhai.MQTTPublish, error) {
	levels := strings.Split(m.Topic, "/")
	if len(levels) != 3 || levels[1] == "" || (levels[2] != "raw" && levels[2] != "set") {
		return nil, fmt.Errorf("topic %q is neither sensors/<id>/raw nor sensors/<id>/set", m.Topic)
	}
	if levels[2] == "raw" {
		r, err := DecodeBinary(m.Payload)
		if err != nil {
			return nil, err
		}
		out, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		// An empty topic: the trigger's output_topic.
		return []shanhai.MQTTPublish{{QoS: m.QoS, Payload: out}}, nil
	}
	r, err := ParseJSON(m.Payload)
	if err != nil {
		return nil, err
	}
	return []shanhai.MQTTPublish{{
		Topic:   CommandTopic(levels[1]),
		QoS:     m.QoS,
		Payload: r.AppendBinary(make([]byte, 0, BinaryLen)),
	}}, nil
}
