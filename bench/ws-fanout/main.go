// Command ws-fanout is the broadcast fixture of the WebSocket benchmarks
// (scripts/bench-ws.sh, `bench-wsload fanout`): every connection joins the
// room "all" when it opens, and a text message "fanout:<payload>" sends
// <payload> to every member of the room, the sender included. Other
// messages are ignored.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o ws-fanout.wasm .
// Served at ws://HOST/ws-fanout/ws.
package main

import (
	"bytes"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
)

const room = "all"

var prefix = []byte("fanout:")

func init() {
	shanhai.HandleWebSocket(shanhai.WebSocketHandler{
		OnOpen: func(c *shanhai.WSConn) ([]byte, error) {
			return nil, c.Join(room)
		},
		OnMessage: func(_ *shanhai.WSConn, m shanhai.WSMessage) ([]byte, error) {
			payload, ok := bytes.CutPrefix(m.Data, prefix)
			if !m.Text || !ok {
				return nil, nil
			}
			// m.Data is only valid during the event; Broadcast copies it.
			_, err := shanhai.Broadcast(room, shanhai.WSMessage{Text: true, Data: payload}, 0)
			return nil, err
		},
	})
}

func main() {}
