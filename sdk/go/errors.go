package shanhai

import (
	"strconv"
	"strings"

	"github.com/shanhai-edge/shanhai/sdk/go/internal/hostcall"
)

// HostError reports a host function that answered with a negative status
// (docs/abi.md, "Host statuses"). Compare it with the Err values through
// [errors.Is]:
//
//	if errors.Is(err, shanhai.ErrNotFound) { ... }
//
// and use [errors.As] to read the host function and the raw status.
type HostError struct {
	// Func is the host import that failed, e.g. "config_get"; empty in the
	// Err sentinel values.
	Func string
	// Status is the negative status the host returned.
	Status int32
	// Message is the host's explanation of the failure, when it gave one
	// (the calls marked † in docs/abi.md may, e.g. which grant is
	// missing); empty otherwise.
	Message string
}

// Sentinel errors, one per host status (the values of docs/abi.md). A
// *HostError matches the sentinel with the same Status under [errors.Is],
// whatever its Func.
var (
	// ErrNotFound: the key, variable or resource does not exist.
	ErrNotFound error = &HostError{Status: -1}
	// ErrDenied: the module has no grant for this capability.
	ErrDenied error = &HostError{Status: -2}
	// ErrInvalidArgument: a bad pointer, length or encoding.
	ErrInvalidArgument error = &HostError{Status: -3}
	// ErrTooLarge: a size limit was exceeded.
	ErrTooLarge error = &HostError{Status: -4}
	// ErrUnavailable: a backing service is down or timed out.
	ErrUnavailable error = &HostError{Status: -5}
	// ErrInternal: a host failure; the host logs the details.
	ErrInternal error = &HostError{Status: -6}
	// ErrNothingStaged: staged_read was called with nothing staged, which
	// means an SDK bug rather than a guest one.
	ErrNothingStaged error = &HostError{Status: -7}
	// ErrConflict: a compare-and-swap found another value.
	ErrConflict error = &HostError{Status: -8}
)

// Error returns e.g. "shanhai: config_get: not found", followed by the
// host's message when there is one: "shanhai: mqtt_publish: denied: no
// mqtt_publish grant matches topic `a/b`".
func (e *HostError) Error() string {
	msg := "shanhai: "
	if e.Func != "" {
		msg += e.Func + ": "
	}
	msg += statusName(e.Status)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// Is reports whether target is the sentinel for e's status, so that
// errors.Is(err, ErrNotFound) holds for any host function's not_found.
func (e *HostError) Is(target error) bool {
	t, ok := target.(*HostError)
	return ok && t.Func == "" && t.Status == e.Status
}

// statusName returns the short names crates/abi's HostStatus::name uses.
func statusName(status int32) string {
	switch status {
	case hostcall.StatusNotFound:
		return "not found"
	case hostcall.StatusDenied:
		return "denied"
	case hostcall.StatusInvalidArgument:
		return "invalid argument"
	case hostcall.StatusTooLarge:
		return "too large"
	case hostcall.StatusUnavailable:
		return "unavailable"
	case hostcall.StatusInternal:
		return "internal error"
	case hostcall.StatusNothingStaged:
		return "nothing staged"
	case hostcall.StatusConflict:
		return "conflict"
	default:
		return "unknown status " + strconv.FormatInt(int64(status), 10)
	}
}

// hostResult turns the raw result of host import fn into (value, error):
// a non-negative result is a value, a negative one a *HostError. Every
// wrapper over a host import goes through here.
func hostResult(fn string, raw int32) (int, error) {
	if raw < 0 {
		return 0, &HostError{Func: fn, Status: raw}
	}
	return int(raw), nil
}

// maxHostMessage bounds the explanation read after a failed † call:
// staged_read cannot say how long the staged value is, so a longer one is
// cut.
const maxHostMessage = 1024

// clearingResult is hostResult for the host imports that clear the stage
// (the calls marked † in docs/abi.md): when one fails, the host may have
// staged a UTF-8 message that explains why, which becomes the
// *HostError's Message. Nothing staged (nothing_staged) means no message.
func clearingResult(fn string, raw int32) (int, error) {
	if raw >= 0 {
		return int(raw), nil
	}
	err := &HostError{Func: fn, Status: raw}
	buf := make([]byte, maxHostMessage)
	if n := hostcall.StagedRead(buf); n > 0 {
		err.Message = strings.ToValidUTF8(string(buf[:n]), "\uFFFD")
	}
	return 0, err
}

// readStaged copies a value of n bytes that the host has just staged (the
// ABI's staging pattern, shared by every import that returns
// variable-length data) into a new slice.
func readStaged(fn string, n int) ([]byte, error) {
	buf := make([]byte, n)
	if n == 0 {
		return buf, nil
	}
	got, err := hostResult("staged_read", hostcall.StagedRead(buf))
	if err != nil {
		return nil, err
	}
	// The value cannot shrink between staging and reading; a short copy
	// would mean a host bug, so report it rather than return a prefix.
	if got != n {
		return nil, &HostError{Func: fn, Status: hostcall.StatusInternal}
	}
	return buf, nil
}
