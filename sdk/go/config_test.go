//go:build !wasm

package shanhai_test

import (
	"errors"
	"testing"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

func TestConfig(t *testing.T) {
	shanhaitest.Reset()
	shanhaitest.SetConfig("greeting", "Hi there")
	shanhaitest.SetConfig("empty", "")
	for key, want := range map[string]string{"greeting": "Hi there", "empty": ""} {
		if got, err := shanhai.Config(key); err != nil || got != want {
			t.Errorf("Config(%q) = %q, %v; want %q", key, got, err, want)
		}
	}

	_, err := shanhai.Config("missing")
	if !errors.Is(err, shanhai.ErrNotFound) {
		t.Fatalf("Config(missing): %v, want ErrNotFound", err)
	}
	if errors.Is(err, shanhai.ErrDenied) {
		t.Error("a not_found error matches ErrDenied")
	}
	var he *shanhai.HostError
	if !errors.As(err, &he) || he.Func != "config_get" || he.Status != -1 {
		t.Errorf("errors.As: %+v", he)
	}
	if err.Error() != "shanhai: config_get: not found" {
		t.Errorf("message %q", err)
	}

	shanhaitest.UnsetConfig("greeting")
	if _, err := shanhai.Config("greeting"); !errors.Is(err, shanhai.ErrNotFound) {
		t.Errorf("after UnsetConfig: %v", err)
	}
}

func TestHostErrorSentinels(t *testing.T) {
	sentinels := []error{
		shanhai.ErrNotFound, shanhai.ErrDenied, shanhai.ErrInvalidArgument, shanhai.ErrTooLarge,
		shanhai.ErrUnavailable, shanhai.ErrInternal, shanhai.ErrNothingStaged,
	}
	names := []string{"not found", "denied", "invalid argument", "too large", "unavailable", "internal error", "nothing staged"}
	for i := range sentinels {
		status := int32(-1 - i)
		err := error(&shanhai.HostError{Func: "kv_get", Status: status})
		for j, other := range sentinels {
			if got := errors.Is(err, other); got != (i == j) {
				t.Errorf("status %d matches sentinel %d: %v", status, j, got)
			}
		}
		if want := "shanhai: kv_get: " + names[i]; err.Error() != want {
			t.Errorf("%q, want %q", err, want)
		}
	}
	if got := (&shanhai.HostError{Func: "x", Status: -99}).Error(); got != "shanhai: x: unknown status -99" {
		t.Errorf("unknown status: %q", got)
	}
}
