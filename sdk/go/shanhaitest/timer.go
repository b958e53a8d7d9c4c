//go:build !wasm

package shanhaitest

import (
	"errors"
	"time"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/internal/wire"
)

// FireTimer delivers a run of timer t to the guest's handler (see
// [shanhai.HandleTimer]), as the gateway does when the timer is due, and
// returns the handler's outcome: nil, or an *[EventError] with status
// error and the handler's message (or panic). A module without a timer
// handler answers unsupported, also an *EventError.
//
// The gateway never sends a zero Scheduled or Run, so FireTimer fills
// them in: a zero Scheduled becomes the current time and a zero Run
// becomes 1. Scheduled is passed to the millisecond, and a time before
// the Unix epoch, which the envelope cannot hold, is an error.
func FireTimer(t shanhai.Timer) error {
	if t.Scheduled.IsZero() {
		t.Scheduled = time.Now()
	}
	ms := t.Scheduled.UnixMilli()
	if ms < 0 {
		return errors.New("shanhaitest: FireTimer: Scheduled is before the Unix epoch")
	}
	if t.Run == 0 {
		t.Run = 1
	}
	ev := wire.TimerEvent{
		Timer:       t.Name,
		ScheduledMs: uint64(ms),
		Run:         t.Run,
		Skipped:     t.Skipped,
		Payload:     t.Payload,
	}
	if status, out := Dispatch(KindTimer, ev.Append(nil)); status != StatusOK {
		return &EventError{Status: status, Message: string(out)}
	}
	return nil
}
