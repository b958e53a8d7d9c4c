//go:build !wasm

package shanhaitest

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/internal/hostcall"
	"github.com/shanhai-edge/shanhai/sdk/go/internal/wire"
)

// Grants are the module's grants for the state capabilities, the fields
// of [modules.NAME.grants] in the gateway's config. As on the gateway,
// everything is denied until granted: after [Reset], every KV, SQL, HTTP
// and GPIO call answers denied (the mqtt_publish grant is separate).
//
//	shanhaitest.SetGrants(shanhaitest.Grants{KV: true, HTTP: []string{"api.example.com"}})
type Grants struct {
	// KV grants the module's own KV store (kv = true).
	KV bool
	// KVStores are the shared KV stores it may use (kv_stores).
	KVStores []string
	// SQLite grants the module's own database (sqlite = true).
	SQLite bool
	// SQLiteDatabases are the shared databases it may use
	// (sqlite_databases).
	SQLiteDatabases []string
	// HTTP are the hosts outbound HTTP may reach (http): "host" (ports
	// 80 and 443), "host:port", "host:*" (any port), or "*.domain" (any
	// subdomain) with those port forms.
	HTTP []string
	// GPIOIn are the pins it may read (gpio_in).
	GPIOIn []int
	// GPIOOut are the pins it may drive, and read (gpio_out).
	GPIOOut []int
}

// SetGrants replaces the module's state grants.
func SetGrants(g Grants) {
	hostcall.SetGrants(hostcall.Grants{
		KV: g.KV, KVStores: g.KVStores, SQLite: g.SQLite, SQLiteDatabases: g.SQLiteDatabases,
		HTTP: g.HTTP, GPIOIn: g.GPIOIn, GPIOOut: g.GPIOOut,
	})
}

// AdvanceClock moves the mock host's clock forward by d, so that KV
// entries whose TTL has passed expire without the test sleeping.
func AdvanceClock(d time.Duration) { hostcall.AdvanceClock(d) }

// SetMaxKVValue sets the largest KV value the host accepts, the gateway's
// kv.max_value_bytes (1 MiB by default).
func SetMaxKVValue(n int) { hostcall.SetMaxKVValue(n) }

// KVPut sets key in store ("" is the module's own) directly, as if it had
// been set before the test, or by another module sharing the store; ttl 0
// is no expiry. It needs no grant.
func KVPut(store, key string, value []byte, ttl time.Duration) {
	hostcall.KVPut(store, key, value, ttl)
}

// KVValue returns the value of key in store ("" is the module's own), if
// it is set and has not expired.
func KVValue(store, key string) ([]byte, bool) { return hostcall.KVLookup(store, key) }

// KVKeys returns the keys set in store ("" is the module's own) that have
// not expired, sorted.
func KVKeys(store string) []string { return hostcall.KVKeys(store) }

// SQLResponse is what an [SQLHandler] answers for a statement. Rows hold
// one cell per column each: nil, an integer type, float32 or float64,
// string, []byte or bool, as [shanhai.DB]'s arguments.
type SQLResponse struct {
	RowsAffected uint64
	LastInsertID int64
	Columns      []string
	Rows         [][]any
}

// SQLHandler answers the module's SQL statements in place of SQLite: db
// is the database ("" for the module's own), args the decoded arguments
// (nil, int64, float64, string or []byte). An error fails the call: a
// *[shanhai.HostError] with its Status and Message, any other error as
// invalid_argument with the error's text, the way the host reports
// SQLite's errors.
type SQLHandler func(db, query string, args []any) (SQLResponse, error)

// HandleSQL installs h to answer the module's SQL statements; nil removes
// it, and statements then fail with unavailable. The mock host checks the
// database's grant and decodes the arguments before calling h, and
// encodes its response as the gateway would, so the SDK's encoding is
// exercised end to end.
//
//	shanhaitest.HandleSQL(func(db, query string, args []any) (shanhaitest.SQLResponse, error) {
//		if strings.HasPrefix(query, "SELECT") {
//			return shanhaitest.SQLResponse{Columns: []string{"n"}, Rows: [][]any{{7}}}, nil
//		}
//		return shanhaitest.SQLResponse{RowsAffected: 1}, nil
//	})
func HandleSQL(h SQLHandler) {
	if h == nil {
		hostcall.SetSQLResponder(nil)
		return
	}
	hostcall.SetSQLResponder(func(db, query string, params []any) (wire.SQLResult, int32, string) {
		resp, err := h(db, query, params)
		if err != nil {
			status, message := failure(err, hostcall.StatusInvalidArgument)
			return wire.SQLResult{}, status, message
		}
		return wire.SQLResult{
			RowsAffected: resp.RowsAffected, LastInsertRowID: resp.LastInsertID,
			Columns: resp.Columns, Rows: resp.Rows,
		}, 0, ""
	})
}

