// Package doc builds the json2k benchmark document: a deterministic JSON
// object of about 2 KB, encoded with encoding/json on every request. The
// wasm module (package main) and the native reference server
// (json2k/native) serve it through the same handler, so a benchmark
// compares the runtimes, not the code.
package doc

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Catalog is the document.
type Catalog struct {
	Site    string `json:"site"`
	Version int    `json:"version"`
	Updated string `json:"updated"`
	Count   int    `json:"count"`
	Items   []Item `json:"items"`
}

// Item is one entry of the catalog.
type Item struct {
	ID      int      `json:"id"`
	Name    string   `json:"name"`
	Price   float64  `json:"price"`
	InStock bool     `json:"in_stock"`
	Zone    string   `json:"zone"`
	Tags    []string `json:"tags"`
}

// NumItems is how many items the document lists.
const NumItems = 20

var tags = [][]string{{"edge", "iot"}, {"gateway"}, {"sensor", "modbus"}, {"mqtt", "edge"}}

// New builds the document. Its content is fixed: no clock, no randomness.
func New() Catalog {
	c := Catalog{
		Site:    "shanhai-edge-demo",
		Version: 1,
		Updated: "2025-01-01T00:00:00Z",
		Count:   NumItems,
		Items:   make([]Item, NumItems),
	}
	for i := range c.Items {
		c.Items[i] = Item{
			ID:      i + 1,
			Name:    "edge-device-" + strconv.Itoa(1000+i),
			Price:   float64(i*37%100) + 0.99,
			InStock: i%3 != 0,
			Zone:    string(rune('A'+i%4)) + strconv.Itoa(1+i%5),
			Tags:    tags[i%len(tags)],
		}
	}
	return c
}

// Handle answers any request with the document, built and encoded afresh
// each time, as the benchmark asks.
func Handle(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(New()); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}
