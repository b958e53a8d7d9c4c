// Command ws-echo sends every WebSocket message back to its sender, as
// text or binary like it came, empty ones included (m.Data of an empty
// message is an empty non-nil slice, which the SDK sends as an empty
// message; only a nil reply sends nothing). It is the module the WebSocket benchmarks
// (scripts/bench-ws.sh) drive.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o ws-echo.wasm .
// Served at ws://HOST/ws-echo/ws.
package main

import shanhai "github.com/shanhai-edge/shanhai/sdk/go"

func init() {
	shanhai.HandleWebSocket(shanhai.WebSocketHandler{
		OnMessage: func(_ *shanhai.WSConn, m shanhai.WSMessage) ([]byte, error) {
			return m.Data, nil
		},
	})
}

func main() {}
