// Command cgi-echo is a Shanhai command module: an ordinary WASI program,
// no SDK, run once per request CGI-style (docs/abi.md, "Command modules").
// It answers a JSON object describing the request it was given:
//
//	{"method":"POST","path_info":"/x","query":"a=1","content_type":"text/plain","body":"hi","x_test":"..."}
//
// where x_test is the request's X-Test header. The query can steer it:
// status=404 answers 404 Not Found, exit=3 writes to stderr and exits
// with status 3 (which the gateway reports as a 500 guest_error), and
// env=1 adds "headers": every HTTP_* variable of its environment, as
// NAME=value in environment order (what a CGI program can see of the
// request's headers).
//
// Build (a plain command, not c-shared):
//
//	GOOS=wasip1 GOARCH=wasm go build -o cgi-echo.wasm .
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
)

func main() {
	os.Exit(run(os.Getenv, os.Environ, os.Stdin, os.Stdout, os.Stderr))
}

// reply is the JSON object cgi-echo answers.
type reply struct {
	Method      string `json:"method"`
	PathInfo    string `json:"path_info"`
	Query       string `json:"query"`
	ContentType string `json:"content_type"`
	Body        string `json:"body"`
	XTest       string `json:"x_test"`
	// Headers is set when the query has env=1.
	Headers []string `json:"headers,omitempty"`
}

// run is the program, with its environment and streams passed in so that
// it can be tested natively; it returns the exit status.
func run(getenv func(string) string, environ func() []string, stdin io.Reader, stdout, stderr io.Writer) int {
	rawQuery := getenv("QUERY_STRING")
	// A malformed query still yields the pairs that parsed; that is all
	// the steering below needs.
	query, _ := url.ParseQuery(rawQuery)
	if query.Get("exit") == "3" {
		fmt.Fprintln(stderr, "cgi-echo: exiting with status 3, as the query asked")
		return 3
	}
	body, err := io.ReadAll(stdin)
	if err != nil {
		fmt.Fprintln(stderr, "cgi-echo: reading the body:", err)
		return 1
	}
	status := "200 OK"
	if query.Get("status") == "404" {
		status = "404 Not Found"
	}
	echo := reply{
		Method:      getenv("REQUEST_METHOD"),
		PathInfo:    getenv("PATH_INFO"),
		Query:       rawQuery,
		ContentType: getenv("CONTENT_TYPE"),
		Body:        string(body),
		XTest:       getenv("HTTP_X_TEST"),
	}
	if query.Get("env") == "1" {
		for _, kv := range environ() {
			if strings.HasPrefix(kv, "HTTP_") {
				echo.Headers = append(echo.Headers, kv)
			}
		}
	}
	out, err := json.Marshal(echo)
	if err != nil {
		fmt.Fprintln(stderr, "cgi-echo:", err)
		return 1
	}
	// CGI headers, a blank line, then the body.
	fmt.Fprintf(stdout, "Status: %s\nContent-Type: application/json\n\n%s\n", status, out)
	return 0
}
