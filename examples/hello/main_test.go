//go:build !wasm

// The tests run natively, against shanhaitest's mock host.

package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

// do serves one request through the module the way the gateway does and
// returns the status, content type and body.
func do(t *testing.T, r *http.Request) (int, string, string) {
	t.Helper()
	resp, err := shanhaitest.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}

func TestGreet(t *testing.T) {
	shanhaitest.Reset()
	for _, tc := range []struct{ target, want string }{
		{"/hello", "Hello, world"},
		{"/hello?name=edge", "Hello, edge"},
		{"/hello?name=%E5%B1%B1%E6%B5%B7", "Hello, 山海"},
	} {
		status, ctype, body := do(t, httptest.NewRequest("GET", tc.target, nil))
		if status != 200 || ctype != "text/plain; charset=utf-8" || body != tc.want {
			t.Errorf("GET %s: %d %q %q, want 200 %q", tc.target, status, ctype, body, tc.want)
		}
	}
	logs := shanhaitest.Logs()
	if len(logs) != 3 || logs[0].Level != 2 || logs[0].Text != "greeting name=world" {
		t.Errorf("logs: %+v", logs)
	}
}

func TestGreetingFromConfig(t *testing.T) {
	shanhaitest.Reset()
	shanhaitest.SetConfig("greeting", "你好")
	if _, _, body := do(t, httptest.NewRequest("GET", "/hello?name=edge", nil)); body != "你好, edge" {
		t.Errorf("got %q", body)
	}
}

func TestGreetOnlyAnswersGet(t *testing.T) {
	shanhaitest.Reset()
	if status, _, _ := do(t, httptest.NewRequest("POST", "/hello", nil)); status != http.StatusMethodNotAllowed {
		t.Errorf("POST /hello: %d", status)
	}
	if status, _, _ := do(t, httptest.NewRequest("GET", "/elsewhere", nil)); status != http.StatusNotFound {
		t.Errorf("GET /elsewhere: %d", status)
	}
}

func TestEcho(t *testing.T) {
	shanhaitest.Reset()
	r := httptest.NewRequest("PUT", "/hello/echo?a=1&b=two", strings.NewReader(`{"x":1}`))
	r.Header.Set("User-Agent", "shanhai-test/1")
	r.Header.Set("X-Request-Id", "req-7")
	status, ctype, body := do(t, r)
	if status != 200 || ctype != "application/json" {
		t.Fatalf("%d %q", status, ctype)
	}
	var got echoReply
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	want := echoReply{
		Method: "PUT", Path: "/hello/echo", Query: "a=1&b=two",
		UserAgent: "shanhai-test/1", Body: `{"x":1}`, RequestID: "req-7",
	}
	if got != want {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestUpper(t *testing.T) {
	out, err := shanhaitest.Call("upper", []byte("hello, edge"))
	if err != nil || string(out) != "HELLO, EDGE" {
		t.Errorf("upper: %q, %v", out, err)
	}
	_, err = shanhaitest.Call("lower", nil)
	var ee *shanhaitest.EventError
	if !errors.As(err, &ee) || ee.Status != shanhaitest.StatusNotFound {
		t.Errorf("unknown function: %v", err)
	}
}
