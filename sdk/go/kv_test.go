//go:build !wasm

package shanhai_test

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

func TestKVGetSetDelete(t *testing.T) {
	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{KV: true})
	kv := shanhai.Store("")

	if _, err := kv.Get("missing"); !errors.Is(err, shanhai.ErrNotFound) {
		t.Fatalf("Get(missing): %v", err)
	}
	for _, v := range [][]byte{[]byte("v1"), {}, {0, 0xff}} {
		if err := kv.Set("k", v, 0); err != nil {
			t.Fatal(err)
		}
		if got, err := kv.Get("k"); err != nil || string(got) != string(v) {
			t.Errorf("Get = %q, %v; want %q", got, err, v)
		}
	}
	if got, _ := shanhaitest.KVValue("", "k"); string(got) != "\x00\xff" {
		t.Errorf("the host holds %q", got)
	}
	if err := kv.Delete("k"); err != nil {
		t.Fatal(err)
	}
	err := kv.Delete("k")
	var he *shanhai.HostError
	if !errors.As(err, &he) || he.Func != "kv_delete" || he.Status != -1 {
		t.Errorf("second Delete: %v", err)
	}
}

func TestKVTTL(t *testing.T) {
	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{KV: true})
	kv := shanhai.Store("")
	if err := kv.Set("session", []byte("s"), time.Minute); err != nil {
		t.Fatal(err)
	}
	// Less than a millisecond rounds up: it must not become "never".
	if err := kv.Set("brief", []byte("b"), time.Microsecond); err != nil {
		t.Fatal(err)
	}
	if err := kv.Set("forever", []byte("f"), 0); err != nil {
		t.Fatal(err)
	}
	shanhaitest.AdvanceClock(59 * time.Second)
	if _, err := kv.Get("session"); err != nil {
		t.Errorf("before expiry: %v", err)
	}
	if _, err := kv.Get("brief"); !errors.Is(err, shanhai.ErrNotFound) {
		t.Errorf("a 1µs TTL: %v", err)
	}
	shanhaitest.AdvanceClock(time.Second)
	if _, err := kv.Get("session"); !errors.Is(err, shanhai.ErrNotFound) {
		t.Errorf("after expiry: %v", err)
	}
	if err := kv.Delete("session"); !errors.Is(err, shanhai.ErrNotFound) {
		t.Errorf("deleting an expired key: %v", err)
	}
	if keys := shanhaitest.KVKeys(""); !slices.Equal(keys, []string{"forever"}) {
		t.Errorf("keys %q", keys)
	}
	for _, ttl := range []time.Duration{-time.Second, -time.Nanosecond} {
		if err := kv.Set("k", nil, ttl); !errors.Is(err, shanhai.ErrInvalidArgument) {
			t.Errorf("ttl %v: %v", ttl, err)
		}
	}
}

func TestKVList(t *testing.T) {
	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{KV: true})
	kv := shanhai.Store("")
	var want []string
	for i := range 25 {
		k := fmt.Sprintf("user:%02d", i)
		want = append(want, k)
		if err := kv.Set(k, nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	_ = kv.Set("other", nil, 0)
	_ = kv.Set("user:gone", nil, time.Second)
	shanhaitest.AdvanceClock(time.Second)

	var got []string
	pages := 0
	for cursor := ""; ; {
		keys, next, err := kv.List("user:", cursor, 10)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, keys...)
		pages++
		if next == "" {
			break
		}
		cursor = next
	}
	if !slices.Equal(got, want) || pages != 3 {
		t.Errorf("%d pages: %q", pages, got)
	}

	// A page that ends exactly at the last key is the last page.
	keys, next, err := kv.List("user:", "", 25)
	if err != nil || len(keys) != 25 || next != "" {
		t.Errorf("exact page: %d keys, next %q, %v", len(keys), next, err)
	}
	keys, next, err = kv.List("", "", 0) // 0: 100
	if err != nil || len(keys) != 26 || next != "" {
		t.Errorf("default limit: %d keys, next %q, %v", len(keys), next, err)
	}
	if keys, next, err := kv.List("nothing", "", 0); err != nil || keys != nil || next != "" {
		t.Errorf("no match: %q %q %v", keys, next, err)
	}
	for _, limit := range []int{-1, 1001, math.MaxInt32 + 1} {
		if _, _, err := kv.List("", "", limit); !errors.Is(err, shanhai.ErrInvalidArgument) {
			t.Errorf("limit %d: %v", limit, err)
		}
	}
}

