//go:build !wasm

package shanhai

import (
	"io"
	"net/http"
	"testing"

	"github.com/shanhai-edge/shanhai/sdk/go/internal/hostcall"
	"github.com/shanhai-edge/shanhai/sdk/go/internal/wire"
)

// withRegistry runs f with the given handlers registered and restores the
// previous registrations afterwards.
func withRegistry(h http.Handler, fns map[string]func([]byte) ([]byte, error), f func()) {
	oldH, oldFns := httpHandler, functions
	defer func() { httpHandler, functions = oldH, oldFns }()
	httpHandler, functions = h, fns
	f()
}

func TestNothingRegisteredIsUnsupported(t *testing.T) {
	withRegistry(nil, map[string]func([]byte) ([]byte, error){}, func() {
		req := (&wire.HTTPRequest{Method: "GET", URI: "/"}).Append(nil)
		if status, _ := hostcall.Event(eventHTTP, req); status != statusUnsupported {
			t.Errorf("HTTP without a handler: status %d", status)
		}
		call := (&wire.Call{Function: "f"}).Append(nil)
		if status, _ := hostcall.Event(eventCall, call); status != statusUnsupported {
			t.Errorf("call without functions: status %d", status)
		}
	})
}

func TestWebSocketWithoutHandlerIsUnsupported(t *testing.T) {
	old := wsHandler
	defer func() { wsHandler = old }()
	wsHandler = nil
	ev := (&wire.WSEvent{Type: wire.WSOpen, Conn: 1, URI: "/"}).Append(nil)
	if status, out := hostcall.Event(eventWebSocket, ev); status != statusUnsupported || len(out) != 0 {
		t.Errorf("WebSocket without a handler: status %d, %q", status, out)
	}
	HandleWebSocket(WebSocketHandler{})
	if status, _ := hostcall.Event(eventWebSocket, ev); status != statusOK {
		t.Errorf("WebSocket with an empty handler: status %d", status)
	}
}

func TestTimerWithoutHandlerIsUnsupported(t *testing.T) {
	old := timerHandler
	defer func() { timerHandler = old }()
	timerHandler = nil
	ev := (&wire.TimerEvent{Timer: "t", ScheduledMs: 1, Run: 1}).Append(nil)
	for _, env := range [][]byte{ev, []byte("not an envelope")} {
		if status, out := hostcall.Event(eventTimer, env); status != statusUnsupported || len(out) != 0 {
			t.Errorf("timer without a handler: status %d, %q", status, out)
		}
	}
	HandleTimer(func(Timer) error { return nil })
	if status, _ := hostcall.Event(eventTimer, ev); status != statusOK {
		t.Errorf("timer with a handler: status %d", status)
	}
}

func TestTCPWithoutHandlerIsUnsupported(t *testing.T) {
	old := tcpHandler
	defer func() { tcpHandler = old }()
	tcpHandler = nil
	ev := (&wire.TCPEvent{Type: wire.TCPOpen, Conn: 1, Listener: "modbus"}).Append(nil)
	for _, env := range [][]byte{ev, []byte("not an envelope")} {
		if status, out := hostcall.Event(eventTCP, env); status != statusUnsupported || len(out) != 0 {
			t.Errorf("TCP without a handler: status %d, %q", status, out)
		}
	}
	HandleTCP(TCPHandler{})
	if status, _ := hostcall.Event(eventTCP, ev); status != statusOK {
		t.Errorf("TCP with an empty handler: status %d", status)
	}
}

// Kind 5 is reserved for MQTT, which this SDK does not handle yet.
func TestReservedKindIsUnsupported(t *testing.T) {
	for _, kind := range []int32{0, 5, 7, -1} {
		if status, out := hostcall.Event(kind, nil); status != statusUnsupported || len(out) != 0 {
			t.Errorf("kind %d: status %d, %q", kind, status, out)
		}
	}
}

func TestHandleTimerRefusesNil(t *testing.T) {
	defer func() {
		if v := recover(); v != "shanhai: HandleTimer with a nil handler" {
			t.Errorf("recovered %v", v)
		}
	}()
	HandleTimer(nil)
}

var benchRequest = (&wire.HTTPRequest{
	Method:     "GET",
	URI:        "/json2k?x=1",
	RequestID:  "0123456789abcdef",
	RemoteAddr: "127.0.0.1:40000",
	Headers: []wire.Header{
		{Name: "host", Value: "127.0.0.1:8080"},
		{Name: "user-agent", Value: "wrk"},
		{Name: "accept", Value: "*/*"},
		{Name: "x-request-id", Value: "0123456789abcdef"},
	},
}).Append(nil)

// BenchmarkHTTPEvent measures the SDK's own cost per HTTP event: decoding,
// building the request, a handler writing 2 KB and encoding the response.
// The mock host's copy of the output is included.
func BenchmarkHTTPEvent(b *testing.B) {
	body := make([]byte, 2048)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	withRegistry(h, functions, func() {
		b.ReportAllocs()
		for b.Loop() {
			hostcall.DiscardOutput()
			if status := handleEvent(eventHTTP, benchRequest); status != statusOK {
				b.Fatal(status)
			}
		}
	})
}

// The per-event allocations stay bounded: the request and its maps are
// new each time, but the envelope buffers are reused.
func TestHTTPEventAllocations(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"ok":true}`)
	})
	withRegistry(h, functions, func() {
		allocs := testing.AllocsPerRun(100, func() {
			hostcall.DiscardOutput()
			handleEvent(eventHTTP, benchRequest)
		})
		// Measured 10 with Go 1.26; the bound catches
		// a regression such as per-header string copies or a buffer that
		// is no longer reused.
		if allocs > 20 {
			t.Errorf("%.0f allocations per HTTP event", allocs)
		}
		t.Logf("%.0f allocations per HTTP event", allocs)
	})
}
