// Package doc holds the json2k benchmark's handlers: a deterministic JSON
// document of about 2 KB encoded with encoding/json on every request, a
// tiny text reply, and a POSTed JSON body decoded and summarised. The wasm
// module (package main) and the native reference server (json2k/native)
// serve them through the same [Mux], so a benchmark compares the runtimes,
// not the code.
package doc

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
)

// Paths the benchmark loads, under the module's default mount.
const (
	DocumentPath = "/json2k"
	TextPath     = "/json2k/text"
	ReadingsPath = "/json2k/readings"
)

// MaxReadingsBody bounds a POSTed body: a handler that reads what it is
// sent must say how much.
const MaxReadingsBody = 64 << 10

// Mux routes the three benchmark paths; every other path gets the
// document, so the module answers wherever it is mounted.
func Mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/", Handle)
	mux.HandleFunc("GET "+TextPath, Text)
	mux.HandleFunc("POST "+ReadingsPath, Readings)
	return mux
}

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

// Text answers the smallest useful reply: a fixed line of text.
func Text(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}

// Batch is the POSTed body: one device's readings.
type Batch struct {
	Device   string    `json:"device"`
	Readings []float64 `json:"readings"`
}

// Summary is the reply to a [Batch].
type Summary struct {
	Device string  `json:"device"`
	Count  int     `json:"count"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Mean   float64 `json:"mean"`
}

// Readings decodes a [Batch] and answers its [Summary]; a body that is
// not one gets 400.
func Readings(w http.ResponseWriter, r *http.Request) {
	var batch Batch
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxReadingsBody)).Decode(&batch); err != nil {
		http.Error(w, "bad batch: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(batch.Readings) == 0 {
		http.Error(w, "bad batch: no readings", http.StatusBadRequest)
		return
	}
	sum := Summary{Device: batch.Device, Count: len(batch.Readings), Min: batch.Readings[0], Max: batch.Readings[0]}
	total := 0.0
	for _, v := range batch.Readings {
		sum.Min = min(sum.Min, v)
		sum.Max = max(sum.Max, v)
		total += v
	}
	sum.Mean = total / float64(len(batch.Readings))
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(sum)
}
