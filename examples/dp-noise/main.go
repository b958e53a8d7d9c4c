// Command dp-noise releases numeric readings under differential privacy:
// it adds Laplace noise to them and charges each release to a privacy
// budget per key, kept in the module's KV store.
//
// The gateway mounts it at /dp-noise:
//
//   - POST /dp-noise with {"key":"sensor-7","values":[21.5,22.1],
//     "epsilon":0.5,"sensitivity":1} answers 200 with the noisy values and
//     the budget left:
//
//     {"key":"sensor-7","values":[23.9,20.8],"epsilon":0.5,"sensitivity":1,
//     "scale":2,"budget":10,"spent":0.5,"remaining":9.5}
//
//   - A release whose epsilon is more than the key's remaining budget is
//     refused with 429 and the budget left, and nothing is released:
//
//     {"error":"privacy budget exhausted","key":"sensor-7","budget":10,
//     "spent":9.8,"remaining":0.2,"requested":0.5}
//
//   - GET /dp-noise/budget/{key} answers {"key","budget","spent","remaining"}.
//
//   - A malformed request (no key, no values, a value that is not finite,
//     epsilon or sensitivity not positive) is answered with 400.
//
// This is the Laplace mechanism: each value gets independent noise drawn
// from Laplace(0, sensitivity/epsilon), where sensitivity is the L1
// sensitivity of the whole list of values (how much one individual can
// change the sum of their absolute differences). The release as a whole is
// then epsilon-differentially private, and epsilon is what it costs.
// Releases about one key compose: their epsilons add up, and once they
// reach the key's budget (the config variable budget, 10 by default) the
// key gets nothing more.
//
// The budget must never be overspent, even by requests that arrive at the
// same moment on different instances, so the charge is a compare-and-swap
// on the key's spent total, retried when another request got there first.
// The charge comes before the noise: a release that failed after being
// charged wastes budget, but none is ever released without being charged.
//
// The noise is drawn by inverse-CDF sampling from crypto/rand, because a
// predictable generator would let anyone subtract the noise. Note that
// naive floating-point Laplace sampling, as here, leaks a little through
// the low bits of the results (Mironov, CCS 2012); a production release
// would also snap its outputs to a coarse grid.
//
//	[modules.dp-noise.grants]
//	kv = true
//	[modules.dp-noise.vars]
//	budget = "10"
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o dp-noise.wasm .
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"time"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
)

const (
	// DefaultBudget is the privacy budget of a key when the config
	// variable budget is not set.
	DefaultBudget = 10.0
	// maxValues bounds the values of one release.
	maxValues = 10000
	// maxAttempts bounds the compare-and-swap retries of one charge; a
	// request still losing after that many rounds answers 503.
	maxAttempts = 64
	// slack absorbs floating-point rounding when the spent total is
	// compared with the budget, so that ten releases of 0.1 fit in 1.
	slack = 1e-9
)

// validKey matches the keys budgets are kept for.
var validKey = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)

// budgetStore is the part of shanhai.KV the module uses; the tests wrap
// it to act as a concurrent instance.
type budgetStore interface {
	Get(key string) ([]byte, error)
	CompareAndSwap(key string, expected, value []byte, ttl time.Duration) (bool, error)
}

var (
	store budgetStore = shanhai.Store("")
	// noise is the source of randomness; tests replace it to check the
	// sampler.
	noise io.Reader = rand.Reader
)

func init() {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /dp-noise", release)
	mux.HandleFunc("GET /dp-noise/budget/{key}", showBudget)
	shanhai.HandleHTTP(mux)
}

// main is empty: the gateway calls the module's exports, not main.
func main() {}

// Request is the body of POST /dp-noise.
type Request struct {
	Key         string    `json:"key"`
	Values      []float64 `json:"values"`
	Epsilon     float64   `json:"epsilon"`
	Sensitivity *float64  `json:"sensitivity"` // default 1
}

// Budget is a key's budget and what it has spent.
type Budget struct {
	Key       string  `json:"key"`
	Budget    float64 `json:"budget"`
	Spent     float64 `json:"spent"`
	Remaining float64 `json:"remaining"`
}

// Release is the answer to POST /dp-noise.
type Release struct {
	Key         string    `json:"key"`
	Values      []float64 `json:"values"`
	Epsilon     float64   `json:"epsilon"`
	Sensitivity float64   `json:"sensitivity"`
	Scale       float64   `json:"scale"`
	Budget      float64   `json:"budget"`
	Spent       float64   `json:"spent"`
	Remaining   float64   `json:"remaining"`
}

