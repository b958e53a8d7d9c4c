//go:build !wasm

// The tests run natively, against shanhaitest's mock host.

package main

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

// due is the due time of the runs in the tests.
var due = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// run resets the mock host, grants grant (if not empty), sets the config
// variables vars (key, value, ...) and fires run number n of the timer
// with payload.
func run(t *testing.T, grant, payload string, n uint64, vars ...string) error {
	t.Helper()
	shanhaitest.Reset()
	if grant != "" {
		shanhaitest.GrantMQTTPublish(grant)
	}
	for i := 0; i+1 < len(vars); i += 2 {
		shanhaitest.SetConfig(vars[i], vars[i+1])
	}
	return shanhaitest.FireTimer(shanhai.Timer{Name: "poll", Scheduled: due, Run: n, Payload: []byte(payload)})
}

// published returns the topics and payloads published, as "topic payload"
// lines.
func published() []string {
	var lines []string
	for _, m := range shanhaitest.MQTTPublished() {
		if m.QoS != 0 || m.Retain {
			lines = append(lines, "unexpected QoS or retain: "+m.Topic)
		}
		lines = append(lines, m.Topic+" "+string(m.Payload))
	}
	return lines
}

func wantPublished(t *testing.T, want ...string) {
	t.Helper()
	got := published()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("published\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestEachSensorIsPublished(t *testing.T) {
	if err := run(t, "sensors/+/reading", "1, 2,3", 1); err != nil {
		t.Fatal(err)
	}
	wantPublished(t,
		`sensors/1/reading {"sensor":1,"time":1735689600,"temperature_c":23.72,"humidity_pct":63.38,"battery_mv":3700,"run":1}`,
		`sensors/2/reading {"sensor":2,"time":1735689600,"temperature_c":25,"humidity_pct":50,"battery_mv":3700,"run":1}`,
		`sensors/3/reading {"sensor":3,"time":1735689600,"temperature_c":23.72,"humidity_pct":36.62,"battery_mv":3700,"run":1}`,
	)
	logs := shanhaitest.Logs()
	if len(logs) != 1 || logs[0].Text != "sensor poll timer=poll run=1 sensors=3 failed=0" {
		t.Errorf("logs %+v", logs)
	}
}

// The same run gives the same readings; the values repeat every 60 runs
// while the battery drains.
func TestReadingsAreDeterministic(t *testing.T) {
	for range 2 {
		if err := run(t, "#", "2", 2); err != nil {
			t.Fatal(err)
		}
		wantPublished(t, `sensors/2/reading {"sensor":2,"time":1735689600,"temperature_c":24.97,"humidity_pct":47.91,"battery_mv":3699,"run":2}`)
	}
	a, b := Simulate(9, 5, 0), Simulate(9, 65, 0)
	if a.TemperatureC != b.TemperatureC || a.HumidityPct != b.HumidityPct || a.BatteryMV != 3696 || b.BatteryMV != 3636 {
		t.Errorf("runs 5 and 65: %+v %+v", a, b)
	}
	if r := Simulate(0, 701, 0); r.BatteryMV != 3700 {
		t.Errorf("run 701: %+v", r)
	}
}

// Every value stays in the range the binary form of mqtt-transform holds,
// with two decimals.
func TestReadingsStayInRange(t *testing.T) {
	for id := range uint16(100) {
		for n := range uint64(130) {
			r := Simulate(id*661, n, 0)
			if r.TemperatureC < 15 || r.TemperatureC > 25 || r.HumidityPct < 30 || r.HumidityPct > 70 ||
				r.BatteryMV < 3001 || r.BatteryMV > 3700 {
				t.Fatalf("sensor %d run %d: %+v", id, n, r)
			}
			if c := r.TemperatureC * 100; math.Abs(c-math.Round(c)) > 1e-6 {
				t.Fatalf("sensor %d run %d: %v has more than two decimals", id, n, r.TemperatureC)
			}
		}
	}
}

func TestSensorsFromConfigAndTopicPrefix(t *testing.T) {
	if err := run(t, "plant/+/reading", "", 3, "sensors", "7", "topic_prefix", "plant/"); err != nil {
		t.Fatal(err)
	}
	got := published()
	if len(got) != 1 || !strings.HasPrefix(got[0], `plant/7/reading {"sensor":7,`) {
		t.Errorf("published %q", got)
	}
	// The payload wins over the config variable.
	if err := run(t, "#", "8", 3, "sensors", "7"); err != nil {
		t.Fatal(err)
	}
	if got := published(); len(got) != 1 || !strings.HasPrefix(got[0], "sensors/8/reading ") {
		t.Errorf("published %q", got)
	}
}

func TestBadSensorLists(t *testing.T) {
	for _, tc := range []struct {
		payload string
		vars    []string
		want    string
	}{
		{"", nil, "no sensors to poll: set the timer's payload or the config variable sensors"},
		{" ", []string{"sensors", " "}, "no sensors to poll: set the timer's payload or the config variable sensors"},
		{"1,x", nil, `sensor id "x" is not a number from 0 to 65535`},
		{"1,,2", nil, `sensor id "" is not a number from 0 to 65535`},
		{"65536", nil, `sensor id "65536" is not a number from 0 to 65535`},
		{"", []string{"sensors", "-1"}, `sensor id "-1" is not a number from 0 to 65535`},
	} {
		err := run(t, "#", tc.payload, 1, tc.vars...)
		var ee *shanhaitest.EventError
		if !errors.As(err, &ee) || ee.Message != tc.want {
			t.Errorf("%q %q: got %v, want %q", tc.payload, tc.vars, err, tc.want)
		}
		if got := published(); got != nil {
			t.Errorf("published %q", got)
		}
	}
}

// A publication the gateway refuses fails the run, after the others were
// published.
func TestRefusedPublicationsFailTheRun(t *testing.T) {
	err := run(t, "sensors/2/reading", "1,2,3", 1)
	want := "sensor 1: shanhai: mqtt_publish: denied: no mqtt_publish grant matches topic `sensors/1/reading`\n" +
		"sensor 3: shanhai: mqtt_publish: denied: no mqtt_publish grant matches topic `sensors/3/reading`"
	var ee *shanhaitest.EventError
	if !errors.As(err, &ee) || ee.Message != want {
		t.Errorf("got %v, want %q", err, want)
	}
	if got := published(); len(got) != 1 || !strings.HasPrefix(got[0], "sensors/2/reading ") {
		t.Errorf("published %q", got)
	}

	shanhaitest.Reset()
	shanhaitest.GrantMQTTPublish("#")
	shanhaitest.FailMQTTPublish(shanhai.ErrUnavailable, "MQTT is not enabled in this gateway")
	err = shanhaitest.FireTimer(shanhai.Timer{Name: "poll", Payload: []byte("4")})
	want = "sensor 4: shanhai: mqtt_publish: unavailable: MQTT is not enabled in this gateway"
	if !errors.As(err, &ee) || ee.Message != want {
		t.Errorf("got %v, want %q", err, want)
	}
}
