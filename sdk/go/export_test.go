//go:build !wasm

package shanhai_test

import (
	"bytes"
	"errors"
	"testing"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

func init() {
	shanhai.Export("upper", func(in []byte) ([]byte, error) { return bytes.ToUpper(in), nil })
	shanhai.Export("echo", func(in []byte) ([]byte, error) { return in, nil })
	shanhai.Export("fail", func(in []byte) ([]byte, error) { return nil, errors.New("no good: " + string(in)) })
	shanhai.Export("panic", func(in []byte) ([]byte, error) { panic("exploded") })
}

func TestExportCall(t *testing.T) {
	for _, tc := range []struct {
		function, input string
		want            string
	}{
		{"upper", "shanhai", "SHANHAI"},
		{"echo", "as is \x00\xff", "as is \x00\xff"},
		{"echo", "", ""},
	} {
		out, err := shanhaitest.Call(tc.function, []byte(tc.input))
		if err != nil || string(out) != tc.want {
			t.Errorf("%s(%q) = %q, %v; want %q", tc.function, tc.input, out, err, tc.want)
		}
	}
}

func TestExportFailures(t *testing.T) {
	for _, tc := range []struct {
		function string
		status   int32
		message  string
	}{
		{"fail", shanhaitest.StatusError, "no good: in"},
		{"panic", shanhaitest.StatusError, "panic: exploded"},
		{"missing", shanhaitest.StatusNotFound, `no byte function named "missing"`},
	} {
		_, err := shanhaitest.Call(tc.function, []byte("in"))
		var ee *shanhaitest.EventError
		if !errors.As(err, &ee) || ee.Status != tc.status || ee.Message != tc.message {
			t.Errorf("%s: got %v, want status %d %q", tc.function, err, tc.status, tc.message)
		}
	}
}

func TestBadCallEnvelope(t *testing.T) {
	status, out := shanhaitest.Dispatch(shanhaitest.KindCall, []byte{1, 0})
	if status != shanhaitest.StatusError || string(out) != "bad call envelope: envelope truncated in function name" {
		t.Errorf("status %d, %q", status, out)
	}
}
