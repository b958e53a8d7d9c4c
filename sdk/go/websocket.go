package shanhai

import (
	"net/http"
	"unicode/utf8"

	"github.com/shanhai-edge/shanhai/sdk/go/internal/hostcall"
	"github.com/shanhai-edge/shanhai/sdk/go/internal/wire"
)

// WSMessage is a WebSocket message.
type WSMessage struct {
	// Text is true for a text message (Data is UTF-8) and false for a
	// binary one.
	Text bool
	// Data is the payload.
	Data []byte
}

// WSConn is one WebSocket connection as an event sees it. The gateway holds
// the connection; a WSConn only names it, so it is cheap, and its methods
// work during any event. To reach the connection from a later event,
// remember its ID and use [WSSend].
type WSConn struct {
	// ID identifies the connection: unique in the gateway process, never
	// 0, and never reused.
	ID uint64
	// URI is the path and query of the upgrade request.
	URI string
	// RemoteAddr is the client's "ip:port".
	RemoteAddr string
	// RequestID is the gateway's id of this event (for OnOpen, the upgrade
	// request's).
	RequestID string
	// Header holds the upgrade request's headers, canonicalised as in
	// net/http (Host included), in OnOpen only; it is nil otherwise.
	Header http.Header
}

// SendText queues s as a text message for the connection. s must be UTF-8.
// Messages queued during an event go out before the event's own reply.
func (c *WSConn) SendText(s string) error {
	return WSSend(c.ID, WSMessage{Text: true, Data: []byte(s)})
}

// SendBinary queues b as a binary message for the connection.
func (c *WSConn) SendBinary(b []byte) error {
	return WSSend(c.ID, WSMessage{Data: b})
}

// Close starts the close handshake with code (1000, 1001, 1008, 1011, or
// 3000–4999) and a UTF-8 reason of at most 123 bytes; anything else is
// [ErrInvalidArgument]. The module still gets the connection's close event
// when the handshake ends.
func (c *WSConn) Close(code int, reason string) error {
	if code < 0 || code > 0xffff {
		return &HostError{Func: "ws_close", Status: hostcall.StatusInvalidArgument}
	}
	_, err := hostResult("ws_close", hostcall.WSClose(c.ID, int32(code), reason))
	return err
}

// Join adds the connection to room, a UTF-8 name of 1 to 256 bytes. Rooms
// belong to the module: [Broadcast] reaches the members of the module's
// own rooms only. A connection leaves its rooms when it closes.
func (c *WSConn) Join(room string) error {
	_, err := hostResult("ws_join", hostcall.WSJoin(c.ID, room))
	return err
}

// Leave removes the connection from room; [ErrNotFound] if it is not in it.
func (c *WSConn) Leave(room string) error {
	_, err := hostResult("ws_leave", hostcall.WSLeave(c.ID, room))
	return err
}

// WSSend sends m to any of the module's connections by id (e.g. one
// remembered from an earlier event). A text message must be UTF-8. It
// fails with [ErrNotFound] for a connection that is gone or not the
// module's; [ErrInvalidArgument] for text that is not
// UTF-8; [ErrTooLarge] beyond the gateway's max_message_bytes; and
// [ErrUnavailable] when the connection's send queue is full (the gateway
// then closes it with 1008: the client is not reading) or the gateway runs
// no WebSocket trigger.
func WSSend(conn uint64, m WSMessage) error {
	_, err := hostResult("ws_send", hostcall.WSSend(conn, messageType(m), m.Data))
	return err
}

// Broadcast sends m to every connection in room except `except` (0 for
// none) and returns how many it was queued for; a room nobody is in gives
// 0. Slow consumers among them are closed as with [WSSend].
func Broadcast(room string, m WSMessage, except uint64) (int, error) {
	return hostResult("ws_broadcast", hostcall.WSBroadcast(room, messageType(m), m.Data, except))
}

func messageType(m WSMessage) int32 {
	if m.Text {
		return hostcall.WSText
	}
	return hostcall.WSBinary
}

