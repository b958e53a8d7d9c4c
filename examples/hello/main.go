// Command hello is a Shanhai module written with the Go SDK: an ordinary
// net/http handler plus a byte function.
//
// The gateway mounts it at /hello and /hello/*, and it receives the full
// path:
//
//   - GET /hello?name=X answers "Hello, X" ("world" when no name is given);
//     the greeting word comes from the config variable greeting, default
//     "Hello".
//   - /hello/echo (any method) answers a JSON object with the request's
//     method, path, query, user-agent header, body and request id.
//   - The byte function upper upper-cases its input
//     (POST /api/exec/hello/upper).
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o hello.wasm .
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
)

// init runs once per instance, when the gateway calls _initialize: the
// place to build the router.
func init() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", greet)
	mux.HandleFunc("/hello/echo", echo)
	shanhai.HandleHTTP(mux)
	shanhai.Export("upper", upper)
}

// main is empty: the gateway calls the module's exports, not main.
func main() {}

func greet(w http.ResponseWriter, r *http.Request) {
	greeting, err := shanhai.Config("greeting")
	if errors.Is(err, shanhai.ErrNotFound) {
		greeting = "Hello"
	} else if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	name := r.URL.Query().Get("name")
	if name == "" {
		name = "world"
	}
	slog.Info("greeting", "name", name)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, greeting+", "+name)
}

// echoReply is what /hello/echo answers.
type echoReply struct {
	Method    string `json:"method"`
	Path      string `json:"path"`
	Query     string `json:"query"`
	UserAgent string `json:"user_agent"`
	Body      string `json:"body"`
	RequestID string `json:"request_id"`
}

func echo(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(echoReply{
		Method:    r.Method,
		Path:      r.URL.Path,
		Query:     r.URL.RawQuery,
		UserAgent: r.UserAgent(),
		Body:      string(body),
		RequestID: shanhai.RequestID(r),
	})
}

// upper is the byte function "upper".
func upper(input []byte) ([]byte, error) {
	return bytes.ToUpper(input), nil
}
