//go:build !wasm

package shanhai_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"time"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

// A reactor module registers its handlers in init (the first part of this
// example) and has an empty func main(). The rest drives them through the
// mock host, as the module's own tests would.
func Example() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		slog.Info("greeting", "request_id", shanhai.RequestID(r))
		fmt.Fprintf(w, "Hello, %s\n", r.URL.Query().Get("name"))
	})
	shanhai.HandleHTTP(mux)
	shanhai.Export("upper", func(in []byte) ([]byte, error) {
		return bytes.ToUpper(in), nil
	})

	shanhaitest.Reset()
	r := httptest.NewRequest("GET", "/hello?name=edge", nil)
	r.Header.Set("X-Request-Id", "r-1")
	resp, _ := shanhaitest.Do(r)
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("%d %s", resp.StatusCode, body)
	fmt.Println("log:", shanhaitest.Logs()[0].Text)
	out, _ := shanhaitest.Call("upper", []byte("abc"))
	fmt.Printf("upper: %s\n", out)
	// Output:
	// 200 Hello, edge
	// log: greeting request_id=r-1
	// upper: ABC
}

func ExampleConfig() {
	greeting := func() string {
		greeting, err := shanhai.Config("greeting")
		if errors.Is(err, shanhai.ErrNotFound) {
			greeting = "Hello"
		} else if err != nil {
			slog.Error("reading config", "err", err)
		}
		return greeting
	}

	shanhaitest.Reset()
	shanhaitest.SetConfig("greeting", "Nǐ hǎo")
	fmt.Println(greeting())
	shanhaitest.UnsetConfig("greeting")
	fmt.Println(greeting())
	// Output:
	// Nǐ hǎo
	// Hello
}

func ExampleExport() {
	shanhai.Export("length", func(in []byte) ([]byte, error) {
		if len(in) == 0 {
			return nil, errors.New("empty input")
		}
		return fmt.Appendf(nil, "%d", len(in)), nil
	})

	// POST /api/exec/MODULE/length with a body of "hello", then an empty one.
	out, err := shanhaitest.Call("length", []byte("hello"))
	fmt.Printf("%s %v\n", out, err)
	_, err = shanhaitest.Call("length", nil)
	fmt.Println(err)
	// Output:
	// 5 <nil>
	// guest answered error: empty input
}

// A chat: each connection joins the room named in its URL, and every
// message goes to the others in the room.
func ExampleHandleWebSocket() {
	room := func(c *shanhai.WSConn) string {
		u, err := url.Parse(c.URI)
		if err != nil || u.Query().Get("room") == "" {
			return "lobby"
		}
		return u.Query().Get("room")
	}
	shanhai.HandleWebSocket(shanhai.WebSocketHandler{
		OnOpen: func(c *shanhai.WSConn) ([]byte, error) {
			if c.Header.Get("Sec-WebSocket-Protocol") == "" {
				return nil, errors.New("a subprotocol is required")
			}
			return []byte("welcome to " + room(c)), c.Join(room(c))
		},
		OnMessage: func(c *shanhai.WSConn, m shanhai.WSMessage) ([]byte, error) {
			n, err := shanhai.Broadcast(room(c), m, c.ID)
			if err != nil {
				return nil, err
			}
			return fmt.Appendf(nil, "delivered to %d", n), nil
		},
		OnClose: func(c *shanhai.WSConn, code int, reason string) {
			slog.Info("left", "code", code, "reason", reason)
		},
	})

	shanhaitest.Reset()
	join := func(uri string) *shanhaitest.WSClient {
		r := httptest.NewRequest("GET", uri, nil)
		r.Header.Set("Sec-WebSocket-Protocol", "chat")
		c, _ := shanhaitest.Connect(r)
		return c
	}
	alice, bob := join("/chat?room=tea"), join("/chat?room=tea")
	_, err := shanhaitest.Connect(httptest.NewRequest("GET", "/chat", nil))
	fmt.Println("without a subprotocol:", err)
	reply, _ := alice.SendText("hi")
	fmt.Printf("alice: %s\n", reply)
	for _, m := range bob.Received() {
		fmt.Printf("bob got: %s\n", m.Data)
	}
	_ = bob.Close(1000, "bye")
	fmt.Println("log:", shanhaitest.Logs()[0].Text)
	// Output:
	// without a subprotocol: guest answered error: a subprotocol is required
	// alice: delivered to 1
	// bob got: welcome to tea
	// bob got: hi
	// log: left code=1000 reason=bye
}

