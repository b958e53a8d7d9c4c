//go:build !wasm

// The tests run natively, against shanhaitest's mock host.

package main

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

func start(t *testing.T) {
	t.Helper()
	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{KV: true})
	store = shanhai.Store("")
	noise = rand.Reader
}

func do(t *testing.T, method, target, body string) (int, map[string]any) {
	t.Helper()
	resp, err := shanhaitest.Do(httptest.NewRequest(method, target, strings.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	var reply map[string]any
	if err := json.Unmarshal(b, &reply); err != nil {
		t.Fatalf("%s %s: %d %s", method, target, resp.StatusCode, b)
	}
	return resp.StatusCode, reply
}

func releaseOf(t *testing.T, key string, epsilon float64) (int, map[string]any) {
	t.Helper()
	return do(t, "POST", "/dp-noise", `{"key":"`+key+`","values":[20,21,22],"epsilon":`+strconv.FormatFloat(epsilon, 'g', -1, 64)+`,"sensitivity":2}`)
}

func spent(t *testing.T, key string) string {
	t.Helper()
	v, _ := shanhaitest.KVValue("", "spent:"+key)
	return string(v)
}

func TestRelease(t *testing.T) {
	start(t)
	status, reply := releaseOf(t, "sensor-7", 0.5)
	if status != 200 {
		t.Fatalf("%d %v", status, reply)
	}
	values, _ := reply["values"].([]any)
	if len(values) != 3 || reply["scale"] != 4.0 || reply["spent"] != 0.5 || reply["remaining"] != 9.5 || reply["budget"] != 10.0 {
		t.Errorf("%v", reply)
	}
	if values[0] == 20.0 && values[1] == 21.0 && values[2] == 22.0 {
		t.Errorf("no noise added: %v", values)
	}
	if got := spent(t, "sensor-7"); got != "0.5" {
		t.Errorf("KV spent:sensor-7 = %q", got)
	}
	// Sensitivity defaults to 1.
	if status, reply := do(t, "POST", "/dp-noise", `{"key":"k","values":[1],"epsilon":0.25}`); status != 200 || reply["scale"] != 4.0 {
		t.Errorf("%d %v", status, reply)
	}
	if status, reply := do(t, "GET", "/dp-noise/budget/sensor-7", ""); status != 200 || reply["spent"] != 0.5 || reply["remaining"] != 9.5 {
		t.Errorf("budget: %d %v", status, reply)
	}
	if status, reply := do(t, "GET", "/dp-noise/budget/unused", ""); status != 200 || reply["spent"] != 0.0 || reply["remaining"] != 10.0 {
		t.Errorf("unused budget: %d %v", status, reply)
	}
}

func TestBudgetExhausted(t *testing.T) {
	start(t)
	shanhaitest.SetConfig("budget", "1")
	// Ten releases of 0.1 add up to 0.9999999999999999 in floating point:
	// all of them fit.
	for i := range 10 {
		if status, reply := releaseOf(t, "k", 0.1); status != 200 {
			t.Fatalf("release %d: %d %v", i, status, reply)
		}
	}
	status, reply := releaseOf(t, "k", 0.1)
	if status != 429 || reply["error"] != "privacy budget exhausted" || reply["requested"] != 0.1 || reply["remaining"].(float64) > 1e-9 {
		t.Errorf("11th release: %d %v", status, reply)
	}
	if _, ok := reply["values"]; ok {
		t.Error("values released over budget")
	}
	// Another key has its own budget.
	if status, _ := releaseOf(t, "other", 1); status != 200 {
		t.Errorf("other key: %d", status)
	}
	// A release bigger than the rest is refused whole.
	shanhaitest.SetConfig("budget", "2")
	status, reply = releaseOf(t, "other", 1.5)
	if status != 429 || reply["spent"] != 1.0 || reply["remaining"] != 1.0 {
		t.Errorf("%d %v", status, reply)
	}
	if status, _ := releaseOf(t, "other", 1); status != 200 || spent(t, "other") != "2" {
		t.Errorf("exactly the rest: %d, spent %s", status, spent(t, "other"))
	}
}

// racingStore is another instance's charge landing between this
// instance's read and its swap, for the first races swaps.
type racingStore struct {
	shanhai.KV
	races   int
	epsilon float64
	key     string
}

func (s *racingStore) CompareAndSwap(key string, expected, value []byte, ttl time.Duration) (bool, error) {
	if s.races > 0 {
		s.races--
		cur, _ := shanhaitest.KVValue("", key)
		n, _ := strconv.ParseFloat(string(cur), 64)
		shanhaitest.KVPut("", key, []byte(strconv.FormatFloat(n+s.epsilon, 'g', -1, 64)), 0)
	}
	return s.KV.CompareAndSwap(key, expected, value, ttl)
}

func TestConcurrentCharges(t *testing.T) {
	start(t)
	racer := &racingStore{KV: shanhai.Store(""), races: 3, epsilon: 1}
	store = racer
	// Three other charges of 1 win the races; ours retries each time and
	// is counted on top of them.
	status, reply := releaseOf(t, "k", 0.5)
	if status != 200 || reply["spent"] != 3.5 || spent(t, "k") != "3.5" {
		t.Errorf("%d %v, stored %s", status, reply, spent(t, "k"))
	}
	// The others spend the rest while ours waits to swap: ours must see it
	// and refuse, not overspend.
	shanhaitest.KVPut("", "spent:k", []byte("8"), 0)
	racer.races, racer.epsilon = 1, 2
	status, reply = releaseOf(t, "k", 0.5)
	if status != 429 || reply["spent"] != 10.0 || spent(t, "k") != "10" {
		t.Errorf("%d %v, stored %s", status, reply, spent(t, "k"))
	}
	// Contention that never ends (another tiny charge lands before every
	// swap) gives up.
	racer.races, racer.epsilon = 1000, 1e-6
	shanhaitest.KVPut("", "spent:k", []byte("0"), 0)
	status, reply = releaseOf(t, "k", 0.5)
	if status != 503 || !strings.Contains(reply["error"].(string), "still contended after 64 attempts") {
		t.Errorf("%d %v", status, reply)
	}
}

func TestBadRequests(t *testing.T) {
	start(t)
	for _, tc := range []struct{ body, want string }{
		{`{"values":[1],"epsilon":1}`, "key must be"},
		{`{"key":"a b","values":[1],"epsilon":1}`, "key must be"},
		{`{"key":"k","epsilon":1}`, "values must hold at least one number"},
		{`{"key":"k","values":[1],"epsilon":0}`, "epsilon must be a positive number"},
		{`{"key":"k","values":[1],"epsilon":-1}`, "epsilon must be a positive number"},
		{`{"key":"k","values":[1],"epsilon":1,"sensitivity":0}`, "sensitivity must be a positive number"},
		{`{"key":"k","values":[1e400],"epsilon":1}`, "not a release request"},
		{`{"key":"k","values":["1"],"epsilon":1}`, "not a release request"},
		{`{"key":"k","values":[1],"epsilon":1,"delta":0}`, `unknown field "delta"`},
		{`[`, "not a release request"},
		{`{"key":"k","values":[` + strings.Repeat("1,", maxValues) + `1],"epsilon":1}`, "at most 10000 numbers"},
	} {
		status, reply := do(t, "POST", "/dp-noise", tc.body)
		if msg, _ := reply["error"].(string); status != 400 || !strings.Contains(msg, tc.want) {
			t.Errorf("%.60s: %d %v, want 400 with %q", tc.body, status, reply, tc.want)
		}
	}
	if keys := shanhaitest.KVKeys(""); len(keys) != 0 {
		t.Errorf("bad requests were charged: %v", keys)
	}
	if status, _ := do(t, "GET", "/dp-noise/budget/a%20b", ""); status != 400 {
		t.Errorf("bad budget key: %d", status)
	}
}

func TestFailures(t *testing.T) {
	start(t)
	shanhaitest.SetConfig("budget", "lots")
	if status, reply := releaseOf(t, "k", 1); status != 500 || !strings.Contains(reply["error"].(string), `config variable budget is "lots"`) {
		t.Errorf("bad budget: %d %v", status, reply)
	}
	shanhaitest.UnsetConfig("budget")

	shanhaitest.KVPut("", "spent:k", []byte("many"), 0)
	if status, reply := releaseOf(t, "k", 1); status != 500 || !strings.Contains(reply["error"].(string), `the spent total of k is "many"`) {
		t.Errorf("corrupt total: %d %v", status, reply)
	}

	shanhaitest.SetGrants(shanhaitest.Grants{})
	status, reply := releaseOf(t, "k2", 1)
	if msg, _ := reply["error"].(string); status != 500 || !strings.Contains(msg, "shanhai: kv_get: denied") {
		t.Errorf("denied: %d %v", status, reply)
	}
	if _, ok := reply["values"]; ok {
		t.Error("values released without a budget")
	}
}

// fixed is a reader that repeats one 64-bit little-endian word.
type fixed uint64

func (f fixed) Read(p []byte) (int, error) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(f))
	for i := range p {
		p[i] = b[i%8]
	}
	return len(p), nil
}

