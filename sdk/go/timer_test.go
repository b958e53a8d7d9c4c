//go:build !wasm

package shanhai_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/internal/wire"
	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

// handleTimer registers a handler that records the runs it sees (with
// their payloads copied) and answers with result, and resets the mock host.
func handleTimer(t *testing.T, result func(shanhai.Timer) error) *[]shanhai.Timer {
	t.Helper()
	shanhaitest.Reset()
	var runs []shanhai.Timer
	shanhai.HandleTimer(func(tm shanhai.Timer) error {
		tm.Payload = bytes.Clone(tm.Payload)
		runs = append(runs, tm)
		return result(tm)
	})
	return &runs
}

func runOK(shanhai.Timer) error { return nil }

func wantRun(t *testing.T, got, want shanhai.Timer) {
	t.Helper()
	if got.Name != want.Name || !got.Scheduled.Equal(want.Scheduled) || got.Scheduled.Location() != time.UTC ||
		got.Run != want.Run || got.Skipped != want.Skipped || !bytes.Equal(got.Payload, want.Payload) {
		t.Errorf("handler saw\n %+v\nwant\n %+v", got, want)
	}
}

func TestTimerSeesTheRun(t *testing.T) {
	runs := handleTimer(t, runOK)
	want := shanhai.Timer{
		Name:      "cleanup",
		Scheduled: time.Date(2025, 1, 1, 0, 0, 0, 123e6, time.UTC),
		Run:       7,
		Skipped:   2,
		Payload:   []byte(`{"older_than":"7d"}`),
	}
	if err := shanhaitest.FireTimer(want); err != nil {
		t.Fatal(err)
	}
	if len(*runs) != 1 {
		t.Fatalf("%d runs", len(*runs))
	}
	wantRun(t, (*runs)[0], want)
}

// The gateway never sends a zero time or run number; FireTimer fills in
// the ones a test leaves out.
func TestFireTimerDefaults(t *testing.T) {
	runs := handleTimer(t, runOK)
	before := time.Now().Truncate(time.Millisecond)
	if err := shanhaitest.FireTimer(shanhai.Timer{Name: "tick"}); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	got := (*runs)[0]
	if got.Name != "tick" || got.Run != 1 || got.Skipped != 0 || len(got.Payload) != 0 {
		t.Errorf("handler saw %+v", got)
	}
	if got.Scheduled.Before(before) || got.Scheduled.After(after) {
		t.Errorf("scheduled %v, want between %v and %v", got.Scheduled, before, after)
	}

	err := shanhaitest.FireTimer(shanhai.Timer{Name: "old", Scheduled: time.Unix(-1, 0)})
	if err == nil || len(*runs) != 1 {
		t.Errorf("a run before the Unix epoch: %v, %d runs", err, len(*runs))
	}
}

func TestTimerErrorFailsTheRun(t *testing.T) {
	handleTimer(t, func(tm shanhai.Timer) error {
		if tm.Run == 2 {
			return errors.New("disk full")
		}
		return nil
	})
	if err := shanhaitest.FireTimer(shanhai.Timer{Name: "backup", Run: 1}); err != nil {
		t.Errorf("run 1: %v", err)
	}
	err := shanhaitest.FireTimer(shanhai.Timer{Name: "backup", Run: 2})
	wantEventError(t, err, shanhaitest.StatusError, "disk full")
}

// A panic fails the run like an error, logs its stack, and leaves the
// instance usable.
func TestTimerPanic(t *testing.T) {
	handleTimer(t, func(tm shanhai.Timer) error {
		if string(tm.Payload) == "boom" {
			panic("exploded")
		}
		return nil
	})
	err := shanhaitest.FireTimer(shanhai.Timer{Name: "t", Payload: []byte("boom")})
	wantEventError(t, err, shanhaitest.StatusError, "panic: exploded")
	logs := shanhaitest.Logs()
	if len(logs) != 1 || logs[0].Level != 4 || !strings.HasPrefix(logs[0].Text, "panic: exploded\n") ||
		!strings.Contains(logs[0].Text, "goroutine") {
		t.Errorf("logs %+v, want the panic with its stack", logs)
	}
	if err := shanhaitest.FireTimer(shanhai.Timer{Name: "t"}); err != nil {
		t.Errorf("the run after a panic: %v", err)
	}
}

