package doc

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

func TestDocument(t *testing.T) {
	rec := httptest.NewRecorder()
	Handle(rec, httptest.NewRequest("GET", "/json2k", nil))
	body := rec.Body.Bytes()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	// "About 2 KB" is the benchmark's promise; keep it honest.
	if len(body) < 1900 || len(body) > 2200 {
		t.Errorf("document is %d bytes, want about 2048", len(body))
	}
	var got Catalog
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, New()) || len(got.Items) != NumItems || got.Count != NumItems {
		t.Errorf("decoded document differs from New()")
	}
	if got.Items[0].Name != "edge-device-1000" || got.Items[19].ID != 20 {
		t.Errorf("unexpected items: %+v, %+v", got.Items[0], got.Items[19])
	}

	again := httptest.NewRecorder()
	Handle(again, httptest.NewRequest("GET", "/json2k", nil))
	if !bytes.Equal(body, again.Body.Bytes()) {
		t.Error("the document is not deterministic")
	}
}

func TestReadings(t *testing.T) {
	cases := []struct {
		body   string
		status int
		want   string
	}{
		{`{"device":"pump-7","readings":[20.5,19.5,21,23]}`, 200, `{"device":"pump-7","count":4,"min":19.5,"max":23,"mean":21}` + "\n"},
		{`{"device":"pump-7","readings":[]}`, 400, "bad batch: no readings\n"},
		{`{"device":`, 400, "bad batch: unexpected EOF\n"},
		{`{"device":"x","readings":[` + strings.Repeat("1,", MaxReadingsBody/2) + `1]}`, 400, "bad batch: http: request body too large\n"},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		Mux().ServeHTTP(rec, httptest.NewRequest("POST", ReadingsPath, strings.NewReader(c.body)))
		if rec.Code != c.status || rec.Body.String() != c.want {
			t.Errorf("%.40q: %d %q, want %d %q", c.body, rec.Code, rec.Body, c.status, c.want)
		}
	}
}

func TestTextAndRouting(t *testing.T) {
	rec := httptest.NewRecorder()
	Mux().ServeHTTP(rec, httptest.NewRequest("GET", TextPath, nil))
	if rec.Code != 200 || rec.Body.String() != "ok\n" {
		t.Errorf("text: %d %q", rec.Code, rec.Body)
	}
	// Any other path answers the document, wherever the module is mounted.
	rec = httptest.NewRecorder()
	Mux().ServeHTTP(rec, httptest.NewRequest("GET", "/elsewhere", nil))
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("other path: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
}
