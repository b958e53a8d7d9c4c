package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// cgi runs the program with a CGI environment and a body, the way the
// gateway's command runner does.
func cgi(t *testing.T, env map[string]string, body string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	environ := func() []string {
		var kvs []string
		for k, v := range env {
			kvs = append(kvs, k+"="+v)
		}
		sort.Strings(kvs)
		return kvs
	}
	code = run(func(k string) string { return env[k] }, environ, strings.NewReader(body), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestEcho(t *testing.T) {
	code, stdout, stderr := cgi(t, map[string]string{
		"REQUEST_METHOD": "POST",
		"PATH_INFO":      "/sub/path",
		"QUERY_STRING":   "a=1&b=%20two",
		"CONTENT_TYPE":   "text/plain",
		"HTTP_X_TEST":    "header value",
	}, "hello\nbody")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	head, body, ok := strings.Cut(stdout, "\n\n")
	if !ok || head != "Status: 200 OK\nContent-Type: application/json" {
		t.Fatalf("CGI headers: %q", stdout)
	}
	var got reply
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	want := reply{
		Method: "POST", PathInfo: "/sub/path", Query: "a=1&b=%20two",
		ContentType: "text/plain", Body: "hello\nbody", XTest: "header value",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestHeadersOnRequest(t *testing.T) {
	_, stdout, _ := cgi(t, map[string]string{
		"QUERY_STRING":         "env=1",
		"HTTP_X_FORWARDED_FOR": "10.0.0.1",
		"HTTP_HOST":            "example",
		"REQUEST_METHOD":       "GET",
	}, "")
	_, body, _ := strings.Cut(stdout, "\n\n")
	var got reply
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	want := []string{"HTTP_HOST=example", "HTTP_X_FORWARDED_FOR=10.0.0.1"}
	if !reflect.DeepEqual(got.Headers, want) {
		t.Errorf("headers %q, want %q", got.Headers, want)
	}
	// Without env=1, no headers list.
	if _, stdout, _ := cgi(t, map[string]string{"HTTP_HOST": "example"}, ""); strings.Contains(stdout, "headers") {
		t.Errorf("headers listed without env=1: %q", stdout)
	}
}

func TestStatus404(t *testing.T) {
	code, stdout, _ := cgi(t, map[string]string{"REQUEST_METHOD": "GET", "QUERY_STRING": "x=1&status=404"}, "")
	if code != 0 || !strings.HasPrefix(stdout, "Status: 404 Not Found\n") {
		t.Errorf("exit %d, %q", code, stdout)
	}
	// Only the status=404 pair steers it, not a lookalike.
	if _, stdout, _ := cgi(t, map[string]string{"QUERY_STRING": "xstatus=4040"}, ""); !strings.HasPrefix(stdout, "Status: 200 OK\n") {
		t.Errorf("lookalike query: %q", stdout)
	}
}

func TestExit3(t *testing.T) {
	code, stdout, stderr := cgi(t, map[string]string{"QUERY_STRING": "exit=3"}, "ignored")
	if code != 3 || stdout != "" || stderr == "" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