// The output of a run is ignored, so a successful run writes none.
func TestTimerWritesNoOutput(t *testing.T) {
	handleTimer(t, runOK)
	env := (&wire.TimerEvent{Timer: "t", ScheduledMs: 1, Run: 1}).Append(nil)
	if status, out := shanhaitest.Dispatch(shanhaitest.KindTimer, env); status != shanhaitest.StatusOK || len(out) != 0 {
		t.Errorf("status %d, output %q", status, out)
	}
}

// A timer run may use the host like any event: here it pushes to the
// WebSocket connections in a room.
func TestTimerUsesTheHost(t *testing.T) {
	shanhaitest.Reset()
	shanhai.HandleWebSocket(shanhai.WebSocketHandler{
		OnOpen: func(c *shanhai.WSConn) ([]byte, error) { return nil, c.Join("ticks") },
	})
	shanhaitest.SetConfig("prefix", "tick ")
	shanhai.HandleTimer(func(tm shanhai.Timer) error {
		prefix, err := shanhai.Config("prefix")
		if err != nil {
			return err
		}
		_, err = shanhai.Broadcast("ticks", text(prefix+tm.Name), 0)
		return err
	})
	c := connect(t, "/ticks")
	if err := shanhaitest.FireTimer(shanhai.Timer{Name: "heartbeat"}); err != nil {
		t.Fatal(err)
	}
	wantReceived(t, c, text("tick heartbeat"))
}

func TestTimerBadEnvelope(t *testing.T) {
	runs := handleTimer(t, runOK)
	name := string(wire.AppendFieldString(nil, "t"))
	for env, want := range map[string]string{
		"":                     "envelope truncated in timer name",
		"\x09\x00\x00\x00t":    "envelope truncated in timer name",
		"\x01\x00\x00\x00\xff": "timer name is not valid UTF-8",
		name + "\x01\x02\x03":  "envelope truncated in scheduled time",
		name + strings.Repeat("\x00", 8) + "\x01":  "envelope truncated in run number",
		name + strings.Repeat("\x00", 16) + "\x01": "envelope truncated in skipped runs",
	} {
		status, out := shanhaitest.Dispatch(shanhaitest.KindTimer, []byte(env))
		if status != shanhaitest.StatusError || string(out) != "bad timer event envelope: "+want {
			t.Errorf("%q: status %d, %q", env, status, out)
		}
	}
	if len(*runs) != 0 {
		t.Errorf("the handler ran for a bad envelope: %+v", *runs)
	}
}

// The golden TimerEvent envelopes, which crates/abi encodes byte for byte,
// reach the handler as the values they hold.
func TestTimerGoldenVectors(t *testing.T) {
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		TimerEvent []struct {
			Name string `json:"name"`
			Hex  string `json:"hex"`
		} `json:"timer_event"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	want := map[string]shanhai.Timer{
		"first-run-with-payload": {
			Name: "cleanup", Scheduled: time.Date(2025, 1, 1, 0, 0, 0, 123e6, time.UTC),
			Run: 1, Payload: []byte(`{"older_than":"7d"}`),
		},
		"late-run-skipped-empty-payload": {
			Name: "nightly-résumé", Scheduled: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
			Run: 1<<32 + 5, Skipped: 3,
		},
	}
	if len(v.TimerEvent) != len(want) {
		t.Fatalf("%d timer_event vectors, the test knows %d", len(v.TimerEvent), len(want))
	}
	runs := handleTimer(t, runOK)
	for _, vec := range v.TimerEvent {
		t.Run(vec.Name, func(t *testing.T) {
			env, err := hex.DecodeString(vec.Hex)
			if err != nil {
				t.Fatal(err)
			}
			*runs = nil
			if status, out := shanhaitest.Dispatch(shanhaitest.KindTimer, env); status != shanhaitest.StatusOK {
				t.Fatalf("status %d: %s", status, out)
			}
			if len(*runs) != 1 {
				t.Fatalf("%d runs", len(*runs))
			}
			wantRun(t, (*runs)[0], want[vec.Name])
		})
	}
}
