// Command guest is the smallest SDK reactor, built by the SDK's tests to
// check the shape of the module the Go toolchain produces.
package main

import (
	"io"
	"net/http"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
)

func init() {
	shanhai.HandleHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
}

func main() {}
