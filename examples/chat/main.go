// Command chat is a chat room over WebSocket, with the page that uses it.
//
// The gateway mounts it at /chat and /chat/*, and upgrades /chat/ws:
//
//   - GET /chat (or /chat/) serves the page, index.html. It reads room,
//     name and say from its own query string: /chat?room=lobby&name=alice.
//   - ws://HOST/chat/ws?room=ROOM&name=NAME joins ROOM as NAME, both 1 to
//     32 ASCII letters, digits, '-' or '_' (anything else is refused: the
//     upgrade gets 403). Every member of the room receives, as JSON text
//     messages, {"room","name","event":"joined"} and
//     {"room","name","event":"left"} notices and each chat line
//     {"room","name","text"}, their own included, so every member sees the
//     same order. A message the room does not get (empty, over 1000 bytes,
//     binary) earns its sender alone {"error","message"}, like the
//     gateway's own error messages.
//
// The module keeps no state: any instance may handle any event of any
// connection, so each event reads room and name again from the upgrade
// request's URI, which every event carries, and the rooms live in the
// gateway.
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o chat.wasm .
package main

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
)

// maxText is the largest chat line, in bytes.
const maxText = 1000

//go:embed index.html
var page []byte

func init() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /chat", servePage)
	mux.HandleFunc("GET /chat/{$}", servePage)
	// Only upgrade requests reach the WebSocket handler; say so to a plain
	// GET rather than answer a bare 404.
	mux.HandleFunc("/chat/ws", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "connect to /chat/ws with a WebSocket client", http.StatusUpgradeRequired)
	})
	shanhai.HandleHTTP(mux)
	shanhai.HandleWebSocket(shanhai.WebSocketHandler{
		OnOpen:    open,
		OnMessage: receive,
		OnClose:   leave,
	})
}

func main() {}

func servePage(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// The page is self-contained: inline script and style, and a
	// WebSocket to its own host, nothing else.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
	w.Write(page)
}

// chatEvent is what the members of a room receive: a chat line (Text) or a
// notice that Name joined or left (Event).
type chatEvent struct {
	Room  string `json:"room"`
	Name  string `json:"name"`
	Text  string `json:"text,omitempty"`
	Event string `json:"event,omitempty"`
}

// chatError is what the sender of a refused message receives.
type chatError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// open admits a connection to the room its URI names and tells the room,
// the newcomer included, who joined. An error refuses the upgrade.
func open(c *shanhai.WSConn) ([]byte, error) {
	room, name, err := member(c.URI)
	if err != nil {
		return nil, err
	}
	if err := c.Join(room); err != nil {
		return nil, err
	}
	// Accepted: the greeting is the broadcast, so there is no reply.
	return nil, broadcast(chatEvent{Room: room, Name: name, Event: "joined"})
}

// receive passes a text message on to the whole room, sender included.
func receive(c *shanhai.WSConn, m shanhai.WSMessage) ([]byte, error) {
	room, name, err := member(c.URI)
	if err != nil {
		return nil, err
	}
	switch {
	case !m.Text:
		return nil, reject(c, "binary messages are not supported; send text")
	case strings.TrimSpace(string(m.Data)) == "":
		return nil, reject(c, "the message is empty")
	case len(m.Data) > maxText:
		return nil, reject(c, fmt.Sprintf("the message has %d bytes; at most %d are allowed", len(m.Data), maxText))
	}
	return nil, broadcast(chatEvent{Room: room, Name: name, Text: string(m.Data)})
}

// leave tells the room who left. The connection has already left its rooms.
func leave(c *shanhai.WSConn, _ int, _ string) {
	room, name, err := member(c.URI)
	if err != nil {
		return
	}
	if err := broadcast(chatEvent{Room: room, Name: name, Event: "left"}); err != nil {
		slog.Warn("announcing a departure", "room", room, "name", name, "error", err)
	}
}

// reject sends the error to c alone. It is sent rather than returned as
// the event's reply because a reply to a binary message goes out as binary,
// and the page reads text.
func reject(c *shanhai.WSConn, message string) error {
	data, err := json.Marshal(chatError{Error: "bad_message", Message: message})
	if err != nil {
		return err
	}
	return c.SendText(string(data))
}

func broadcast(e chatEvent) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = shanhai.Broadcast(e.Room, shanhai.WSMessage{Text: true, Data: data}, 0)
	return err
}

// member reads the room and the member's name from the query of uri, the
// upgrade request's path and query.
func member(uri string) (room, name string, err error) {
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return "", "", fmt.Errorf("bad request URI: %w", err)
	}
	q := u.Query()
	room, name = q.Get("room"), q.Get("name")
	if !validID(room) {
		return "", "", fmt.Errorf("room %q must be 1 to 32 ASCII letters, digits, '-' or '_'", room)
	}
	if !validID(name) {
		return "", "", fmt.Errorf("name %q must be 1 to 32 ASCII letters, digits, '-' or '_'", name)
	}
	return room, name, nil
}

// validID reports whether s is 1 to 32 ASCII letters, digits, '-' or '_':
// safe to show anywhere and to use as a room name without escaping.
func validID(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for _, r := range s {
		ok := 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_'
		if !ok {
			return false
		}
	}
	return true
}
