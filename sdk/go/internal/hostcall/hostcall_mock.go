//go:build !wasm

package hostcall

import "sync"

// DefaultMaxOutput is the mock host's output limit, the gateway's default
// max_response_bytes.
const DefaultMaxOutput = 8 << 20

// LogLine is one line the guest sent to the mock host's log.
type LogLine struct {
	Level int32
	Text  string
}

// The mock host. Two locks: events serialises whole events the way one
// wasm instance would (a guest is single-threaded), and mu guards the
// host's state, which the guest touches from inside an event.
var (
	events   sync.Mutex
	dispatch func(kind int32, envelope []byte) int32

	mu        sync.Mutex
	logs      []LogLine
	output    []byte
	maxOutput = DefaultMaxOutput
	config    = map[string]string{}
	staged    []byte
	hasStaged bool
)

// SetDispatcher installs the guest's event entry point, the native
// counterpart of the shanhai_event export.
func SetDispatcher(f func(kind int32, envelope []byte) int32) {
	mu.Lock()
	defer mu.Unlock()
	dispatch = f
}

// Event runs one event through the guest the way the host does: it resets
// the per-event state, calls the dispatcher and returns its status and the
// accumulated output.
func Event(kind int32, envelope []byte) (status int32, out []byte) {
	events.Lock()
	defer events.Unlock()
	mu.Lock()
	output, staged, hasStaged = nil, nil, false
	f := dispatch
	mu.Unlock()
	// The envelope lives in guest memory the guest may reuse; hand it a
	// private copy so tests cannot observe aliasing they would not see on
	// the real host.
	status = f(kind, append([]byte(nil), envelope...))
	mu.Lock()
	defer mu.Unlock()
	out, output = output, nil
	return status, out
}

// DiscardOutput empties the current event's output, keeping its buffer;
// for benchmarks that call the dispatcher directly.
func DiscardOutput() {
	mu.Lock()
	defer mu.Unlock()
	output = output[:0]
}

// Reset restores the mock host's initial state: no logs, no config, the
// default output limit, no WebSocket connections, no MQTT grants or
// publications, no state grants, KV entries, responders or GPIO pins.
func Reset() {
	mu.Lock()
	defer mu.Unlock()
	logs, output, staged, hasStaged = nil, nil, nil, false
	config = map[string]string{}
	maxOutput = DefaultMaxOutput
	resetWS()
	resetMQTT()
	resetState()
}

// SetConfig sets (or, with ok false, removes) a config variable.
func SetConfig(key, value string, ok bool) {
	mu.Lock()
	defer mu.Unlock()
	if ok {
		config[key] = value
	} else {
		delete(config, key)
	}
}

// SetMaxOutput sets the per-event output limit.
func SetMaxOutput(n int) {
	mu.Lock()
	defer mu.Unlock()
	maxOutput = n
}

// Logs returns a copy of the log lines received so far.
func Logs() []LogLine {
	mu.Lock()
	defer mu.Unlock()
	return append([]LogLine(nil), logs...)
}

// Log records one log line.
func Log(level int32, text []byte) {
	mu.Lock()
	defer mu.Unlock()
	logs = append(logs, LogLine{Level: level, Text: string(text)})
}

// OutputWrite appends b to the current event's output, or refuses it
// whole when the limit would be exceeded, as the host does.
func OutputWrite(b []byte) int32 {
	mu.Lock()
	defer mu.Unlock()
	if len(output)+len(b) > maxOutput {
		return StatusTooLarge
	}
	output = append(output, b...)
	return 0
}

// ConfigGet stages the value of config variable key and returns its length.
func ConfigGet(key string) int32 {
	mu.Lock()
	defer mu.Unlock()
	v, ok := config[key]
	if !ok {
		return StatusNotFound
	}
	staged, hasStaged = []byte(v), true
	return int32(len(v))
}

// StagedRead copies up to len(dst) bytes of the staged value into dst and
// returns how many it copied.
func StagedRead(dst []byte) int32 {
	mu.Lock()
	defer mu.Unlock()
	if !hasStaged {
		return StatusNothingStaged
	}
	return int32(copy(dst, staged))
}
