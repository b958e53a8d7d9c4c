//go:build !wasm

package shanhaitest

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	// The SDK installs its dispatcher in the mock host when it initialises;
	// importing it here makes sure it has, even in a test that has not
	// registered anything yet.
	_ "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/internal/hostcall"
	"github.com/shanhai-edge/shanhai/sdk/go/internal/wire"
)

// Event kinds, as passed to Dispatch.
const (
	KindHTTP      int32 = 1
	KindCall      int32 = 2
	KindWebSocket int32 = 3
	KindTimer     int32 = 4
	KindMQTT      int32 = 5
	KindTCP       int32 = 6
)

// Event statuses, as returned by Dispatch (docs/abi.md, "Event
// statuses").
const (
	StatusOK          int32 = 0
	StatusError       int32 = 1
	StatusNotFound    int32 = 2
	StatusUnsupported int32 = 3
)

// EventError is the error Do, Call, FireTimer, DeliverMQTT and the
// WebSocket and TCP helpers return when the guest answers an event with a status other than ok.
type EventError struct {
	// Status is the event status the guest returned.
	Status int32
	// Message is the event's output, the guest's error message.
	Message string
}

func (e *EventError) Error() string {
	name := map[int32]string{
		StatusError:       "error",
		StatusNotFound:    "not_found",
		StatusUnsupported: "unsupported",
	}[e.Status]
	if name == "" {
		name = "status " + strconv.Itoa(int(e.Status))
	}
	if e.Message == "" {
		return "guest answered " + name
	}
	return "guest answered " + name + ": " + e.Message
}

// LogLine is one line the guest logged.
type LogLine struct {
	// Level is the ABI level: 1 debug, 2 info, 3 warn, 4 error.
	Level int32
	// Text is the line as the guest sent it.
	Text string
}

// Reset clears the mock host: its log, its config variables, its output
// and message limits, its WebSocket connections, rooms and broadcasts, and
// its MQTT grant, publications and failures, and its state grants (all
// denied), KV stores, clock, SQL and fetch handlers and GPIO pins.
// Registered handlers are the guest's and stay.
func Reset() { hostcall.Reset() }

// SetConfig sets the module config variable key, which the guest reads
// with shanhai.Config.
func SetConfig(key, value string) { hostcall.SetConfig(key, value, true) }

// UnsetConfig removes the config variable key.
func UnsetConfig(key string) { hostcall.SetConfig(key, "", false) }

// SetMaxOutput sets the largest output an event may write, the gateway's
// max_response_bytes (8 MiB by default).
func SetMaxOutput(n int) { hostcall.SetMaxOutput(n) }

// Logs returns the lines the guest has logged since the last Reset.
func Logs() []LogLine {
	lines := hostcall.Logs()
	out := make([]LogLine, len(lines))
	for i, l := range lines {
		out[i] = LogLine{Level: l.Level, Text: l.Text}
	}
	return out
}

// Dispatch delivers one raw event, as the host's shanhai_event call does,
// and returns the guest's status and output.
func Dispatch(kind int32, envelope []byte) (status int32, output []byte) {
	return hostcall.Event(kind, envelope)
}

var requestIDs atomic.Uint64

// Do serves r with the guest's HTTP handler, the way the gateway would,
// and returns the decoded response.
//
// The envelope carries r.Method, r.RequestURI (or r.URL.RequestURI() when
// that is empty), r.RemoteAddr, a host header from r.Host, r.Header with
// lower-case names, and the body. The request id is r's x-request-id
// header if it has one; otherwise Do generates one and adds the header, as
// the gateway does. A status other than ok is returned as an *EventError.
func Do(r *http.Request) (*http.Response, error) {
	env, err := Encode(r)
	if err != nil {
		return nil, err
	}
	status, out := Dispatch(KindHTTP, env)
	if status != StatusOK {
		return nil, &EventError{Status: status, Message: string(out)}
	}
	resp, err := wire.DecodeHTTPResponse(out)
	if err != nil {
		return nil, fmt.Errorf("shanhaitest: malformed response envelope: %w", err)
	}
	header := make(http.Header, len(resp.Headers))
	for _, h := range resp.Headers {
		header.Add(h.Name, h.Value)
	}
	return &http.Response{
		Status:        strconv.Itoa(int(resp.Status)) + " " + http.StatusText(int(resp.Status)),
		StatusCode:    int(resp.Status),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        header,
		Body:          io.NopCloser(bytes.NewReader(resp.Body)),
		ContentLength: int64(len(resp.Body)),
		Request:       r,
	}, nil
}

// Encode returns the HttpRequest envelope Do sends for r. It reads r.Body.
func Encode(r *http.Request) ([]byte, error) {
	var body []byte
	if r.Body != nil {
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			return nil, fmt.Errorf("shanhaitest: reading the request body: %w", err)
		}
	}
	id, headers := requestHeaders(r)
	req := wire.HTTPRequest{
		Method:     r.Method,
		URI:        requestURI(r),
		RequestID:  id,
		RemoteAddr: r.RemoteAddr,
		Headers:    headers,
		Body:       body,
	}
	return req.Append(nil), nil
}

// requestURI is the path and query of r as the gateway passes them on.
func requestURI(r *http.Request) string {
	if r.RequestURI != "" {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

// requestHeaders returns r's request id and its headers as the gateway
// sends them: a host header from r.Host, an x-request-id header (generated
// when r has none, which gives the id), then r.Header with lower-case
// names.
func requestHeaders(r *http.Request) (id string, headers []wire.Header) {
	id = r.Header.Get("X-Request-Id")
	if r.Host != "" {
		headers = append(headers, wire.Header{Name: "host", Value: r.Host})
	}
	if id == "" {
		id = newRequestID()
		headers = append(headers, wire.Header{Name: "x-request-id", Value: id})
	}
	// Sorted, so that one request always gives the same envelope.
	for _, name := range slices.Sorted(maps.Keys(r.Header)) {
		for _, v := range r.Header[name] {
			headers = append(headers, wire.Header{Name: strings.ToLower(name), Value: v})
		}
	}
	return id, headers
}

func newRequestID() string {
	return "shanhaitest-" + strconv.FormatUint(requestIDs.Add(1), 10)
}

// Call calls the guest's byte function named function with input, as
// `POST /api/exec/MODULE/FUNCTION` does, and returns its output. A status
// other than ok is returned as an *EventError.
func Call(function string, input []byte) ([]byte, error) {
	call := wire.Call{Function: function, Input: input}
	status, out := Dispatch(KindCall, call.Append(nil))
	if status != StatusOK {
		return nil, &EventError{Status: status, Message: string(out)}
	}
	return out, nil
}
