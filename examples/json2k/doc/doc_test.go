package doc

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"reflect"
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
