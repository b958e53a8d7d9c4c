//go:build !wasm

// The tests run natively, against shanhaitest's mock host.

package main

import (
	"encoding/json"
	"io"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

// start resets the mock host, grants KV and starts a clock that ticks a
// minute per reading.
func start(t *testing.T) {
	t.Helper()
	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{KV: true})
	store = shanhai.Store("")
	tick := t0
	now = func() time.Time { tick = tick.Add(time.Minute); return tick }
}

// reply is the union of the module's answers.
type reply struct {
	Order
	Error string `json:"error"`
	Event string `json:"event"`
}

func do(t *testing.T, method, target, body string) (int, reply) {
	t.Helper()
	resp, err := shanhaitest.Do(httptest.NewRequest(method, target, strings.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	var r reply
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("%s %s: %d %s", method, target, resp.StatusCode, raw)
	}
	return resp.StatusCode, r
}

func must(t *testing.T, status int, method, target, body string) reply {
	t.Helper()
	got, r := do(t, method, target, body)
	if got != status {
		t.Fatalf("%s %s: %d %+v, want %d", method, target, got, r, status)
	}
	return r
}

func TestLifecycle(t *testing.T) {
	start(t)
	o := must(t, 201, "POST", "/fsm/orders/A-1", "")
	if o.ID != "A-1" || o.State != Created || !reflect.DeepEqual(o.Allowed, []string{"pay", "cancel"}) {
		t.Errorf("created: %+v", o)
	}
	must(t, 200, "POST", "/fsm/orders/A-1/pay", `{"note":"card ending 4242"}`)
	must(t, 200, "POST", "/fsm/orders/A-1/ship", "")
	o = must(t, 200, "POST", "/fsm/orders/A-1/deliver", "  ")
	if o.State != Delivered || len(o.Allowed) != 0 {
		t.Errorf("delivered: %+v", o)
	}
	got := must(t, 200, "GET", "/fsm/orders/A-1", "")
	want := []Step{
		{Event: "create", To: Created, At: t0.Add(time.Minute)},
		{Event: "pay", From: Created, To: Paid, At: t0.Add(2 * time.Minute), Note: "card ending 4242"},
		{Event: "ship", From: Paid, To: Shipped, At: t0.Add(3 * time.Minute)},
		{Event: "deliver", From: Shipped, To: Delivered, At: t0.Add(4 * time.Minute)},
	}
	if got.State != Delivered || !reflect.DeepEqual(got.History, want) {
		t.Errorf("GET: %+v\nwant history %+v", got, want)
	}
	if _, ok := shanhaitest.KVValue("", "order:A-1"); !ok {
		t.Error("the order is not in KV")
	}
}

func TestCancel(t *testing.T) {
	start(t)
	must(t, 201, "POST", "/fsm/orders/c1", "")
	if o := must(t, 200, "POST", "/fsm/orders/c1/cancel", ""); o.State != Cancelled {
		t.Errorf("%+v", o)
	}
	must(t, 201, "POST", "/fsm/orders/c2", "")
	must(t, 200, "POST", "/fsm/orders/c2/pay", "")
	must(t, 200, "POST", "/fsm/orders/c2/cancel", "")
	must(t, 201, "POST", "/fsm/orders/c3", "")
	must(t, 200, "POST", "/fsm/orders/c3/pay", "")
	must(t, 200, "POST", "/fsm/orders/c3/ship", "")
	r := must(t, 409, "POST", "/fsm/orders/c3/cancel", "")
	if r.Error != "cannot cancel an order that is shipped" || r.State != Shipped || !reflect.DeepEqual(r.Allowed, []string{"deliver"}) {
		t.Errorf("%+v", r)
	}
}

func TestInvalidTransitions(t *testing.T) {
	start(t)
	must(t, 201, "POST", "/fsm/orders/o1", "")
	before, _ := shanhaitest.KVValue("", "order:o1")
	for _, tc := range []struct {
		event   string
		allowed []string
	}{
		{"ship", []string{"pay", "cancel"}},
		{"deliver", []string{"pay", "cancel"}},
	} {
		r := must(t, 409, "POST", "/fsm/orders/o1/"+tc.event, "")
		if r.Error != "cannot "+tc.event+" an order that is created" || r.State != Created || r.Event != tc.event || !reflect.DeepEqual(r.Allowed, tc.allowed) {
			t.Errorf("%s: %+v", tc.event, r)
		}
	}
	if after, _ := shanhaitest.KVValue("", "order:o1"); string(after) != string(before) {
		t.Error("a refused transition changed the order")
	}
	must(t, 200, "POST", "/fsm/orders/o1/cancel", "")
	r := must(t, 409, "POST", "/fsm/orders/o1/pay", "")
	if r.State != Cancelled || r.Allowed == nil || len(r.Allowed) != 0 {
		t.Errorf("after cancel: %+v", r)
	}
	r = must(t, 409, "POST", "/fsm/orders/o1", "")
	if r.Error != "order o1 already exists (state cancelled)" {
		t.Errorf("second create: %+v", r)
	}
}

func TestBadRequests(t *testing.T) {
	start(t)
	must(t, 201, "POST", "/fsm/orders/o1", "")
	for _, tc := range []struct {
		method, target, body string
		status               int
		want                 string
	}{
		{"GET", "/fsm/orders/nope", "", 404, "no order nope"},
		{"POST", "/fsm/orders/nope/pay", "", 404, "no order nope"},
		{"POST", "/fsm/orders/o1/refund", "", 400, `unknown event "refund": the events are pay, ship, deliver, cancel`},
		{"POST", "/fsm/orders/o1/pay%20ship", "", 400, "unknown event"},
		{"POST", "/fsm/orders/a.b", "", 400, "an order id is 1 to 64"},
		{"POST", "/fsm/orders/o1/pay", `{"notes":"x"}`, 400, `the body must be empty or {"note":"..."}`},
		{"POST", "/fsm/orders/o1/pay", `{"note":"` + strings.Repeat("x", 5000) + `"}`, 413, "larger than 4096"},
	} {
		status, r := do(t, tc.method, tc.target, tc.body)
		if status != tc.status || !strings.Contains(r.Error, tc.want) {
			t.Errorf("%s %s: %d %q, want %d with %q", tc.method, tc.target, status, r.Error, tc.status, tc.want)
		}
	}
	if o := must(t, 200, "GET", "/fsm/orders/o1", ""); o.State != Created {
		t.Errorf("bad requests changed the order: %+v", o)
	}
}

// racingStore lets another instance apply event to the order between
// this instance's read and its swap, once.
type racingStore struct {
	shanhai.KV
	event string
}

func (s *racingStore) CompareAndSwap(key string, expected, value []byte, ttl time.Duration) (bool, error) {
	if s.event != "" {
		// The other instance's transition, written straight to the store:
		// a nested event would reuse the SDK's per-instance buffers.
		raw, _ := shanhaitest.KVValue("", key)
		var o Order
		json.Unmarshal(raw, &o)
		to, ok := next(o.State, s.event)
		if !ok {
			panic("the racing transition is not allowed")
		}
		o.History = append(o.History, Step{Event: s.event, From: o.State, To: to, At: t0})
		o.State, o.Allowed = to, Allowed(to)
		raw, _ = json.Marshal(o)
		shanhaitest.KVPut("", key, raw, 0)
		s.event = ""
	}
	return s.KV.CompareAndSwap(key, expected, value, ttl)
}

func TestConcurrentTransitions(t *testing.T) {
	start(t)
	must(t, 201, "POST", "/fsm/orders/r1", "")
	// Another instance pays first: this pay loses the swap, reads the
	// order again and is refused against its new state.
	store = &racingStore{KV: shanhai.Store(""), event: "pay"}
	r := must(t, 409, "POST", "/fsm/orders/r1/pay", "")
	if r.State != Paid || !reflect.DeepEqual(r.Allowed, []string{"ship", "cancel"}) {
		t.Errorf("%+v", r)
	}
	// Another instance ships while this one cancels: the cancel is judged
	// again, against shipped, and refused.
	store = &racingStore{KV: shanhai.Store(""), event: "ship"}
	r = must(t, 409, "POST", "/fsm/orders/r1/cancel", "")
	if r.State != Shipped {
		t.Errorf("%+v", r)
	}
	// A cancel that loses to a pay still applies, to the paid order.
	store = shanhai.Store("")
	must(t, 201, "POST", "/fsm/orders/r2", "")
	store = &racingStore{KV: shanhai.Store(""), event: "pay"}
	o := must(t, 200, "POST", "/fsm/orders/r2/cancel", "")
	if o.State != Cancelled || len(o.History) != 3 || o.History[2].From != Paid {
		t.Errorf("%+v", o)
	}
}

func TestConcurrentCreation(t *testing.T) {
	start(t)
	other, _ := json.Marshal(Order{ID: "x", State: Paid})
	shanhaitest.KVPut("", "order:x", other, 0)
	r := must(t, 409, "POST", "/fsm/orders/x", "")
	if r.Error != "order x already exists (state paid)" {
		t.Errorf("%+v", r)
	}
}

func TestFailures(t *testing.T) {
	start(t)
	shanhaitest.KVPut("", "order:junk", []byte("not json"), 0)
	if status, r := do(t, "GET", "/fsm/orders/junk", ""); status != 500 || !strings.Contains(r.Error, "order junk is stored as something else") {
		t.Errorf("corrupt order: %d %+v", status, r)
	}
	must(t, 201, "POST", "/fsm/orders/o1", "")
	shanhaitest.SetGrants(shanhaitest.Grants{})
	for _, tc := range []struct{ target, want string }{
		{"/fsm/orders/o2", "creating order o2: shanhai: kv_cas: denied"},
		{"/fsm/orders/o1/pay", "reading order o1: shanhai: kv_get: denied"},
	} {
		if status, r := do(t, "POST", tc.target, ""); status != 500 || !strings.HasPrefix(r.Error, tc.want) {
			t.Errorf("%s: %d %q, want 500 %q", tc.target, status, r.Error, tc.want)
		}
	}
}