func TestLaplaceSampler(t *testing.T) {
	// The top bit is the sign, the low 53 bits pick v = 1-2|u|: the
	// smallest v gives the largest noise the sampler can draw,
	// scale·53·ln 2, the largest (1) none.
	if x := Laplace(fixed(0), 3); math.Abs(x-3*53*math.Ln2) > 1e-9 {
		t.Errorf("smallest v: %g, want %g", x, 3*53*math.Ln2)
	}
	if x := Laplace(fixed(1<<63), 3); math.Abs(x+3*53*math.Ln2) > 1e-9 {
		t.Errorf("smallest v, negative: %g, want %g", x, -3*53*math.Ln2)
	}
	if x := Laplace(fixed(math.MaxUint64), 3); x != 0 {
		t.Errorf("v = 1: %g", x)
	}
	if x := Laplace(fixed(1<<52-1), 1); math.Abs(x-math.Ln2) > 1e-12 {
		t.Errorf("v = 1/2: %g, want ln 2", x)
	}
	// The distribution: Laplace(0, b) has mean 0, mean absolute value b
	// and median absolute value b·ln 2. With 40000 samples each estimate
	// is within 0.05 of its value far beyond six standard deviations.
	const n, scale = 40000, 2.0
	var sum, abs float64
	var below int
	for range n {
		x := Laplace(rand.Reader, scale)
		sum += x
		abs += math.Abs(x)
		if math.Abs(x) < scale*math.Ln2 {
			below++
		}
	}
	if mean := sum / n; math.Abs(mean) > 0.1 {
		t.Errorf("mean %g", mean)
	}
	if mad := abs / n; math.Abs(mad-scale) > 0.1 {
		t.Errorf("mean |x| %g, want %g", mad, scale)
	}
	if frac := float64(below) / n; math.Abs(frac-0.5) > 0.02 {
		t.Errorf("%g of |x| below b·ln 2, want 0.5", frac)
	}
}

// The noise is drawn from the configured source, one word per value.
func TestNoiseSource(t *testing.T) {
	start(t)
	noise = bytes.NewReader(make([]byte, 8*3))
	status, reply := releaseOf(t, "k", 1)
	want := 20 + 2*53*math.Ln2
	if values := reply["values"].([]any); status != 200 || math.Abs(values[0].(float64)-want) > 1e-9 {
		t.Errorf("%d %v, want values[0] = %g", status, reply, want)
	}
}
