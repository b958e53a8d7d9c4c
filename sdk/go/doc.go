// Package shanhai is the Go guest SDK for Shanhai, an edge-function gateway
// that runs WebAssembly modules built with the standard Go toolchain.
//
// A module is a WASI reactor: a main package that registers its handlers
// in init and has an empty main, built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o hello.wasm .
//
// For example:
//
//	package main
//
//	import (
//		"bytes"
//		"fmt"
//		"log/slog"
//		"net/http"
//
//		shanhai "github.com/shanhai-edge/shanhai/sdk/go"
//	)
//
//	func init() {
//		mux := http.NewServeMux()
//		mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
//			slog.Info("greeting", "request_id", shanhai.RequestID(r))
//			fmt.Fprintf(w, "Hello, %s\n", r.URL.Query().Get("name"))
//		})
//		shanhai.HandleHTTP(mux)
//		shanhai.Export("upper", func(in []byte) ([]byte, error) {
//			return bytes.ToUpper(in), nil
//		})
//	}
//
//	func main() {}
//
// Importing the package gives the module the exports the gateway looks for
// (shanhai_abi_version, shanhai_alloc, shanhai_event; //go:wasmexport works
// from any package since Go 1.24) and makes the SDK's [Logger] slog's
// default. The gateway calls _initialize once per instance, which runs the
// init functions, and then hands the instance one event at a time: an HTTP
// request for the handler given to [HandleHTTP], or a call of a byte
// function registered with [Export]. Host capabilities are plain functions
// returning errors, such as [Config]; a failed host call is a *[HostError]
// that matches [ErrNotFound] and its siblings under errors.Is.
// docs/abi.md in the Shanhai repository specifies the ABI underneath.
//
// # Concurrency
//
// A Go wasm module runs on a single thread. Goroutines exist, but they only
// make progress while an export is running and blocked (in time.Sleep, a
// channel receive, ...); nothing runs between events. So:
//
//   - do an event's work inside its handler: a goroutine started to finish
//     it later may never run, or run during some later, unrelated event;
//   - global variables persist across the events an instance handles (the
//     gateway reuses instances), but several instances of a module run side
//     by side and any of them may be discarded at any time (after a trap or
//     a timeout): keep durable or shared state in the host's stores, not in
//     globals;
//   - init functions run once per instance, so do expensive set-up there.
//
// Because events never overlap within an instance, the SDK reuses its
// buffers from one event to the next; that is why a request's body and a
// byte function's input are only valid until the handler returns.
//
// # Testing
//
// In a native build (`go test`) the host imports are replaced by an
// in-memory mock; package [github.com/shanhai-edge/shanhai/sdk/go/shanhaitest]
// drives a module's handlers through it.
package shanhai
