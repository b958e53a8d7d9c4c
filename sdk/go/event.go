package shanhai

import (
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"

	"github.com/shanhai-edge/shanhai/sdk/go/internal/hostcall"
)

// Event kinds (docs/abi.md, "Event kinds").
const (
	eventHTTP      int32 = 1
	eventCall      int32 = 2
	eventWebSocket int32 = 3
	eventTimer     int32 = 4
	eventMQTT      int32 = 5
	eventTCP       int32 = 6
)

// Event statuses (docs/abi.md, "Event statuses").
const (
	statusOK          int32 = 0
	statusError       int32 = 1
	statusNotFound    int32 = 2
	statusUnsupported int32 = 3
)

// bigBuffer is the capacity above which a per-event buffer is dropped after
// the event rather than kept for the next one: one large request should not
// pin its memory for the lifetime of a pooled instance.
const bigBuffer = 1 << 20

// handleEvent is the body of the shanhai_event export: it runs one event
// whose envelope is in, a view of guest memory valid until the event ends.
// A panic in a handler becomes status error with the panic as the message,
// so one bad request does not take the instance down.
func handleEvent(kind int32, in []byte) (status int32) {
	defer func() {
		if v := recover(); v != nil {
			status = fail(panicMessage(v))
		}
	}()
	switch kind {
	case eventHTTP:
		return serveHTTPEvent(in)
	case eventCall:
		return callEvent(in)
	case eventWebSocket:
		return wsEvent(in)
	case eventTimer:
		return timerEvent(in)
	case eventMQTT:
		return mqttEvent(in)
	case eventTCP:
		return tcpEvent(in)
	default:
		return statusUnsupported
	}
}

// panicMessage formats a recovered panic and logs it with its stack, which
// only the guest can capture. http.ErrAbortHandler is net/http's way to
// abort a response on purpose; like net/http, it is not logged.
func panicMessage(v any) string {
	if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
		return "handler aborted the response"
	}
	msg := fmt.Sprint("panic: ", v)
	hostcall.Log(levelError, []byte(msg+"\n\n"+string(debug.Stack())))
	return msg
}

// fail writes msg as the event's output and returns status error.
func fail(msg string) int32 {
	writeMessage(msg)
	return statusError
}

// writeMessage writes msg as the event's output. Nothing else has been
// written: every event writes its output once, at the end, so the message
// is the whole output. A refusal cannot be reported any further.
func writeMessage(msg string) {
	hostcall.OutputWrite([]byte(msg))
}

// writeOutput sends the event's whole output to the host. The host refuses
// output over the module's max_response_bytes; that becomes a guest error
// which names the size.
func writeOutput(out []byte) int32 {
	if _, err := hostResult("output_write", hostcall.OutputWrite(out)); err != nil {
		return fail(fmt.Sprintf("output of %d bytes refused: %v", len(out), err))
	}
	return statusOK
}