// A periodic job: every timer that targets the module runs this handler;
// the timer's name and payload (from the gateway's [timers.NAME] config)
// say what to do. An error fails the run, which the gateway logs and
// counts.
func ExampleHandleTimer() {
	shanhai.HandleTimer(func(t shanhai.Timer) error {
		switch t.Name {
		case "heartbeat":
			_, err := shanhai.Broadcast("lobby", shanhai.WSMessage{Text: true, Data: []byte("tick")}, 0)
			return err
		case "report":
			if t.Skipped > 0 {
				slog.Warn("report runs skipped", "skipped", t.Skipped)
			}
			slog.Info("report", "run", t.Run, "due", t.Scheduled.UTC(), "query", string(t.Payload))
			return nil
		default:
			return fmt.Errorf("unknown timer %q", t.Name)
		}
	})

	shanhaitest.Reset()
	due := time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC)
	fmt.Println(shanhaitest.FireTimer(shanhai.Timer{Name: "heartbeat"}))
	fmt.Println(shanhaitest.FireTimer(shanhai.Timer{Name: "report", Run: 7, Skipped: 2, Scheduled: due, Payload: []byte("daily")}))
	fmt.Println(shanhaitest.FireTimer(shanhai.Timer{Name: "cleanup"}))
	for _, b := range shanhaitest.Broadcasts() {
		fmt.Printf("broadcast to %s: %s\n", b.Room, b.Message.Data)
	}
	for _, l := range shanhaitest.Logs() {
		fmt.Println("log:", l.Text)
	}
	// Output:
	// <nil>
	// <nil>
	// guest answered error: unknown timer "cleanup"
	// broadcast to lobby: tick
	// log: report runs skipped skipped=2
	// log: report run=7 due=2026-03-01T06:00:00.000Z query=daily
}

// A line-based TCP service: the listener ([tcp.NAME] with framing =
// "delimiter") cuts the stream at newlines, and each reply goes back
// followed by one. An error closes the connection.
func ExampleHandleTCP() {
	shanhai.HandleTCP(shanhai.TCPHandler{
		OnOpen: func(c *shanhai.TCPConn) ([]byte, error) {
			slog.Info("connected", "listener", c.Listener, "from", c.RemoteAddr)
			return []byte("ready"), nil
		},
		OnFrame: func(_ *shanhai.TCPConn, frame []byte) ([]byte, error) {
			switch cmd := string(frame); cmd {
			case "ping":
				return []byte("pong"), nil
			case "quit":
				return nil, errors.New("client quit")
			default:
				return nil, fmt.Errorf("unknown command %q", cmd)
			}
		},
		OnClose: func(c *shanhai.TCPConn) {
			slog.Info("disconnected", "listener", c.Listener)
		},
	})

	shanhaitest.Reset()
	c, _ := shanhaitest.ConnectTCP("lines", "198.51.100.7:40000")
	reply, _ := c.Send([]byte("ping"))
	fmt.Printf("reply: %s\n", reply)
	_, err := c.Send([]byte("quit"))
	fmt.Println("error:", err, "closed:", c.Closed())
	fmt.Printf("received: %q\n", c.Received())
	for _, l := range shanhaitest.Logs() {
		fmt.Println("log:", l.Text)
	}
	// Output:
	// reply: pong
	// error: guest answered error: client quit closed: true
	// received: ["ready" "pong"]
	// log: connected listener=lines from=198.51.100.7:40000
	// log: disconnected listener=lines
}
