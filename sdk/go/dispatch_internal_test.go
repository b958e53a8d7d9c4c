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
