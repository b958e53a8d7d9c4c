// Command sensor-poll is a timer module that polls (simulated) sensors:
// each run of a timer that targets it produces one reading per sensor and
// publishes it as JSON, with shanhai.PublishMQTT, to
// <topic_prefix>/<id>/reading at QoS 0, not retained.
//
// The sensors are the timer's payload, a comma-separated list of sensor
// ids (0 to 65535) such as "1,2,3"; when the payload is empty, the config
// variable sensors holds the list. The config variable topic_prefix sets
// the topic prefix, "sensors" by default. The module's mqtt_publish grant
// must cover the topics, for example "sensors/+/reading".
//
// A reading is a function of the sensor id, the run number and the time
// the run was due, so every run is reproducible: values follow sine waves
// with a period of 60 runs, shifted by 7 runs per sensor id, and the
// battery drains by 1 mV a run from 3700 mV, back to full every 700 runs:
//
//	angle         = 2π · ((run + 7·id) mod 60) / 60
//	temperature_c = round(2000 + 500·sin(angle)) / 100
//	humidity_pct  = round(5000 + 2000·cos(angle)) / 100
//	battery_mv    = 3700 − (run − 1) mod 700
//	time          = the run's due time, in whole seconds since the Unix epoch
//
// The JSON is that of examples/mqtt-transform's readings, plus the run:
//
//	{"sensor":1,"time":1735689600,"temperature_c":23.72,"humidity_pct":63.38,"battery_mv":3700,"run":1}
//
// so mqtt-transform turns a reading published on its sensors/<id>/set
// topic into the binary form.
//
// Every reading is published even if some fail; the run fails (the
// gateway logs and counts it) when any did, with the errors, and when the
// sensor list is missing or malformed.
//
//	[timers.poll]
//	every_ms = 10000
//	module = "sensor-poll"
//	payload = "1,2,3"
//
//	[modules.sensor-poll.grants]
//	mqtt_publish = ["sensors/+/reading"]
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o sensor-poll.wasm .
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
)

// DefaultTopicPrefix is the topic prefix when the config variable
// topic_prefix is not set.
const DefaultTopicPrefix = "sensors"

// period is the number of runs after which the simulated values repeat.
const period = 60

func init() {
	shanhai.HandleTimer(poll)
}

// main is empty: the gateway calls the module's exports, not main.
func main() {}

// Reading is one reading of a sensor, as published.
type Reading struct {
	Sensor       uint16  `json:"sensor"`
	Time         int64   `json:"time"`
	TemperatureC float64 `json:"temperature_c"`
	HumidityPct  float64 `json:"humidity_pct"`
	BatteryMV    uint16  `json:"battery_mv"`
	Run          uint64  `json:"run"`
}

// Simulate returns the reading of sensor id in run number run, due at
// unix seconds since the Unix epoch (see the package documentation).
func Simulate(id uint16, run uint64, unix int64) Reading {
	step := (run%period + 7*uint64(id)%period) % period
	angle := 2 * math.Pi * float64(step) / period
	var drained uint64
	if run > 0 {
		drained = (run - 1) % 700
	}
	return Reading{
		Sensor:       id,
		Time:         unix,
		TemperatureC: math.Round(2000+500*math.Sin(angle)) / 100,
		HumidityPct:  math.Round(5000+2000*math.Cos(angle)) / 100,
		BatteryMV:    uint16(3700 - drained),
		Run:          run,
	}
}

// ParseSensors parses a comma-separated list of sensor ids, with optional
// spaces around each.
func ParseSensors(list string) ([]uint16, error) {
	var ids []uint16
	for part := range strings.SplitSeq(list, ",") {
		part = strings.TrimSpace(part)
		id, err := strconv.ParseUint(part, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("sensor id %q is not a number from 0 to 65535", part)
		}
		ids = append(ids, uint16(id))
	}
	return ids, nil
}

// sensors returns the ids the run polls: the timer's payload, or the
// config variable sensors.
func sensors(t shanhai.Timer) ([]uint16, error) {
	list := strings.TrimSpace(string(t.Payload))
	if list == "" {
		v, err := shanhai.Config("sensors")
		if errors.Is(err, shanhai.ErrNotFound) || (err == nil && strings.TrimSpace(v) == "") {
			return nil, errors.New("no sensors to poll: set the timer's payload or the config variable sensors")
		}
		if err != nil {
			return nil, fmt.Errorf("reading config variable sensors: %w", err)
		}
		list = v
	}
	return ParseSensors(list)
}

// topicPrefix returns the config variable topic_prefix, or
// DefaultTopicPrefix.
func topicPrefix() (string, error) {
	prefix, err := shanhai.Config("topic_prefix")
	if errors.Is(err, shanhai.ErrNotFound) {
		return DefaultTopicPrefix, nil
	}
	if err != nil {
		return "", fmt.Errorf("reading config variable topic_prefix: %w", err)
	}
	return strings.TrimSuffix(prefix, "/"), nil
}

// poll is the timer handler: one reading per sensor, each published.
func poll(t shanhai.Timer) error {
	ids, err := sensors(t)
	if err != nil {
		return err
	}
	prefix, err := topicPrefix()
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		payload, err := json.Marshal(Simulate(id, t.Run, t.Scheduled.Unix()))
		if err != nil {
			return err
		}
		topic := prefix + "/" + strconv.Itoa(int(id)) + "/reading"
		if err := shanhai.PublishMQTT(topic, payload, 0, false); err != nil {
			errs = append(errs, fmt.Errorf("sensor %d: %w", id, err))
		}
	}
	slog.Info("sensor poll", "timer", t.Name, "run", t.Run, "sensors", len(ids), "failed", len(errs))
	return errors.Join(errs...)
}
