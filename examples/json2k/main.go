// Command json2k is the benchmark module: every request gets a ~2 KB JSON
// document built and encoded with encoding/json (the seeds quote 4,200 QPS
// for this case). The gateway mounts it at /json2k; json2k/native serves
// the same document from a plain Go server, for comparison.
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o json2k.wasm .
package main

import (
	"net/http"

	"github.com/shanhai-edge/shanhai/examples/json2k/doc"
	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
)

// init registers the handler directly, without a router: a benchmark
// module should measure the runtime, and every path it is sent answers
// the document.
func init() {
	shanhai.HandleHTTP(http.HandlerFunc(doc.Handle))
}

// main is empty: the gateway calls the module's exports, not main.
func main() {}
