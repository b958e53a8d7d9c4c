// Command fsm runs orders through a state machine whose state lives in the
// module's KV store:
//
//	created --pay--> paid --ship--> shipped --deliver--> delivered
//	created --cancel--> cancelled
//	paid    --cancel--> cancelled
//
// The gateway mounts it at /fsm:
//
//   - POST /fsm/orders/{id} creates an order in state created: 201 with
//     the order; 409 if it exists.
//   - POST /fsm/orders/{id}/{event} applies pay, ship, deliver or cancel:
//     200 with the order. An event the current state does not allow is
//     refused with 409, naming the state and the events it allows:
//     {"error":"cannot ship an order that is created","state":"created",
//     "event":"ship","allowed":["pay","cancel"]}. An optional JSON body
//     {"note":"..."} is kept in the history.
//   - GET /fsm/orders/{id} returns the order: {"id","state","allowed",
//     "history":[{"event","from","to","at","note"}]}, oldest first.
//   - An unknown order is 404, an unknown event 400, an id that is not 1
//     to 64 letters, digits, '-' or '_' 400.
//
// Several instances serve the module at once, so two requests for the
// same order may race. Every write is a compare-and-swap against the
// order as it was read: of two concurrent transitions one wins, and the
// other reads the order again and is judged against the new state (so of
// sixteen concurrent "pay" events exactly one succeeds and fifteen get
// 409).
//
//	[modules.fsm.grants]
//	kv = true
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o fsm.wasm .
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
)

// The states of an order.
const (
	Created   = "created"
	Paid      = "paid"
	Shipped   = "shipped"
	Delivered = "delivered"
	Cancelled = "cancelled"
)

// transition is one edge of the machine.
type transition struct{ event, from, to string }

// machine lists the transitions; the order of the events in it is the
// order "allowed" lists them in.
var machine = []transition{
	{"pay", Created, Paid},
	{"ship", Paid, Shipped},
	{"deliver", Shipped, Delivered},
	{"cancel", Created, Cancelled},
	{"cancel", Paid, Cancelled},
}

// events are the event names, in the order of machine.
var events = []string{"pay", "ship", "deliver", "cancel"}

// maxAttempts bounds the compare-and-swap retries of one request.
const maxAttempts = 64

var validID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// orderStore is the part of shanhai.KV the module uses; the tests wrap it
// to act as a concurrent instance.
type orderStore interface {
	Get(key string) ([]byte, error)
	CompareAndSwap(key string, expected, value []byte, ttl time.Duration) (bool, error)
}

var (
	store orderStore = shanhai.Store("")
	// now is the clock of the history; tests fix it.
	now = time.Now
)

func init() {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /fsm/orders/{id}", create)
	mux.HandleFunc("POST /fsm/orders/{id}/{event}", apply)
	mux.HandleFunc("GET /fsm/orders/{id}", show)
	shanhai.HandleHTTP(mux)
}

// main is empty: the gateway calls the module's exports, not main.
func main() {}

// Order is an order as stored and as answered.
type Order struct {
	ID      string   `json:"id"`
	State   string   `json:"state"`
	Allowed []string `json:"allowed"`
	History []Step   `json:"history"`
}

// Step is one entry of an order's history: its creation (event
// "create", no from) or a transition.
type Step struct {
	Event string    `json:"event"`
	From  string    `json:"from,omitempty"`
	To    string    `json:"to"`
	At    time.Time `json:"at"`
	Note  string    `json:"note,omitempty"`
}

// Allowed returns the events state allows, in the order of machine.
func Allowed(state string) []string {
	out := []string{}
	for _, t := range machine {
		if t.from == state {
			out = append(out, t.event)
		}
	}
	return out
}

// next returns the state event leads to from state, if it is allowed.
func next(state, event string) (string, bool) {
	for _, t := range machine {
		if t.from == state && t.event == event {
			return t.to, true
		}
	}
	return "", false
}

func orderKey(id string) string { return "order:" + id }

