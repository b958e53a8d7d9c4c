package shanhai

import (
	"time"

	"github.com/shanhai-edge/shanhai/sdk/go/internal/wire"
)

// Timer is one run of a timer configured in the gateway ([timers.NAME]).
type Timer struct {
	// Name is the timer's name, NAME in [timers.NAME].
	Name string
	// Scheduled is when the run was due (before jitter), in UTC, to the
	// millisecond.
	Scheduled time.Time
	// Run is 1 for the timer's first run since the gateway started, then 2,
	// 3, ...
	Run uint64
	// Skipped counts the runs skipped since the previous one because it
	// was still going.
	Skipped uint32
	// Payload is the timer's payload from the config. It is a view of the
	// event's envelope, valid only until the handler returns: copy it to
	// keep any part of it.
	Payload []byte
}

// timerHandler is the handler registered with HandleTimer, nil when there
// is none. Like httpHandler it is written in init and read during events.
var timerHandler func(t Timer) error

// HandleTimer registers h as the handler for every timer that targets this
// module: each run is an event (kind 4) that calls h. An error fails the
// run (event status error with the error's text as the output), which the
// gateway logs and counts; so does a panic, which also logs its stack. The
// instance stays usable either way.
//
// Call it from an init function; a later call replaces the handler.
// Without a handler, timer events answer unsupported. Whatever h returns,
// a run's output is ignored: log what the run did, or keep it in the
// host's stores.
func HandleTimer(h func(t Timer) error) {
	if h == nil {
		panic("shanhai: HandleTimer with a nil handler")
	}
	timerHandler = h
}

// timerEvent handles event kind 4.
func timerEvent(in []byte) int32 {
	h := timerHandler
	if h == nil {
		return statusUnsupported
	}
	var s wire.TimerEventSpans
	if err := s.Decode(in); err != nil {
		return fail("bad timer event envelope: " + err.Error())
	}
	t := Timer{
		Name: string(s.Timer.Bytes(in)),
		// A time past int64 milliseconds (292 million years) cannot come
		// from the gateway's clock.
		Scheduled: time.UnixMilli(int64(s.ScheduledMs)).UTC(),
		Run:       s.Run,
		Skipped:   s.Skipped,
		Payload:   in[s.Payload:len(in):len(in)],
	}
	if err := h(t); err != nil {
		return fail(err.Error())
	}
	return statusOK
}