func release(w http.ResponseWriter, r *http.Request) {
	req, err := decode(w, r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	budget, err := configuredBudget()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	spent, err := charge(req.Key, req.Epsilon, budget)
	var over *overBudget
	if errors.As(err, &over) {
		slog.Warn("privacy budget exhausted", "key", req.Key, "spent", over.spent, "requested", req.Epsilon)
		writeJSON(w, http.StatusTooManyRequests, map[string]any{
			"error": "privacy budget exhausted", "key": req.Key, "budget": budget,
			"spent": over.spent, "remaining": remaining(budget, over.spent), "requested": req.Epsilon,
		})
		return
	}
	if err != nil {
		storeFailed(w, err)
		return
	}
	scale := *req.Sensitivity / req.Epsilon
	out := make([]float64, len(req.Values))
	for i, v := range req.Values {
		out[i] = v + Laplace(noise, scale)
	}
	writeJSON(w, http.StatusOK, Release{
		Key: req.Key, Values: out, Epsilon: req.Epsilon, Sensitivity: *req.Sensitivity, Scale: scale,
		Budget: budget, Spent: spent, Remaining: remaining(budget, spent),
	})
}

func showBudget(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if !validKey.MatchString(key) {
		writeError(w, http.StatusBadRequest, "key must be 1 to 128 letters, digits or . _ : -")
		return
	}
	budget, err := configuredBudget()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	_, spent, err := load(key)
	if err != nil {
		storeFailed(w, err)
		return
	}
	writeJSON(w, http.StatusOK, Budget{Key: key, Budget: budget, Spent: spent, Remaining: remaining(budget, spent)})
}

func decode(w http.ResponseWriter, r *http.Request) (*Request, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		return nil, errors.New("the body is larger than 1 MiB")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req Request
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("the body is not a release request: %v", err)
	}
	switch {
	case !validKey.MatchString(req.Key):
		return nil, errors.New("key must be 1 to 128 letters, digits or . _ : -")
	case len(req.Values) == 0:
		return nil, errors.New("values must hold at least one number")
	case len(req.Values) > maxValues:
		return nil, fmt.Errorf("values may hold at most %d numbers", maxValues)
	case !(req.Epsilon > 0) || math.IsInf(req.Epsilon, 0):
		return nil, errors.New("epsilon must be a positive number")
	}
	if req.Sensitivity == nil {
		one := 1.0
		req.Sensitivity = &one
	}
	if s := *req.Sensitivity; !(s > 0) || math.IsInf(s, 0) {
		return nil, errors.New("sensitivity must be a positive number")
	}
	// encoding/json refuses NaN, infinities and numbers beyond float64
	// (1e400), so the values are finite.
	return &req, nil
}

// configuredBudget reads the config variable budget.
func configuredBudget() (float64, error) {
	v, err := shanhai.Config("budget")
	if errors.Is(err, shanhai.ErrNotFound) {
		return DefaultBudget, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading config variable budget: %w", err)
	}
	b, err := strconv.ParseFloat(v, 64)
	if err != nil || !(b > 0) || math.IsInf(b, 0) {
		return 0, fmt.Errorf("config variable budget is %q, not a positive number", v)
	}
	return b, nil
}

// overBudget is charge's answer when the release does not fit.
type overBudget struct{ spent float64 }

func (e *overBudget) Error() string { return "privacy budget exhausted" }

// budgetKey is the KV key of a key's spent total.
func budgetKey(key string) string { return "spent:" + key }

// load returns the stored spent total of key, as stored (nil when there
// is none) and as a number.
func load(key string) ([]byte, float64, error) {
	raw, err := store.Get(budgetKey(key))
	if errors.Is(err, shanhai.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	spent, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return nil, 0, fmt.Errorf("the spent total of %s is %q, not a number", key, raw)
	}
	return raw, spent, nil
}

// charge adds epsilon to key's spent total unless that would exceed
// budget, and returns the new total. The swap succeeds only if the total
// is still the one read, so of two concurrent charges one retries with
// the other's total and checks the budget again.
func charge(key string, epsilon, budget float64) (float64, error) {
	for range maxAttempts {
		old, spent, err := load(key)
		if err != nil {
			return 0, err
		}
		if spent+epsilon > budget+slack {
			return 0, &overBudget{spent: spent}
		}
		next := spent + epsilon
		swapped, err := store.CompareAndSwap(budgetKey(key), old, []byte(strconv.FormatFloat(next, 'g', -1, 64)), 0)
		if err != nil {
			return 0, err
		}
		if swapped {
			return next, nil
		}
	}
	return 0, fmt.Errorf("charging the budget of %s: %w (still contended after %d attempts)", key, shanhai.ErrConflict, maxAttempts)
}

func remaining(budget, spent float64) float64 {
	return max(0, budget-spent)
}

// Laplace draws one sample from Laplace(0, scale) by inverting its CDF:
// for u uniform on (-1/2, 1/2) the sample is -scale·sgn(u)·ln(1-2|u|).
// The sign of u and v = 1-2|u|, uniform on (0, 1], are drawn separately,
// from one random bit and 53 others: v = (k+1)/2^53 is then exact in
// float64, where computing u itself would round (2^52+0.5 is not a
// float64) and could reach ln(0).
func Laplace(random io.Reader, scale float64) float64 {
	var b [8]byte
	if _, err := io.ReadFull(random, b[:]); err != nil {
		// crypto/rand does not fail (Go 1.24 crashes the program rather
		// than return an error), so this is a broken test reader.
		panic("dp-noise: reading random bytes: " + err.Error())
	}
	word := binary.LittleEndian.Uint64(b[:])
	k := word & (1<<53 - 1)
	x := -scale * math.Log(float64(k+1)/(1<<53))
	if word>>63 == 1 {
		return -x
	}
	return x
}

// storeFailed answers a failed KV call: 503 when the store is down or too
// contended, 500 otherwise (a missing grant is the deployment's mistake,
// and the host's message says which grant).
func storeFailed(w http.ResponseWriter, err error) {
	slog.Error("privacy budget", "err", err)
	status := http.StatusInternalServerError
	if errors.Is(err, shanhai.ErrUnavailable) || errors.Is(err, shanhai.ErrConflict) {
		status = http.StatusServiceUnavailable
	}
	writeError(w, status, "privacy budget: "+err.Error())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]string{"error": message})
}
