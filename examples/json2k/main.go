// Command json2k is the benchmark module: GET /json2k answers a ~2 KB JSON
// document built and encoded with encoding/json (the seeds quote 4,200 QPS
// for this case), GET /json2k/text a line of text, and POST
// /json2k/readings decodes a JSON batch and answers its summary. The
// gateway mounts it at /json2k; json2k/native serves the same handlers
// from a plain Go server, for comparison.
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o json2k.wasm .
package main

import (
	"github.com/shanhai-edge/shanhai/examples/json2k/doc"
	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
)

// init registers the benchmark's mux, the one the native server uses.
func init() {
	shanhai.HandleHTTP(doc.Mux())
}

// main is empty: the gateway calls the module's exports, not main.
func main() {}
