package shanhai

import (
	"math"
	"time"

	"github.com/shanhai-edge/shanhai/sdk/go/internal/hostcall"
	"github.com/shanhai-edge/shanhai/sdk/go/internal/wire"
)

// KV is a key-value store of the host: the module's own namespace or a
// shared store, as named by [Store]. The value is just the name, so make
// one wherever it is needed. Keys are 1 to 512 bytes, values up to the
// gateway's kv.max_value_bytes (1 MiB by default); a module never sees
// another module's keys in its own namespace.
//
// Every method fails with [ErrDenied] when the store is not granted, and
// with [ErrInvalidArgument] for a key out of range; the host's explanation
// is part of the error's text.
type KV struct {
	name string
}

// Store returns the KV store called name. The empty name is the module's
// own namespace, which needs the grant kv = true; any other name is a
// store shared between modules, which each of them needs in its
// kv_stores grant:
//
//	[modules.counter.grants]
//	kv = true
//	kv_stores = ["sessions"]
//
// For example:
//
//	hits, err := shanhai.Store("").Increment("hits", 1)
//	token, err := shanhai.Store("sessions").Get(sessionID)
func Store(name string) KV { return KV{name: name} }

// Name returns the store's name, "" for the module's own.
func (s KV) Name() string { return s.name }

// Get returns the value of key; [ErrNotFound] when it is absent or has
// expired.
//
//	v, err := shanhai.Store("").Get("greeting")
//	if errors.Is(err, shanhai.ErrNotFound) {
//		v = []byte("hello")
//	}
func (s KV) Get(key string) ([]byte, error) {
	n, err := clearingResult("kv_get", hostcall.KVGet(s.name, key))
	if err != nil {
		return nil, err
	}
	return readStaged("kv_get", n)
}

// Set sets key to value. A positive ttl makes the entry expire after it
// (rounded up to the millisecond); 0 keeps it until it is deleted. A
// negative ttl is [ErrInvalidArgument], a value beyond the gateway's
// kv.max_value_bytes [ErrTooLarge].
//
//	err := shanhai.Store("sessions").Set(id, token, 30*time.Minute)
func (s KV) Set(key string, value []byte, ttl time.Duration) error {
	_, err := clearingResult("kv_set", hostcall.KVSet(s.name, key, value, ttlMillis(ttl)))
	return err
}

// Delete removes key; [ErrNotFound] when it did not exist.
func (s KV) Delete(key string) error {
	_, err := clearingResult("kv_delete", hostcall.KVDelete(s.name, key))
	return err
}

// List returns up to limit keys that start with prefix, in the store's
// (byte-wise) order, resuming after cursor: pass "" for the first page and
// then each page's next, which is "" on the last page. limit is 1 to
// 1000; 0 means 100.
//
//	for cursor := ""; ; {
//		keys, next, err := shanhai.Store("").List("user:", cursor, 0)
//		if err != nil {
//			return err
//		}
//		for _, k := range keys {
//			...
//		}
//		if next == "" {
//			break
//		}
//		cursor = next
//	}
func (s KV) List(prefix, cursor string, limit int) (keys []string, next string, err error) {
	if limit < 0 || limit > math.MaxInt32 {
		return nil, "", &HostError{Func: "kv_list", Status: hostcall.StatusInvalidArgument, Message: "the limit must be 1 to 1000 (0: 100)"}
	}
	n, err := clearingResult("kv_list", hostcall.KVList(s.name, prefix, cursor, int32(limit)))
	if err != nil {
		return nil, "", err
	}
	b, err := readStaged("kv_list", n)
	if err != nil {
		return nil, "", err
	}
	page, err := wire.DecodeKeyPage(b)
	if err != nil {
		return nil, "", &HostError{Func: "kv_list", Status: hostcall.StatusInternal, Message: "malformed key page: " + err.Error()}
	}
	return page.Keys, page.Next, nil
}

// CompareAndSwap sets key to value, with ttl as in [KV.Set], only if its
// current value equals expected; a nil expected means the key must be
// absent (an empty, non-nil one means the value must be empty). It
// reports whether it swapped: false, with a nil error, when the value was
// another one. The check and the write are one atomic step on the host,
// so concurrent instances can update a key without losing writes:
//
//	for {
//		old, err := shanhai.Store("").Get("config")
//		if err != nil && !errors.Is(err, shanhai.ErrNotFound) {
//			return err
//		}
//		swapped, err := shanhai.Store("").CompareAndSwap("config", old, update(old), 0)
//		if err != nil || swapped {
//			return err
//		}
//	}
func (s KV) CompareAndSwap(key string, expected, value []byte, ttl time.Duration) (bool, error) {
	raw := hostcall.KVCAS(s.name, key, expected, expected == nil, value, ttlMillis(ttl))
	if raw == hostcall.StatusConflict {
		return false, nil
	}
	if _, err := clearingResult("kv_cas", raw); err != nil {
		return false, err
	}
	return true, nil
}

// Increment adds delta (which may be negative) to the integer stored at
// key as decimal text, an absent key counting as 0, and returns the new
// value. It is atomic on the host. A value that is not a decimal int64,
// or a sum that overflows, is [ErrInvalidArgument].
//
//	n, err := shanhai.Store("").Increment("visits:"+page, 1)
func (s KV) Increment(key string, delta int64) (int64, error) {
	var result int64
	if _, err := clearingResult("kv_incr", hostcall.KVIncr(s.name, key, delta, &result)); err != nil {
		return 0, err
	}
	return result, nil
}

// ttlMillis converts a TTL to the ABI's milliseconds, rounding up so that a
// short positive TTL does not become 0, which means no expiry. Negative
// TTLs stay negative, for the host to refuse.
func ttlMillis(ttl time.Duration) int64 {
	if ttl < 0 {
		return min(ttl.Milliseconds(), -1)
	}
	ms := ttl.Milliseconds()
	if ttl%time.Millisecond != 0 {
		ms++
	}
	return ms
}