func TestKVCompareAndSwap(t *testing.T) {
	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{KV: true})
	kv := shanhai.Store("")

	if ok, err := kv.CompareAndSwap("k", nil, []byte("1"), 0); !ok || err != nil {
		t.Fatalf("create: %v, %v", ok, err)
	}
	if ok, err := kv.CompareAndSwap("k", nil, []byte("x"), 0); ok || err != nil {
		t.Errorf("create again: %v, %v", ok, err)
	}
	if ok, err := kv.CompareAndSwap("k", []byte("2"), []byte("x"), 0); ok || err != nil {
		t.Errorf("wrong expected: %v, %v", ok, err)
	}
	if ok, err := kv.CompareAndSwap("k", []byte("1"), []byte{}, time.Second); !ok || err != nil {
		t.Errorf("swap: %v, %v", ok, err)
	}
	// Empty but not nil: the value must be empty, not absent.
	if ok, err := kv.CompareAndSwap("k", []byte{}, []byte("3"), 0); !ok || err != nil {
		t.Errorf("swap from empty: %v, %v", ok, err)
	}
	if ok, err := kv.CompareAndSwap("absent", []byte{}, []byte("x"), 0); ok || err != nil {
		t.Errorf("empty expected on an absent key: %v, %v", ok, err)
	}
	if got, _ := kv.Get("k"); string(got) != "3" {
		t.Errorf("value %q", got)
	}
	if _, err := kv.CompareAndSwap("", nil, nil, 0); !errors.Is(err, shanhai.ErrInvalidArgument) {
		t.Errorf("empty key: %v", err)
	}
}

func TestKVIncrement(t *testing.T) {
	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{KV: true})
	kv := shanhai.Store("")
	for _, c := range []struct {
		delta, want int64
	}{{1, 1}, {41, 42}, {-50, -8}} {
		if got, err := kv.Increment("n", c.delta); err != nil || got != c.want {
			t.Errorf("Increment(%d) = %d, %v; want %d", c.delta, got, err, c.want)
		}
	}
	if got, _ := kv.Get("n"); string(got) != "-8" {
		t.Errorf("stored as %q", got)
	}

	shanhaitest.KVPut("", "big", []byte("9223372036854775807"), 0)
	if _, err := kv.Increment("big", 1); !errors.Is(err, shanhai.ErrInvalidArgument) || !strings.Contains(err.Error(), "overflow") {
		t.Errorf("overflow: %v", err)
	}
	shanhaitest.KVPut("", "text", []byte("abc"), 0)
	_, err := kv.Increment("text", 1)
	if want := "shanhai: kv_incr: invalid argument: the value of `text` is not a decimal i64"; err == nil || err.Error() != want {
		t.Errorf("not a number: %v", err)
	}
}

func TestKVGrants(t *testing.T) {
	shanhaitest.Reset()
	_, err := shanhai.Store("").Get("k")
	if !errors.Is(err, shanhai.ErrDenied) {
		t.Fatalf("no grant: %v", err)
	}
	if want := "shanhai: kv_get: denied: the module's own KV namespace is not granted (grants.kv = true)"; err.Error() != want {
		t.Errorf("message %q", err)
	}

	shanhaitest.SetGrants(shanhaitest.Grants{KVStores: []string{"shared"}})
	if err := shanhai.Store("shared").Set("k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"own store": func() error { return shanhai.Store("").Set("k", nil, 0) },
		"get":       func() error { _, err := shanhai.Store("other").Get("k"); return err },
		"set":       func() error { return shanhai.Store("other").Set("k", nil, 0) },
		"delete":    func() error { return shanhai.Store("other").Delete("k") },
		"list":      func() error { _, _, err := shanhai.Store("other").List("", "", 0); return err },
		"cas":       func() error { _, err := shanhai.Store("other").CompareAndSwap("k", nil, nil, 0); return err },
		"incr":      func() error { _, err := shanhai.Store("other").Increment("k", 1); return err },
	} {
		if err := call(); !errors.Is(err, shanhai.ErrDenied) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Stores are separate namespaces.
	shanhaitest.SetGrants(shanhaitest.Grants{KV: true, KVStores: []string{"shared"}})
	if _, err := shanhai.Store("").Get("k"); !errors.Is(err, shanhai.ErrNotFound) {
		t.Errorf("the module's own store sees the shared one: %v", err)
	}
	if shanhai.Store("shared").Name() != "shared" {
		t.Error("Name")
	}
}

func TestKVLimits(t *testing.T) {
	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{KV: true})
	shanhaitest.SetMaxKVValue(4)
	kv := shanhai.Store("")
	if err := kv.Set("k", []byte("12345"), 0); !errors.Is(err, shanhai.ErrTooLarge) {
		t.Errorf("large value: %v", err)
	}
	if err := kv.Set(strings.Repeat("k", 513), nil, 0); !errors.Is(err, shanhai.ErrInvalidArgument) {
		t.Errorf("long key: %v", err)
	}
	if err := kv.Set(strings.Repeat("k", 512), []byte("1234"), 0); err != nil {
		t.Errorf("longest key, largest value: %v", err)
	}
}

// The state functions work inside events too, which is where modules call
// them.
func TestKVInAnEvent(t *testing.T) {
	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{KV: true})
	for want := 1; want <= 3; want++ {
		out, err := shanhaitest.Call("count", nil)
		if err != nil || string(out) != fmt.Sprint(want) {
			t.Errorf("call %d: %q, %v", want, out, err)
		}
	}
}

func init() {
	shanhai.Export("count", func([]byte) ([]byte, error) {
		n, err := shanhai.Store("").Increment("count", 1)
		return fmt.Append(nil, n), err
	})
}
