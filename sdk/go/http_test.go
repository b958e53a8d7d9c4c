//go:build !wasm

package shanhai_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/internal/wire"
	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

// serve registers h for the duration of a test and resets the mock host.
func serve(t *testing.T, h http.HandlerFunc) {
	t.Helper()
	shanhaitest.Reset()
	shanhai.HandleHTTP(h)
}

// seen is what a handler observed of its request.
type seen struct {
	Method, Path, RawQuery, RequestURI, Host, RemoteAddr, RequestID string
	Header                                                          http.Header
	Body                                                            string
	ContentLength                                                   int64
}

func record(got *seen) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			panic(err)
		}
		*got = seen{
			Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, RequestURI: r.RequestURI,
			Host: r.Host, RemoteAddr: r.RemoteAddr, RequestID: shanhai.RequestID(r),
			Header: r.Header.Clone(), Body: string(body), ContentLength: r.ContentLength,
		}
	}
}

func TestHTTPRequestFromEnvelope(t *testing.T) {
	var got seen
	serve(t, record(&got))
	env := (&wire.HTTPRequest{
		Method:     "POST",
		URI:        "/hello/echo?name=edge&x=%2F",
		RequestID:  "r-42",
		RemoteAddr: "10.0.0.7:5151",
		Headers: []wire.Header{
			{Name: "host", Value: "edge.example:8080"},
			{Name: "content-type", Value: "text/plain"},
			{Name: "x-multi", Value: "a"},
			{Name: "x-multi", Value: "b"},
		},
		Body: []byte("hello body"),
	}).Append(nil)
	status, out := shanhaitest.Dispatch(shanhaitest.KindHTTP, env)
	if status != shanhaitest.StatusOK {
		t.Fatalf("status %d: %s", status, out)
	}
	want := seen{
		Method: "POST", Path: "/hello/echo", RawQuery: "name=edge&x=%2F",
		RequestURI: "/hello/echo?name=edge&x=%2F", Host: "edge.example:8080",
		RemoteAddr: "10.0.0.7:5151", RequestID: "r-42",
		Header:        http.Header{"Content-Type": {"text/plain"}, "X-Multi": {"a", "b"}},
		Body:          "hello body",
		ContentLength: 10,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("handler saw\n %+v\nwant\n %+v", got, want)
	}
}

// A handler may append to a header value slice; that must not overwrite
// the next header's value, which shares the backing array.
func TestHTTPRequestHeaderAppendIsSafe(t *testing.T) {
	var first, second string
	serve(t, func(w http.ResponseWriter, r *http.Request) {
		r.Header["A"] = append(r.Header["A"], "appended")
		first, second = strings.Join(r.Header["A"], ","), r.Header.Get("B")
	})
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("A", "1")
	req.Header.Set("B", "2")
	if _, err := shanhaitest.Do(req); err != nil {
		t.Fatal(err)
	}
	if first != "1,appended" || second != "2" {
		t.Errorf("A=%q B=%q", first, second)
	}
}

func TestHTTPEmptyBody(t *testing.T) {
	var got seen
	var body io.ReadCloser
	serve(t, func(w http.ResponseWriter, r *http.Request) {
		body = r.Body
		record(&got)(w, r)
	})
	if _, err := shanhaitest.Do(httptest.NewRequest("GET", "/x", nil)); err != nil {
		t.Fatal(err)
	}
	if body != http.NoBody || got.ContentLength != 0 || got.Body != "" {
		t.Errorf("body %v, length %d, %q", body, got.ContentLength, got.Body)
	}
	if got.Header.Get("X-Request-Id") == "" || got.Header.Get("X-Request-Id") != got.RequestID {
		t.Errorf("request id %q, header %q", got.RequestID, got.Header.Get("X-Request-Id"))
	}
}