func create(w http.ResponseWriter, r *http.Request) {
	id, ok := orderID(w, r)
	if !ok {
		return
	}
	note, ok := readNote(w, r)
	if !ok {
		return
	}
	o := Order{ID: id, State: Created, Allowed: Allowed(Created),
		History: []Step{{Event: "create", To: Created, At: now().UTC(), Note: note}}}
	value, _ := json.Marshal(o)
	// Expected nil: only if no order has this id, so two concurrent
	// creations cannot both succeed either.
	swapped, err := store.CompareAndSwap(orderKey(id), nil, value, 0)
	if err != nil {
		storeFailed(w, "creating order "+id, err)
		return
	}
	if !swapped {
		existing, _, err := load(id)
		if err != nil {
			storeFailed(w, "reading order "+id, err)
			return
		}
		writeJSON(w, http.StatusConflict, map[string]any{
			"error": fmt.Sprintf("order %s already exists (state %s)", id, existing.State), "state": existing.State,
		})
		return
	}
	slog.Info("order created", "id", id)
	writeJSON(w, http.StatusCreated, o)
}

func apply(w http.ResponseWriter, r *http.Request) {
	id, ok := orderID(w, r)
	if !ok {
		return
	}
	event := r.PathValue("event")
	if !slices.Contains(events, event) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown event %q: the events are %s", event, strings.Join(events, ", ")))
		return
	}
	note, ok := readNote(w, r)
	if !ok {
		return
	}
	for range maxAttempts {
		o, raw, err := load(id)
		if errors.Is(err, shanhai.ErrNotFound) {
			writeError(w, http.StatusNotFound, "no order "+id)
			return
		}
		if err != nil {
			storeFailed(w, "reading order "+id, err)
			return
		}
		to, allowed := next(o.State, event)
		if !allowed {
			writeJSON(w, http.StatusConflict, map[string]any{
				"error": fmt.Sprintf("cannot %s an order that is %s", event, o.State),
				"state": o.State, "event": event, "allowed": Allowed(o.State),
			})
			return
		}
		o.History = append(o.History, Step{Event: event, From: o.State, To: to, At: now().UTC(), Note: note})
		o.State, o.Allowed = to, Allowed(to)
		value, _ := json.Marshal(o)
		swapped, err := store.CompareAndSwap(orderKey(id), raw, value, 0)
		if err != nil {
			storeFailed(w, "updating order "+id, err)
			return
		}
		if swapped {
			slog.Info("order transition", "id", id, "event", event, "from", o.History[len(o.History)-1].From, "to", to)
			writeJSON(w, http.StatusOK, o)
			return
		}
		// Another request changed the order since it was read: judge the
		// event again against what it is now.
	}
	writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("order %s: still contended after %d attempts", id, maxAttempts))
}

func show(w http.ResponseWriter, r *http.Request) {
	id, ok := orderID(w, r)
	if !ok {
		return
	}
	o, _, err := load(id)
	if errors.Is(err, shanhai.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no order "+id)
		return
	}
	if err != nil {
		storeFailed(w, "reading order "+id, err)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

// load returns the order and its stored bytes, which a compare-and-swap
// expects.
func load(id string) (*Order, []byte, error) {
	raw, err := store.Get(orderKey(id))
	if err != nil {
		return nil, nil, err
	}
	var o Order
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, nil, fmt.Errorf("order %s is stored as something else than an order: %v", id, err)
	}
	// Derived, not trusted from the store: the machine may have changed.
	o.Allowed = Allowed(o.State)
	return &o, raw, nil
}

func orderID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !validID.MatchString(id) {
		writeError(w, http.StatusBadRequest, "an order id is 1 to 64 letters, digits, '-' or '_'")
		return "", false
	}
	return id, true
}

// readNote reads the optional body {"note":"..."}.
func readNote(w http.ResponseWriter, r *http.Request) (string, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4096))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "the body is larger than 4096 bytes")
		return "", false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return "", true
	}
	var req struct {
		Note string `json:"note"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, `the body must be empty or {"note":"..."}: `+err.Error())
		return "", false
	}
	return req.Note, true
}

// storeFailed answers a failed KV call: 503 when the store is down, 500
// otherwise (a missing grant is the deployment's mistake, and the host's
// message says which grant).
func storeFailed(w http.ResponseWriter, what string, err error) {
	slog.Error(what, "err", err)
	status := http.StatusInternalServerError
	if errors.Is(err, shanhai.ErrUnavailable) {
		status = http.StatusServiceUnavailable
	}
	writeError(w, status, what+": "+err.Error())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]string{"error": message})
}
