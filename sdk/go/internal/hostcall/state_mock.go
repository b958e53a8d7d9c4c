//go:build !wasm

package hostcall

import (
	"bytes"
	"maps"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shanhai-edge/shanhai/sdk/go/internal/wire"
)

// The mock host's state capabilities: KV stores with TTLs, SQL through a
// responder the test installs (the mock cannot run SQLite), outbound HTTP
// through a responder, and GPIO pins. Each checks the module's grants as
// the gateway does, with everything denied until a test grants it, and
// stages an explanation when it fails. Everything is guarded by mu;
// responders run without it, so they may use the mock themselves.

// Grants are the capabilities of [modules.NAME.grants] that the state
// imports check.
type Grants struct {
	KV              bool     // kv = true: the module's own KV store
	KVStores        []string // kv_stores: shared KV stores
	SQLite          bool     // sqlite = true: the module's own database
	SQLiteDatabases []string // sqlite_databases: shared databases
	HTTP            []string // http: "host", "host:port" or "*.domain"
	GPIOIn          []int    // gpio_in: pins it may read
	GPIOOut         []int    // gpio_out: pins it may drive (and read)
}

// SQLResponder answers sql_exec in place of SQLite: the database ("" is
// the module's own), the statement and its decoded parameters in; a
// result, or a negative status and the message to stage, out.
type SQLResponder func(db, query string, params []any) (result wire.SQLResult, status int32, message string)

// FetchResponder answers http_fetch in place of the network: a decoded
// request (its URI an absolute URL the grants allow) in; a response, or a
// negative status and the message to stage, out.
type FetchResponder func(req wire.HTTPRequest) (resp wire.HTTPResponse, status int32, message string)

// GPIOWriteRecord is one gpio_write the host accepted.
type GPIOWriteRecord struct {
	Pin  int
	High bool
}

// Limits of the ABI and the gateway's defaults (docs/abi.md, the kv_*
// imports).
const (
	maxKeyLen         = 512
	DefaultMaxKVValue = 1 << 20
	defaultListLimit  = 100
	maxListLimit      = 1000
)

type kvEntry struct {
	value   []byte
	expires time.Time // zero: never
}

var (
	grants       Grants
	kvStores     = map[string]map[string]kvEntry{}
	maxKVValue   = DefaultMaxKVValue
	clockOffset  time.Duration
	sqlResponder SQLResponder
	fetcher      FetchResponder
	gpioPins     = map[int]bool{}
	gpioWrites   []GPIOWriteRecord
)

func resetState() {
	grants = Grants{}
	kvStores, maxKVValue, clockOffset = map[string]map[string]kvEntry{}, DefaultMaxKVValue, 0
	sqlResponder, fetcher = nil, nil
	gpioPins, gpioWrites = map[int]bool{}, nil
}

// SetGrants replaces the module's state grants.
func SetGrants(g Grants) {
	mu.Lock()
	defer mu.Unlock()
	grants = Grants{
		KV: g.KV, KVStores: slices.Clone(g.KVStores),
		SQLite: g.SQLite, SQLiteDatabases: slices.Clone(g.SQLiteDatabases),
		HTTP: slices.Clone(g.HTTP), GPIOIn: slices.Clone(g.GPIOIn), GPIOOut: slices.Clone(g.GPIOOut),
	}
}

// SetMaxKVValue sets the largest value kv_set and kv_cas accept, the
// gateway's kv.max_value_bytes.
func SetMaxKVValue(n int) {
	mu.Lock()
	defer mu.Unlock()
	maxKVValue = n
}

// AdvanceClock moves the mock host's clock, by which KV entries expire,
// forward by d.
func AdvanceClock(d time.Duration) {
	mu.Lock()
	defer mu.Unlock()
	clockOffset += d
}

func now() time.Time { return time.Now().Add(clockOffset) }

// SetSQLResponder installs the responder that answers sql_exec; nil
// removes it, and sql_exec then answers unavailable.
func SetSQLResponder(f SQLResponder) {
	mu.Lock()
	defer mu.Unlock()
	sqlResponder = f
}

// SetFetchResponder installs the responder that answers http_fetch; nil
// removes it, and http_fetch then answers unavailable.
func SetFetchResponder(f FetchResponder) {
	mu.Lock()
	defer mu.Unlock()
	fetcher = f
}

// SetGPIO makes pin exist, as a pin of the board's sysfs GPIO interface,
// at level high; a pin that does not exist answers not_found.
func SetGPIO(pin int, high bool) {
	mu.Lock()
	defer mu.Unlock()
	gpioPins[pin] = high
}