// WebSocketHandler handles a module's WebSocket connections (event kind
// 3). Its fields may be nil.
type WebSocketHandler struct {
	// OnOpen runs when a client asks to upgrade, before the handshake
	// completes. An error refuses the connection: the client gets 403 with
	// the error's text. A non-empty reply, which must be UTF-8, is sent
	// as the first (text) message. A nil OnOpen accepts every connection.
	OnOpen func(c *WSConn) (reply []byte, err error)
	// OnMessage runs for each complete message. A reply goes back to the
	// connection with the same type as m (so it must be UTF-8 for a text
	// message); a nil reply sends nothing, and an empty non-nil one
	// ([]byte{}, or m.Data of an empty message) sends an empty message, so
	// returning m.Data echoes every message. An error becomes event status error with its
	// text: the gateway sends the client a JSON error message and keeps
	// the connection open. m.Data is only valid until OnMessage returns.
	OnMessage func(c *WSConn, m WSMessage) (reply []byte, err error)
	// OnClose runs once the connection has ended, whichever side closed
	// it: code is the peer's close code (1005 when its close frame had
	// none, 1006 when the connection dropped). The connection can no
	// longer be acted on.
	OnClose func(c *WSConn, code int, reason string)
}

// wsHandler is the handler registered with HandleWebSocket, nil when there
// is none. Like httpHandler it is written in init and read during events.
var wsHandler *WebSocketHandler

// HandleWebSocket registers h as the module's WebSocket handler: every
// WebSocket event (kind 3) calls the matching field of h. Call it from an
// init function; a later call replaces the handler. Without a handler,
// upgrade requests get the gateway's 404 no_handler.
//
// Connections are held by the gateway, not by an instance: the events of
// one connection may reach different instances, so state kept per
// connection in globals must be keyed by [WSConn.ID] and may be lost with
// an instance. A panic in a handler counts as an error.
func HandleWebSocket(h WebSocketHandler) {
	wsHandler = &h
}

// wsSpans is reused by every WebSocket event, like requestSpans.
var wsSpans wire.WSEventSpans

// wsEvent handles event kind 3.
func wsEvent(in []byte) int32 {
	h := wsHandler
	if h == nil {
		return statusUnsupported
	}
	s := &wsSpans
	if err := s.Decode(in); err != nil {
		return fail("bad WebSocket event envelope: " + err.Error())
	}
	head := string(in[:s.Data])
	c := &WSConn{
		ID:         s.Conn,
		URI:        s.URI.In(head),
		RemoteAddr: s.RemoteAddr.In(head),
		RequestID:  s.RequestID.In(head),
	}
	data := in[s.Data:]
	switch s.Type {
	case wire.WSOpen:
		c.Header = wsHeader(s.Headers, head)
		if h.OnOpen == nil {
			return statusOK
		}
		reply, err := h.OnOpen(c)
		if err != nil {
			return fail(err.Error())
		}
		return writeReply(reply, true)
	case wire.WSText, wire.WSBinary:
		if h.OnMessage == nil {
			return statusOK
		}
		m := WSMessage{Text: s.Type == wire.WSText, Data: data}
		reply, err := h.OnMessage(c, m)
		if err != nil {
			return fail(err.Error())
		}
		if reply != nil && len(reply) == 0 {
			// An empty output means no reply, so an empty message goes out
			// through ws_send, as one the handler queued itself would. A
			// connection already closing drops it, like any reply.
			_ = WSSend(c.ID, WSMessage{Text: m.Text, Data: reply})
			return statusOK
		}
		return writeReply(reply, m.Text)
	default: // wire.WSClose; Decode refuses other types
		if h.OnClose != nil {
			h.OnClose(c, int(s.CloseCode), string(data))
		}
		return statusOK
	}
}

// writeReply writes a handler's reply as the event's output. A text reply
// (to an open or a text message) that is not UTF-8 fails the event, as
// ws_send refuses such text, rather than reach the gateway as a text
// message it cannot send.
func writeReply(reply []byte, text bool) int32 {
	if len(reply) == 0 {
		return statusOK
	}
	if text && !utf8.Valid(reply) {
		return fail("a text reply is not valid UTF-8")
	}
	return writeOutput(reply)
}

// wsHeader builds the upgrade request's header map; unlike an HTTP
// request's, it keeps Host, as WSConn has no field of its own for it.
func wsHeader(spans []wire.HeaderSpan, head string) http.Header {
	header := make(http.Header, len(spans))
	for _, hs := range spans {
		key := canonicalKey(hs.Name.In(head))
		header[key] = append(header[key], hs.Value.In(head))
	}
	return header
}
