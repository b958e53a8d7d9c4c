//go:build !wasm

package shanhai_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

func TestFetch(t *testing.T) {
	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{HTTP: []string{"api.example.com", "api.example.com:8080"}})
	var got *http.Request
	var gotBody string
	shanhaitest.HandleFetch(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"ok":true}`)
	}))

	req, _ := http.NewRequest("POST", "https://user:pw@api.example.com/v1/items?x=1#frag", strings.NewReader("payload"))
	req.Header.Set("X-Token", "t")
	resp, err := shanhai.HTTPClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 201 || resp.Status != "201 Created" || string(body) != `{"ok":true}` || resp.ContentLength != 11 {
		t.Errorf("response %d %q %q (length %d)", resp.StatusCode, resp.Status, body, resp.ContentLength)
	}
	if resp.Header.Get("Content-Type") != "application/json" || strings.Join(resp.Header.Values("X-Multi"), ",") != "a,b" {
		t.Errorf("response headers %v", resp.Header)
	}
	if got.Method != "POST" || got.URL.String() != "https://api.example.com/v1/items?x=1" || got.RequestURI != "/v1/items?x=1" ||
		got.Host != "api.example.com" || gotBody != "payload" {
		t.Errorf("the server got %s %s (%s, host %s) %q", got.Method, got.URL, got.RequestURI, got.Host, gotBody)
	}
	if user, pw, ok := got.BasicAuth(); !ok || user != "user" || pw != "pw" || got.Header.Get("X-Token") != "t" {
		t.Errorf("request headers %v", got.Header)
	}

	// The request's own Host wins over the URL's, as in net/http.
	req, _ = http.NewRequest("GET", "http://api.example.com:8080/", nil)
	req.Host = "virtual.example"
	if _, err := shanhai.HTTPClient.Do(req); err != nil || got.Host != "virtual.example" || got.URL.Host != "api.example.com:8080" {
		t.Errorf("host header: %v, %q %q", err, got.Host, got.URL.Host)
	}
}

func TestFetchGrants(t *testing.T) {
	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{HTTP: []string{"api.example.com", "127.0.0.1:8081", "*.trusted.org", "any.example:*", "[::1]"}})
	shanhaitest.HandleFetch(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for rawURL, allowed := range map[string]bool{
		"https://api.example.com/":      true,
		"http://API.example.com/":       true,
		"http://api.example.com:9999/":  false,
		"http://any.example:9999/":      true,
		"http://[::1]/":                 true,
		"http://[0:0::1]:443/":          true,
		"http://[::1]:8080/":            false,
		"http://127.0.0.1:8081/":        true,
		"http://127.0.0.1:8082/":        false,
		"http://127.0.0.1/":             false,
		"https://a.b.trusted.org/":      true,
		"https://trusted.org/":          false,
		"https://eviltrusted.org/":      false,
		"https://api.example.com.evil/": false,
	} {
		resp, err := shanhai.HTTPClient.Get(rawURL)
		if allowed && (err != nil || resp.StatusCode != 200) {
			t.Errorf("%s: %v", rawURL, err)
		}
		if !allowed && !errors.Is(err, shanhai.ErrDenied) {
			t.Errorf("%s: %v, want ErrDenied", rawURL, err)
		}
	}

	_, err := shanhai.HTTPClient.Get("http://127.0.0.1:8082/x")
	var ue *url.Error
	if !errors.As(err, &ue) || !strings.HasSuffix(err.Error(), "shanhai: http_fetch: denied: outbound HTTP to 127.0.0.1:8082 is not granted (grants.http)") {
		t.Errorf("message: %v", err)
	}
	if _, err := (shanhai.Transport{}).RoundTrip(&http.Request{Method: "GET", URL: &url.URL{Scheme: "ftp", Host: "api.example.com"}}); !errors.Is(err, shanhai.ErrInvalidArgument) {
		t.Errorf("ftp: %v", err)
	}
}

func TestFetchFailures(t *testing.T) {
	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{HTTP: []string{"down.example"}})
	if _, err := shanhai.HTTPClient.Get("http://down.example/"); !errors.Is(err, shanhai.ErrUnavailable) {
		t.Errorf("no responder: %v", err)
	}
	shanhaitest.HandleFetchFunc(func(*http.Request) (*http.Response, error) {
		return nil, errors.New("connection refused")
	})
	_, err := shanhai.HTTPClient.Get("http://down.example/")
	if !errors.Is(err, shanhai.ErrUnavailable) || !strings.HasSuffix(err.Error(), "unavailable: connection refused") {
		t.Errorf("connection refused: %v", err)
	}
	shanhaitest.HandleFetchFunc(func(*http.Request) (*http.Response, error) {
		return nil, &shanhai.HostError{Status: -4, Message: "response over 8 MiB"}
	})
	if _, err := shanhai.HTTPClient.Get("http://down.example/"); !errors.Is(err, shanhai.ErrTooLarge) {
		t.Errorf("too large: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://down.example/", nil)
	if _, err := shanhai.HTTPClient.Do(req); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// The client follows redirects, each one a fetch of its own.
func TestFetchRedirect(t *testing.T) {
	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{HTTP: []string{"a.example", "b.example"}})
	shanhaitest.HandleFetch(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host == "a.example" {
			http.Redirect(w, r, "http://b.example/there", http.StatusFound)
			return
		}
		io.WriteString(w, "arrived at "+r.URL.Path)
	}))
	resp, err := shanhai.HTTPClient.Get("http://a.example/here")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "arrived at /there" {
		t.Errorf("%q", body)
	}

	head, err := shanhai.HTTPClient.Head("http://b.example/x")
	if err != nil || head.ContentLength != 13 || head.Body != http.NoBody {
		t.Errorf("HEAD: %v, length %d", err, head.ContentLength)
	}
}
