// Command native is the json2k benchmark's reference: a plain Go net/http
// server that serves the very same document as the json2k module, through
// the same handler, so that a load test can compare the module in the
// gateway with native Go:
//
//	go run ./native -listen 127.0.0.1:8091
//	wrk -t4 -c64 -d30s http://127.0.0.1:8091/json2k
package main

import (
	"flag"
	"log"
	"net/http"
	"time"

	"github.com/shanhai-edge/shanhai/examples/json2k/doc"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8091", "address to listen on")
	flag.Parse()
	srv := &http.Server{
		Addr:              *listen,
		Handler:           doc.Mux(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	log.Printf("json2k native server listening on http://%s/json2k", *listen)
	log.Fatal(srv.ListenAndServe())
}