// GPIOLevel returns the level of pin; ok is false if it does not exist.
func GPIOLevel(pin int) (high, ok bool) {
	mu.Lock()
	defer mu.Unlock()
	high, ok = gpioPins[pin]
	return high, ok
}

// GPIOWrites returns a copy of the gpio_write calls accepted so far.
func GPIOWrites() []GPIOWriteRecord {
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(gpioWrites)
}

// KVPut sets key in store directly, as if the module (or another one
// sharing the store) had set it; ttl 0 is no expiry.
func KVPut(store, key string, value []byte, ttl time.Duration) {
	mu.Lock()
	defer mu.Unlock()
	e := kvEntry{value: slices.Clone(value)}
	if ttl > 0 {
		e.expires = now().Add(ttl)
	}
	kvStore(store)[key] = e
}

// KVLookup returns the value of key in store, if it is set and not
// expired.
func KVLookup(store, key string) ([]byte, bool) {
	mu.Lock()
	defer mu.Unlock()
	e, ok := kvLive(store, key)
	return slices.Clone(e.value), ok
}

// KVKeys returns the live keys of store, sorted.
func KVKeys(store string) []string {
	mu.Lock()
	defer mu.Unlock()
	return liveKeys(store)
}

func kvStore(store string) map[string]kvEntry {
	s, ok := kvStores[store]
	if !ok {
		s = map[string]kvEntry{}
		kvStores[store] = s
	}
	return s
}

// kvLive returns key's entry unless it is absent or expired; an expired
// one is dropped.
func kvLive(store, key string) (kvEntry, bool) {
	s := kvStores[store]
	e, ok := s[key]
	if ok && !e.expires.IsZero() && !now().Before(e.expires) {
		delete(s, key)
		return kvEntry{}, false
	}
	return e, ok
}

func liveKeys(store string) []string {
	var keys []string
	for _, k := range slices.Sorted(maps.Keys(kvStores[store])) {
		if _, ok := kvLive(store, k); ok {
			keys = append(keys, k)
		}
	}
	return keys
}

// beginStateCall clears the stage, as every † import does first. mu is
// held.
func beginStateCall() { staged, hasStaged = nil, false }

// checkKVGrant checks the grant for store. mu is held.
func checkKVGrant(store string) int32 {
	if store == "" && !grants.KV {
		return stageFailure(StatusDenied, "the module's own KV namespace is not granted (grants.kv = true)")
	}
	if store != "" && !slices.Contains(grants.KVStores, store) {
		return stageFailure(StatusDenied, "the KV store `"+store+"` is not granted (grants.kv_stores)")
	}
	return 0
}

// checkKV checks the grant for store and the key. mu is held.
func checkKV(store, key string) int32 {
	if s := checkKVGrant(store); s != 0 {
		return s
	}
	if len(key) < 1 || len(key) > maxKeyLen {
		return stageFailure(StatusInvalidArgument, "a key must be 1 to 512 bytes, not "+strconv.Itoa(len(key)))
	}
	return 0
}

// checkValue checks a value and a TTL to store. mu is held.
func checkValue(value []byte, ttlMs int64) int32 {
	if ttlMs < 0 {
		return stageFailure(StatusInvalidArgument, "a negative TTL")
	}
	if len(value) > maxKVValue {
		return stageFailure(StatusTooLarge, "the value is larger than kv.max_value_bytes ("+strconv.Itoa(maxKVValue)+")")
	}
	return 0
}

func newEntry(value []byte, ttlMs int64) kvEntry {
	e := kvEntry{value: slices.Clone(value)}
	if ttlMs > 0 {
		e.expires = now().Add(time.Duration(ttlMs) * time.Millisecond)
	}
	return e
}

// KVGet stages the value of key in store and returns its length.
func KVGet(store, key string) int32 {
	mu.Lock()
	defer mu.Unlock()
	beginStateCall()
	if s := checkKV(store, key); s != 0 {
		return s
	}
	e, ok := kvLive(store, key)
	if !ok {
		return StatusNotFound
	}
	staged, hasStaged = slices.Clone(e.value), true
	return int32(len(e.value))
}

// KVSet sets key in store to value, expiring after ttlMs (0: never).
func KVSet(store, key string, value []byte, ttlMs int64) int32 {
	mu.Lock()
	defer mu.Unlock()
	beginStateCall()
	if s := checkKV(store, key); s != 0 {
		return s
	}
	if s := checkValue(value, ttlMs); s != 0 {
		return s
	}
	kvStore(store)[key] = newEntry(value, ttlMs)
	return 0
}