// HandleFetch installs h to answer the module's outbound HTTP requests
// (shanhai.HTTPClient, shanhai.Transport) in place of the network; nil
// removes it, and requests then fail with unavailable. The mock host
// checks the URL against the http grant first. h gets an ordinary server
// request: an absolute URL, RequestURI, Host, the headers and the body.
//
//	shanhaitest.SetGrants(shanhaitest.Grants{HTTP: []string{"api.example.com"}})
//	shanhaitest.HandleFetch(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
//		io.WriteString(w, `{"temp": 21}`)
//	}))
func HandleFetch(h http.Handler) {
	if h == nil {
		HandleFetchFunc(nil)
		return
	}
	HandleFetchFunc(func(r *http.Request) (*http.Response, error) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		resp := rec.Result()
		// A server sends no body for HEAD, only its length.
		if r.Method == http.MethodHead {
			if resp.Header.Get("Content-Length") == "" {
				resp.Header.Set("Content-Length", strconv.Itoa(rec.Body.Len()))
			}
			resp.Body = http.NoBody
		}
		return resp, nil
	})
}

// HandleFetchFunc is [HandleFetch] for a function that returns the
// response itself, or an error: a *[shanhai.HostError] with its Status
// and Message (for example status -5, unavailable, for a connection that
// failed), any other error as unavailable with the error's text.
func HandleFetchFunc(f func(*http.Request) (*http.Response, error)) {
	if f == nil {
		hostcall.SetFetchResponder(nil)
		return
	}
	hostcall.SetFetchResponder(func(req wire.HTTPRequest) (wire.HTTPResponse, int32, string) {
		r, err := serverRequest(req)
		if err != nil {
			return wire.HTTPResponse{}, hostcall.StatusInvalidArgument, err.Error()
		}
		resp, err := f(r)
		if err != nil {
			status, message := failure(err, hostcall.StatusUnavailable)
			return wire.HTTPResponse{}, status, message
		}
		var body []byte
		if resp.Body != nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return wire.HTTPResponse{}, hostcall.StatusUnavailable, err.Error()
			}
		}
		out := wire.HTTPResponse{Status: uint16(resp.StatusCode), Body: body}
		for _, name := range slices.Sorted(maps.Keys(resp.Header)) {
			for _, v := range resp.Header[name] {
				out.Headers = append(out.Headers, wire.Header{Name: strings.ToLower(name), Value: v})
			}
		}
		return out, 0, ""
	})
}

// serverRequest turns an http_fetch envelope into the request a handler
// sees.
func serverRequest(req wire.HTTPRequest) (*http.Request, error) {
	u, err := url.Parse(req.URI)
	if err != nil {
		return nil, err
	}
	r, err := http.NewRequest(req.Method, req.URI, bytes.NewReader(req.Body))
	if err != nil {
		return nil, err
	}
	r.RequestURI = u.RequestURI()
	r.ContentLength = int64(len(req.Body))
	if len(req.Body) == 0 {
		r.Body = http.NoBody
	}
	for _, h := range req.Headers {
		if h.Name == "host" {
			r.Host = h.Value
			continue
		}
		r.Header.Add(h.Name, h.Value)
	}
	return r, nil
}

// failure maps a responder's error to a host status and the message to
// stage.
func failure(err error, status int32) (int32, string) {
	var he *shanhai.HostError
	if errors.As(err, &he) && he.Status < 0 {
		return he.Status, he.Message
	}
	return status, err.Error()
}

// GPIOWrite is one write the module made to a GPIO pin.
type GPIOWrite struct {
	Pin  int
	High bool
}

// SetGPIO gives the board pin, at level high: pins exist only once set,
// and the module reads (or drives) one only when its grants allow. A
// module's reads of an input pin see the level set last.
func SetGPIO(pin int, high bool) { hostcall.SetGPIO(pin, high) }

// GPIO returns the level of pin, as last set by [SetGPIO] or written by
// the module; ok is false if the board has no such pin.
func GPIO(pin int) (high, ok bool) { return hostcall.GPIOLevel(pin) }

// GPIOWrites returns every write the module made to a GPIO pin since the
// last [Reset], oldest first.
func GPIOWrites() []GPIOWrite {
	var out []GPIOWrite
	for _, w := range hostcall.GPIOWrites() {
		out = append(out, GPIOWrite{Pin: w.Pin, High: w.High})
	}
	return out
}
