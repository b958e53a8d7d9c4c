package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/shanhai-edge/shanhai/examples/json2k/doc"
)

func TestServesTheDocument(t *testing.T) {
	srv := httptest.NewServer(newMux())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/json2k")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)

	want := httptest.NewRecorder()
	doc.Handle(want, httptest.NewRequest("GET", "/json2k", nil))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || string(body) != want.Body.String() {
		t.Errorf("%d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}

	other, err := http.Get(srv.URL + "/other")
	if err != nil {
		t.Fatal(err)
	}
	other.Body.Close()
	if other.StatusCode != 404 {
		t.Errorf("GET /other: %d", other.StatusCode)
	}
}