// The response envelope the SDK writes must be byte for byte the golden
// vector that crates/abi decodes.
func TestHTTPResponseMatchesGoldenVector(t *testing.T) {
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		HTTPResponse []struct {
			Name string `json:"name"`
			Hex  string `json:"hex"`
		} `json:"http_response"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	handlers := map[string]http.HandlerFunc{
		"created-json": func(w http.ResponseWriter, r *http.Request) {
			// Canonical names in a map: the SDK sorts and lower-cases them.
			w.Header().Set("X-A", "1")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, "{}")
		},
		"no-content": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		},
	}
	for _, vec := range v.HTTPResponse {
		t.Run(vec.Name, func(t *testing.T) {
			h, ok := handlers[vec.Name]
			if !ok {
				t.Fatalf("no handler for vector %s", vec.Name)
			}
			serve(t, h)
			env, err := shanhaitest.Encode(httptest.NewRequest("GET", "/", nil))
			if err != nil {
				t.Fatal(err)
			}
			status, out := shanhaitest.Dispatch(shanhaitest.KindHTTP, env)
			if status != shanhaitest.StatusOK {
				t.Fatalf("status %d: %s", status, out)
			}
			if got := hex.EncodeToString(out); got != vec.Hex {
				t.Errorf("response envelope\n %s\nwant\n %s", got, vec.Hex)
			}
		})
	}
}

func TestHTTPResponse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		status  int
		header  http.Header
		body    string
	}{
		{"nothing written is 200", func(w http.ResponseWriter, r *http.Request) {}, 200, http.Header{}, ""},
		{"implicit 200 and sniffed html", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "<html><body>hi</body></html>")
		}, 200, http.Header{"Content-Type": {"text/html; charset=utf-8"}}, "<html><body>hi</body></html>"},
		{"sniffed after an explicit status", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusTeapot)
			w.Write([]byte("plain words"))
		}, 418, http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, "plain words"},
		{"explicit content type is kept", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/x-thing")
			io.WriteString(w, "<html>")
		}, 200, http.Header{"Content-Type": {"application/x-thing"}}, "<html>"},
		{"nil content type suppresses sniffing", func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil
			io.WriteString(w, "<html>")
		}, 200, http.Header{}, "<html>"},
		{"content encoding suppresses sniffing", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Write([]byte{0x1f, 0x8b})
		}, 200, http.Header{"Content-Encoding": {"gzip"}}, "\x1f\x8b"},
		{"multiple values and several writes", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Add("Set-Cookie", "a=1")
			w.Header().Add("Set-Cookie", "b=2")
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "one ")
			w.Write([]byte("two"))
		}, 200, http.Header{"Set-Cookie": {"a=1", "b=2"}, "Content-Type": {"text/plain"}}, "one two"},
		{"headers after WriteHeader are ignored", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Before", "1")
			w.WriteHeader(http.StatusAccepted)
			w.Header().Set("X-After", "1")
			w.WriteHeader(http.StatusInternalServerError) // superfluous
		}, 202, http.Header{"X-Before": {"1"}}, ""},
		{"informational status is skipped", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusOK)
		}, 200, http.Header{}, ""},
		{"newlines in values become spaces", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Evil", "a\r\nSet-Cookie: x=1")
		}, 200, http.Header{"X-Evil": {"a  Set-Cookie: x=1"}}, ""},
		{"http.Error", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "nope", http.StatusForbidden)
		}, 403, http.Header{
			"Content-Type":           {"text/plain; charset=utf-8"},
			"X-Content-Type-Options": {"nosniff"},
		}, "nope\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serve(t, tc.handler)
			resp, err := shanhaitest.Do(httptest.NewRequest("GET", "/", nil))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || !reflect.DeepEqual(resp.Header, tc.header) || string(body) != tc.body {
				t.Errorf("got %d %v %q\nwant %d %v %q", resp.StatusCode, resp.Header, body, tc.status, tc.header, tc.body)
			}
		})
	}
}

func TestHTTPBodyNotAllowed(t *testing.T) {
	var writeErr error
	serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotModified)
		_, writeErr = io.WriteString(w, "x")
	})
	resp, err := shanhaitest.Do(httptest.NewRequest("GET", "/", nil))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 304 || resp.ContentLength != 0 || !errors.Is(writeErr, http.ErrBodyNotAllowed) {
		t.Errorf("status %d, %d bytes, write error %v", resp.StatusCode, resp.ContentLength, writeErr)
	}
}

func TestHTTPPanicIsAnEventError(t *testing.T) {
	serve(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "partial output that must not be sent")
		panic("boom")
	})
	_, err := shanhaitest.Do(httptest.NewRequest("GET", "/", nil))
	var ee *shanhaitest.EventError
	if !errors.As(err, &ee) || ee.Status != shanhaitest.StatusError || ee.Message != "panic: boom" {
		t.Fatalf("got %v, want an error event with message %q", err, "panic: boom")
	}
	logs := shanhaitest.Logs()
	if len(logs) != 1 || logs[0].Level != 4 || !strings.HasPrefix(logs[0].Text, "panic: boom\n") ||
		!strings.Contains(logs[0].Text, "http_test.go") {
		t.Errorf("want one error log with the stack, got %+v", logs)
	}

	// The instance stays usable.
	serve(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "fine") })
	resp, err := shanhaitest.Do(httptest.NewRequest("GET", "/", nil))
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := io.ReadAll(resp.Body); string(body) != "fine" {
		t.Errorf("after a panic: %q", body)
	}
}

func TestHTTPErrorPanics(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		message string
		logged  bool
	}{
		{"abort handler is not logged", func(w http.ResponseWriter, r *http.Request) {
			panic(http.ErrAbortHandler)
		}, "handler aborted the response", false},
		{"invalid status code", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(42)
		}, "panic: invalid WriteHeader code 42", true},
		{"error value", func(w http.ResponseWriter, r *http.Request) {
			panic(errors.New("bad state"))
		}, "panic: bad state", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serve(t, tc.handler)
			_, err := shanhaitest.Do(httptest.NewRequest("GET", "/", nil))
			var ee *shanhaitest.EventError
			if !errors.As(err, &ee) || ee.Status != shanhaitest.StatusError || ee.Message != tc.message {
				t.Fatalf("got %v, want message %q", err, tc.message)
			}
			if logged := len(shanhaitest.Logs()) > 0; logged != tc.logged {
				t.Errorf("logged %v, want %v", logged, tc.logged)
			}
		})
	}
}

func TestHTTPOutputTooLarge(t *testing.T) {
	serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("x"), 1000))
	})
	// 6 bytes of status and count, 45 of sniffed content-type, the body.
	shanhaitest.SetMaxOutput(1050)
	_, err := shanhaitest.Do(httptest.NewRequest("GET", "/", nil))
	var ee *shanhaitest.EventError
	if !errors.As(err, &ee) || ee.Status != shanhaitest.StatusError ||
		!strings.Contains(ee.Message, "too large") || !strings.Contains(ee.Message, "1051 bytes") {
		t.Fatalf("got %v", err)
	}
	shanhaitest.SetMaxOutput(1051) // exactly the limit is fine
	if _, err := shanhaitest.Do(httptest.NewRequest("GET", "/", nil)); err != nil {
		t.Fatal(err)
	}
}

// A writer kept past its event (say by a goroutine) must not write into a
// later event's response.
func TestHTTPWriterIsDeadAfterTheEvent(t *testing.T) {
	var kept http.ResponseWriter
	serve(t, func(w http.ResponseWriter, r *http.Request) { kept = w })
	if _, err := shanhaitest.Do(httptest.NewRequest("GET", "/", nil)); err != nil {
		t.Fatal(err)
	}
	var lateErr error
	shanhai.HandleHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, lateErr = kept.Write([]byte("stale"))
		io.WriteString(w, "fresh")
	}))
	resp, err := shanhaitest.Do(httptest.NewRequest("GET", "/", nil))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "fresh" || lateErr == nil {
		t.Errorf("body %q, late write error %v", body, lateErr)
	}
}

func TestHTTPMalformedURIIsBadRequest(t *testing.T) {
	called := false
	serve(t, func(w http.ResponseWriter, r *http.Request) { called = true })
	env := (&wire.HTTPRequest{Method: "GET", URI: "no-slash"}).Append(nil)
	status, out := shanhaitest.Dispatch(shanhaitest.KindHTTP, env)
	resp, err := wire.DecodeHTTPResponse(out)
	if status != shanhaitest.StatusOK || err != nil || resp.Status != 400 || called {
		t.Errorf("status %d, %v, response %d, handler called %v", status, err, resp.Status, called)
	}
}

func TestHTTPBadEnvelope(t *testing.T) {
	serve(t, func(w http.ResponseWriter, r *http.Request) {})
	status, out := shanhaitest.Dispatch(shanhaitest.KindHTTP, []byte{9, 0, 0, 0, 'G'})
	if status != shanhaitest.StatusError || string(out) != "bad request envelope: envelope truncated in method" {
		t.Errorf("status %d, %q", status, out)
	}
}

func TestUnknownEventKind(t *testing.T) {
	serve(t, func(w http.ResponseWriter, r *http.Request) {})
	// Kinds 3 and 4 depend on HandleWebSocket and HandleTimer;
	// dispatch_internal_test.go covers them without a handler.
	for _, kind := range []int32{0, 5, 99, -1} {
		if status, _ := shanhaitest.Dispatch(kind, nil); status != shanhaitest.StatusUnsupported {
			t.Errorf("kind %d: status %d, want unsupported", kind, status)
		}
	}
}
