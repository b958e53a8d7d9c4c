package shanhai

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/shanhai-edge/shanhai/sdk/go/internal/hostcall"
	"github.com/shanhai-edge/shanhai/sdk/go/internal/wire"
)

// Transport is an [http.RoundTripper] that sends requests through the
// host (the http_fetch import): a module has no sockets of its own, so
// this is how it calls other services. Use it through [HTTPClient], or
// in any [http.Client]:
//
//	client := &http.Client{Transport: shanhai.Transport{}, Timeout: 5 * time.Second}
//
// The host only reaches the hosts of the module's http grant: "host"
// (ports 80 and 443), "host:port", "host:*" (any port), or "*.domain" (any
// subdomain) with any of those port forms. A name never leads to a
// loopback, private or link-local address; only an entry naming the
// address itself ("127.0.0.1:8081") does:
//
//	[modules.weather.grants]
//	http = ["api.weather.example", "127.0.0.1:8081", "*.internal.example"]
//
// A request to another host fails with [ErrDenied]; a malformed URL with
// [ErrInvalidArgument]; a connection that fails or times out with
// [ErrUnavailable]; a response beyond the host's limit with
// [ErrTooLarge]. http.Client wraps them in a *url.Error, which
// errors.Is sees through. The request's body is read whole before it is
// sent and the response arrives whole: nothing is streamed. Within one
// call the request cannot be cancelled; a context that is already done
// stops it before it is sent.
type Transport struct{}

// HTTPClient is an [http.Client] over [Transport]: the http.Get of a
// module.
//
//	resp, err := shanhai.HTTPClient.Get("https://api.weather.example/today")
//	if err != nil {
//		return err
//	}
//	defer resp.Body.Close()
var HTTPClient = &http.Client{Transport: Transport{}}

// RoundTrip sends req through the host and returns its response; see
// [Transport]. The response's headers are canonicalised as in net/http
// and its body is in memory. Like every RoundTripper it closes the
// request's body, also on errors, and does not follow redirects (an
// http.Client does).
func (Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	if req.URL == nil {
		return nil, errors.New("shanhai: http_fetch: request has no URL")
	}
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
	}
	env := fetchRequest(req, body)
	n, err := clearingResult("http_fetch", hostcall.HTTPFetch(env.Append(nil)))
	if err != nil {
		return nil, err
	}
	b, err := readStaged("http_fetch", n)
	if err != nil {
		return nil, err
	}
	resp, err := wire.DecodeHTTPResponse(b)
	if err != nil {
		return nil, &HostError{Func: "http_fetch", Status: hostcall.StatusInternal, Message: "malformed response: " + err.Error()}
	}
	return fetchResponse(req, resp), nil
}

// fetchRequest builds the HttpRequest envelope for req. Like
// net/http's Transport it drops the URL's fragment, turns user
// information into basic authentication, and sends req.Host as the host
// header when it differs from the URL's.
func fetchRequest(req *http.Request, body []byte) wire.HTTPRequest {
	u := *req.URL
	u.Fragment, u.RawFragment = "", ""
	header := req.Header
	if u.User != nil {
		if header.Get("Authorization") == "" {
			password, _ := u.User.Password()
			header = header.Clone()
			if header == nil {
				header = http.Header{}
			}
			cred := u.User.Username() + ":" + password
			header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(cred)))
		}
		u.User = nil
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	var headers []wire.Header
	if req.Host != "" && req.Host != u.Host {
		headers = append(headers, wire.Header{Name: "host", Value: req.Host})
	}
	// Sorted, so that one request always gives the same envelope.
	for _, name := range slices.Sorted(maps.Keys(header)) {
		if strings.EqualFold(name, "Host") {
			continue
		}
		for _, v := range header[name] {
			headers = append(headers, wire.Header{Name: strings.ToLower(name), Value: v})
		}
	}
	return wire.HTTPRequest{Method: method, URI: u.String(), Headers: headers, Body: body}
}

func fetchResponse(req *http.Request, r wire.HTTPResponse) *http.Response {
	header := make(http.Header, len(r.Headers))
	for _, h := range r.Headers {
		header.Add(h.Name, h.Value)
	}
	resp := &http.Response{
		Status:        strings.TrimSpace(strconv.Itoa(int(r.Status)) + " " + http.StatusText(int(r.Status))),
		StatusCode:    int(r.Status),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        header,
		Body:          io.NopCloser(bytes.NewReader(r.Body)),
		ContentLength: int64(len(r.Body)),
		Request:       req,
	}
	if len(r.Body) == 0 {
		resp.Body = http.NoBody
		// A HEAD response has no body but may say how long one would be.
		if req.Method == http.MethodHead {
			if n, err := strconv.ParseInt(header.Get("Content-Length"), 10, 64); err == nil && n >= 0 {
				resp.ContentLength = n
			} else {
				resp.ContentLength = -1
			}
		}
	}
	return resp
}
