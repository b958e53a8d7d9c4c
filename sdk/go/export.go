package shanhai

import (
	"strconv"

	"github.com/shanhai-edge/shanhai/sdk/go/internal/wire"
)

// functions holds the byte functions registered with Export. It is written
// in init functions and read during events, which never overlap (see the
// package documentation), so it needs no lock.
var functions = map[string]func(input []byte) ([]byte, error){}

// Export registers fn as the byte function name, callable through event
// kind 2 — for example `POST /api/exec/MODULE/NAME` with the input as the
// request body. Call it from an init function; registering a name again
// replaces the earlier function.
//
// fn's result is the event's output. A non-nil error makes the event fail
// with err.Error() as the message (the gateway answers 500 guest_error),
// and so does a panic.
//
// input is a view of the event's envelope in guest memory, reused once the
// event is over: fn may read it and return it, but must copy it to keep any
// part of it.
func Export(name string, fn func(input []byte) ([]byte, error)) {
	if fn == nil {
		panic("shanhai: Export of " + name + " with a nil function")
	}
	functions[name] = fn
}

// callEvent handles event kind 2.
func callEvent(in []byte) int32 {
	if len(functions) == 0 {
		return statusUnsupported
	}
	name, input, err := wire.DecodeCall(in)
	if err != nil {
		return fail("bad call envelope: " + err.Error())
	}
	// The conversion in a map index does not allocate.
	fn, ok := functions[string(name)]
	if !ok {
		writeMessage("no byte function named " + strconv.Quote(string(name)))
		return statusNotFound
	}
	out, err := fn(input)
	if err != nil {
		return fail(err.Error())
	}
	return writeOutput(out)
}
