//go:build !wasm

package shanhai

import "github.com/shanhai-edge/shanhai/sdk/go/internal/hostcall"

// In a native build the mock host (package shanhaitest) delivers events
// straight to the dispatcher that the wasm build exports as shanhai_event.
func init() {
	hostcall.SetDispatcher(handleEvent)
}