// KVDelete deletes key from store; not_found when it did not exist.
func KVDelete(store, key string) int32 {
	mu.Lock()
	defer mu.Unlock()
	beginStateCall()
	if s := checkKV(store, key); s != 0 {
		return s
	}
	if _, ok := kvLive(store, key); !ok {
		return StatusNotFound
	}
	delete(kvStores[store], key)
	return 0
}

// KVList stages a KeyPage of at most limit (0: 100) keys of store that
// start with prefix, after cursor, and returns its length. The cursor of
// a page is its last key.
func KVList(store, prefix, cursor string, limit int32) int32 {
	mu.Lock()
	defer mu.Unlock()
	beginStateCall()
	if s := checkKVGrant(store); s != 0 {
		return s
	}
	if limit == 0 {
		limit = defaultListLimit
	}
	if limit < 1 || limit > maxListLimit {
		return stageFailure(StatusInvalidArgument, "limit must be 1 to 1000 (0: 100)")
	}
	var page wire.KeyPage
	for _, k := range liveKeys(store) {
		if !strings.HasPrefix(k, prefix) || (cursor != "" && k <= cursor) {
			continue
		}
		if len(page.Keys) == int(limit) {
			page.Next = page.Keys[len(page.Keys)-1]
			break
		}
		page.Keys = append(page.Keys, k)
	}
	staged, hasStaged = page.Append(nil), true
	return int32(len(staged))
}

// KVCAS sets key in store to value if its current value is expected, or,
// with absent, if it has none; 0 or StatusConflict.
func KVCAS(store, key string, expected []byte, absent bool, value []byte, ttlMs int64) int32 {
	mu.Lock()
	defer mu.Unlock()
	beginStateCall()
	if s := checkKV(store, key); s != 0 {
		return s
	}
	if s := checkValue(value, ttlMs); s != 0 {
		return s
	}
	e, ok := kvLive(store, key)
	if absent && ok || !absent && (!ok || !bytes.Equal(e.value, expected)) {
		return StatusConflict
	}
	kvStore(store)[key] = newEntry(value, ttlMs)
	return 0
}

// KVIncr adds delta to the integer at key in store (absent: 0) and stores
// the new value in *result. The entry keeps its expiry.
func KVIncr(store, key string, delta int64, result *int64) int32 {
	mu.Lock()
	defer mu.Unlock()
	beginStateCall()
	if s := checkKV(store, key); s != 0 {
		return s
	}
	var n int64
	e, ok := kvLive(store, key)
	if ok {
		var err error
		if n, err = strconv.ParseInt(string(e.value), 10, 64); err != nil {
			return stageFailure(StatusInvalidArgument, "the value of `"+key+"` is not a decimal i64")
		}
	}
	if delta > 0 && n > math.MaxInt64-delta || delta < 0 && n < math.MinInt64-delta {
		return stageFailure(StatusInvalidArgument, "the sum overflows i64")
	}
	n += delta
	e.value = strconv.AppendInt(nil, n, 10)
	kvStore(store)[key] = e
	*result = n
	return 0
}

// SQLExec runs one statement through the SQL responder, stages its
// SqlResult and returns the length.
func SQLExec(db, query string, params []byte) int32 {
	mu.Lock()
	beginStateCall()
	if db == "" && !grants.SQLite {
		defer mu.Unlock()
		return stageFailure(StatusDenied, "the module's own SQLite database is not granted (grants.sqlite = true)")
	}
	if db != "" && !slices.Contains(grants.SQLiteDatabases, db) {
		defer mu.Unlock()
		return stageFailure(StatusDenied, "the SQLite database `"+db+"` is not granted (grants.sqlite_databases)")
	}
	decoded, err := wire.DecodeSQLParams(params)
	if err != nil {
		defer mu.Unlock()
		return stageFailure(StatusInvalidArgument, "bad SQL parameters: "+err.Error())
	}
	f := sqlResponder
	mu.Unlock()
	if f == nil {
		return failLocked(StatusUnavailable, "the mock host has no SQL responder")
	}
	result, status, message := f(db, query, decoded)
	if status < 0 {
		return failLocked(status, message)
	}
	enc, err := result.Append(nil)
	if err != nil {
		return failLocked(StatusInternal, "the SQL responder's result: "+err.Error())
	}
	return stageLocked(enc)
}

