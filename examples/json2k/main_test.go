//go:build !wasm

// The tests run natively, against shanhaitest's mock host.

package main

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shanhai-edge/shanhai/examples/json2k/doc"
	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

// The module must answer exactly what a native net/http server answers.
func TestServesTheDocument(t *testing.T) {
	want := httptest.NewRecorder()
	doc.Handle(want, httptest.NewRequest("GET", "/json2k", nil))

	resp, err := shanhaitest.Do(httptest.NewRequest("GET", "/json2k", nil))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("%d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if string(body) != want.Body.String() {
		t.Errorf("body differs from the native handler's:\n%s\nwant\n%s", body, want.Body)
	}
}

// The small handlers answer through the module as they do natively.
func TestServesTextAndReadings(t *testing.T) {
	resp, err := shanhaitest.Do(httptest.NewRequest("GET", doc.TextPath, nil))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Errorf("text: %d %q", resp.StatusCode, body)
	}
	resp, err = shanhaitest.Do(httptest.NewRequest("POST", doc.ReadingsPath, strings.NewReader(`{"device":"d","readings":[2,4]}`)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != `{"device":"d","count":2,"min":2,"max":4,"mean":3}`+"\n" {
		t.Errorf("readings: %d %q", resp.StatusCode, body)
	}
}

func BenchmarkEvent(b *testing.B) {
	env, err := shanhaitest.Encode(httptest.NewRequest("GET", "/json2k", nil))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if status, _ := shanhaitest.Dispatch(shanhaitest.KindHTTP, env); status != shanhaitest.StatusOK {
			b.Fatal(status)
		}
	}
}
