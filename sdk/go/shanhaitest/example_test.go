//go:build !wasm

package shanhaitest_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http/httptest"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

// A WebSocket handler driven through the mock host: two clients in one
// room, a message from one broadcast to the other.
func ExampleConnect() {
	// Usually in the module's init.
	shanhai.HandleWebSocket(shanhai.WebSocketHandler{
		OnOpen: func(c *shanhai.WSConn) ([]byte, error) {
			return []byte("welcome"), c.Join("lobby")
		},
		OnMessage: func(c *shanhai.WSConn, m shanhai.WSMessage) ([]byte, error) {
			n, err := shanhai.Broadcast("lobby", m, c.ID)
			return fmt.Appendf(nil, "sent to %d", n), err
		},
	})

	shanhaitest.Reset()
	alice, _ := shanhaitest.Connect(httptest.NewRequest("GET", "/chat", nil))
	bob, _ := shanhaitest.Connect(httptest.NewRequest("GET", "/chat", nil))
	reply, _ := alice.SendText("hello")
	fmt.Printf("reply: %s\n", reply)
	for _, m := range bob.Received() {
		fmt.Printf("bob got: %s\n", m.Data)
	}
	fmt.Println("lobby:", len(shanhaitest.RoomMembers("lobby")), "members")
	_ = bob.Close(1000, "bye")
	fmt.Println("lobby:", len(shanhaitest.RoomMembers("lobby")), "member")
	// Output:
	// reply: sent to 1
	// bob got: welcome
	// bob got: hello
	// lobby: 2 members
	// lobby: 1 member
}

// A timer handler driven through the mock host: one run that works and one
// that fails.
func ExampleFireTimer() {
	// Usually in the module's init.
	shanhai.HandleTimer(func(t shanhai.Timer) error {
		if len(t.Payload) == 0 {
			return errors.New("nothing to do")
		}
		fmt.Printf("run %d of %s: %s\n", t.Run, t.Name, t.Payload)
		return nil
	})

	shanhaitest.Reset()
	err := shanhaitest.FireTimer(shanhai.Timer{Name: "cleanup", Payload: []byte("tmp/")})
	fmt.Println("error:", err)
	err = shanhaitest.FireTimer(shanhai.Timer{Name: "cleanup", Run: 2})
	fmt.Println("error:", err)
	// Output:
	// run 1 of cleanup: tmp/
	// error: <nil>
	// error: guest answered error: nothing to do
}

// A TCP handler driven through the mock host: a line protocol whose
// listener cuts frames at newlines, with a greeting on open.
func ExampleConnectTCP() {
	// Usually in the module's init.
	shanhai.HandleTCP(shanhai.TCPHandler{
		OnOpen: func(c *shanhai.TCPConn) ([]byte, error) {
			return []byte("hello " + c.RemoteAddr), nil
		},
		OnFrame: func(_ *shanhai.TCPConn, frame []byte) ([]byte, error) {
			if string(frame) == "quit" {
				return nil, errors.New("bye")
			}
			return bytes.ToUpper(frame), nil
		},
		OnClose: func(c *shanhai.TCPConn) { fmt.Println("closed", c.Listener) },
	})

	shanhaitest.Reset()
	c, _ := shanhaitest.ConnectTCP("lines", "198.51.100.7:40000")
	reply, _ := c.Send([]byte("ping"))
	fmt.Printf("reply: %s\n", reply)
	_, err := c.Send([]byte("quit")) // the gateway closes the connection
	fmt.Println("error:", err, "closed:", c.Closed())
	fmt.Printf("received: %q\n", c.Received())
	// Output:
	// reply: PING
	// closed lines
	// error: guest answered error: bye closed: true
	// received: ["hello 198.51.100.7:40000" "PING"]
}
