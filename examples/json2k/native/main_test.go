package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shanhai-edge/shanhai/examples/json2k/doc"
)

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestServesTheBenchmarkPaths(t *testing.T) {
	srv := httptest.NewServer(doc.Mux())
	defer srv.Close()

	resp, body := get(t, srv.URL+doc.DocumentPath)
	want := httptest.NewRecorder()
	doc.Handle(want, httptest.NewRequest("GET", doc.DocumentPath, nil))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || body != want.Body.String() {
		t.Errorf("document: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}

	if resp, body := get(t, srv.URL+doc.TextPath); resp.StatusCode != 200 || body != "ok\n" {
		t.Errorf("text: %d %q", resp.StatusCode, body)
	}

	post, err := http.Post(srv.URL+doc.ReadingsPath, "application/json", strings.NewReader(`{"device":"d1","readings":[1,2,6]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer post.Body.Close()
	summary, _ := io.ReadAll(post.Body)
	if post.StatusCode != 200 || string(summary) != `{"device":"d1","count":3,"min":1,"max":6,"mean":3}`+"\n" {
		t.Errorf("readings: %d %q", post.StatusCode, summary)
	}
}
