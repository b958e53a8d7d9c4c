package shanhai_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
)

// A reactor module registers its handlers in init (the body of this
// example) and has an empty func main().
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
}

func ExampleConfig() {
	greeting, err := shanhai.Config("greeting")
	if errors.Is(err, shanhai.ErrNotFound) {
		greeting = "Hello"
	} else if err != nil {
		slog.Error("reading config", "err", err)
	}
	_ = greeting
}

func ExampleExport() {
	shanhai.Export("length", func(in []byte) ([]byte, error) {
		if len(in) == 0 {
			return nil, errors.New("empty input")
		}
		return fmt.Appendf(nil, "%d", len(in)), nil
	})
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
			slog.Info("left", "conn", c.ID, "code", code, "reason", reason)
		},
	})
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
			slog.Info("report", "run", t.Run, "due", t.Scheduled, "query", string(t.Payload))
			return nil
		default:
			return fmt.Errorf("unknown timer %q", t.Name)
		}
	})
}

// A line-based TCP service: the listener ([tcp.NAME] with framing =
// "delimiter") cuts the stream at newlines, and each reply goes back
// followed by one. An error closes the connection.
func ExampleHandleTCP() {
	shanhai.HandleTCP(shanhai.TCPHandler{
		OnOpen: func(c *shanhai.TCPConn) ([]byte, error) {
			slog.Info("connected", "conn", c.ID, "listener", c.Listener, "from", c.RemoteAddr)
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
			slog.Info("disconnected", "conn", c.ID)
		},
	})
}