// HTTPFetch sends an HttpRequest envelope to the fetch responder, stages
// its HttpResponse and returns the length.
func HTTPFetch(request []byte) int32 {
	mu.Lock()
	beginStateCall()
	req, err := wire.DecodeHTTPRequest(request)
	if err != nil {
		defer mu.Unlock()
		return stageFailure(StatusInvalidArgument, "bad request envelope: "+err.Error())
	}
	u, err := url.Parse(req.URI)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		defer mu.Unlock()
		return stageFailure(StatusInvalidArgument, "`"+req.URI+"` is not an absolute http:// or https:// URL")
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if !allowsHTTP(host, port) {
		defer mu.Unlock()
		return stageFailure(StatusDenied, "outbound HTTP to "+net.JoinHostPort(host, port)+" is not granted (grants.http)")
	}
	f := fetcher
	mu.Unlock()
	if f == nil {
		return failLocked(StatusUnavailable, "the mock host has no HTTP responder")
	}
	resp, status, message := f(req)
	if status < 0 {
		return failLocked(status, message)
	}
	if resp.Status < 100 || resp.Status > 999 {
		return failLocked(StatusInternal, "the HTTP responder's status "+strconv.Itoa(int(resp.Status))+" is out of range")
	}
	return stageLocked(resp.Append(nil))
}

// allowsHTTP matches host and port against the http grant as the gateway
// does: "host" (ports 80 and 443 only), "host:port", "host:*" (any port),
// or any of them with "*.domain" (any subdomain) for the host; names
// compare case-insensitively, IP addresses as addresses. mu is held.
func allowsHTTP(host, port string) bool {
	host = strings.ToLower(host)
	for _, entry := range grants.HTTP {
		pattern, entryPort := strings.ToLower(entry), ""
		if h, p, err := net.SplitHostPort(pattern); err == nil {
			pattern, entryPort = h, p
		} else {
			pattern = strings.TrimSuffix(strings.TrimPrefix(pattern, "["), "]")
		}
		switch entryPort {
		case "*":
		case "":
			if port != "80" && port != "443" {
				continue
			}
		default:
			if entryPort != port {
				continue
			}
		}
		if domain, ok := strings.CutPrefix(pattern, "*."); ok {
			if sub, ok := strings.CutSuffix(host, domain); ok && len(sub) > 1 && strings.HasSuffix(sub, ".") {
				return true
			}
		} else if granted, wanted := net.ParseIP(pattern), net.ParseIP(host); granted != nil && wanted != nil {
			if granted.Equal(wanted) {
				return true
			}
		} else if host == pattern {
			return true
		}
	}
	return false
}

// failLocked is stageFailure for callers that do not hold mu.
func failLocked(status int32, message string) int32 {
	mu.Lock()
	defer mu.Unlock()
	return stageFailure(status, message)
}

// stageLocked stages b for callers that do not hold mu and returns its
// length.
func stageLocked(b []byte) int32 {
	mu.Lock()
	defer mu.Unlock()
	staged, hasStaged = b, true
	return int32(len(b))
}

// GPIORead returns the level of pin, 0 or 1.
func GPIORead(pin int32) int32 {
	mu.Lock()
	defer mu.Unlock()
	beginStateCall()
	p := int(pin)
	if !slices.Contains(grants.GPIOIn, p) && !slices.Contains(grants.GPIOOut, p) {
		return stageFailure(StatusDenied, "GPIO "+strconv.Itoa(p)+" is not granted (grants.gpio_in or gpio_out)")
	}
	high, ok := gpioPins[p]
	if !ok {
		return stageFailure(StatusNotFound, "the GPIO interface has no pin "+strconv.Itoa(p))
	}
	if high {
		return 1
	}
	return 0
}

// GPIOWrite drives output pin low (0) or high (any other value).
func GPIOWrite(pin int32, value int32) int32 {
	mu.Lock()
	defer mu.Unlock()
	beginStateCall()
	p := int(pin)
	if !slices.Contains(grants.GPIOOut, p) {
		return stageFailure(StatusDenied, "GPIO "+strconv.Itoa(p)+" is not granted as an output (grants.gpio_out)")
	}
	if _, ok := gpioPins[p]; !ok {
		return stageFailure(StatusNotFound, "the GPIO interface has no pin "+strconv.Itoa(p))
	}
	gpioPins[p] = value != 0
	gpioWrites = append(gpioWrites, GPIOWriteRecord{Pin: p, High: value != 0})
	return 0
}
