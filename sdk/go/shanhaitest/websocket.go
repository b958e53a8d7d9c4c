//go:build !wasm

package shanhaitest

import (
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/internal/hostcall"
	"github.com/shanhai-edge/shanhai/sdk/go/internal/wire"
)

// WSClient is the client end of a WebSocket connection to the guest, held
// by the mock host the way the gateway holds a real one. Its methods
// deliver the connection's events (messages, its close) to the guest's
// [shanhai.WebSocketHandler] and show what the guest did to the
// connection: what it was sent, which rooms it is in, whether the guest
// closed it.
type WSClient struct {
	// ID is the connection id the guest sees as [shanhai.WSConn.ID].
	ID uint64
	// URI is the path and query of the upgrade request.
	URI string
	// RemoteAddr is the client's address.
	RemoteAddr string

	ended bool // the close event has been delivered
}

// connIDs numbers connections from 1, as ids are never 0 and never reused.
var connIDs atomic.Uint64

// ErrConnectionClosed is what a WSClient's methods return once its close
// event has been delivered.
var ErrConnectionClosed = errors.New("shanhaitest: the WebSocket connection is closed")

// Connect asks the guest to accept a WebSocket connection for the upgrade
// request r, as the gateway does: it delivers an open event whose URI,
// remote address, request id and headers come from r as [Do] takes them,
// and, when the guest accepts, queues its reply (if any) as the
// connection's first text message. A refusal (or a module without a
// WebSocket handler) is an *[EventError]; the gateway would answer it
// with 403 (404 no_handler) and the connection never opens.
//
// The connection exists during the open event, so the guest may already
// join rooms or send to it there.
func Connect(r *http.Request) (*WSClient, error) {
	id, headers := requestHeaders(r)
	c := &WSClient{ID: connIDs.Add(1), URI: requestURI(r), RemoteAddr: r.RemoteAddr}
	hostcall.WSConnect(c.ID)
	ev := wire.WSEvent{
		Type:       wire.WSOpen,
		Conn:       c.ID,
		URI:        c.URI,
		RemoteAddr: c.RemoteAddr,
		RequestID:  id,
		Headers:    headers,
	}
	status, out := Dispatch(KindWebSocket, ev.Append(nil))
	if status != StatusOK {
		hostcall.WSEnd(c.ID)
		return nil, &EventError{Status: status, Message: string(out)}
	}
	if len(out) > 0 {
		hostcall.WSDeliver(c.ID, hostcall.WSMessage{Text: true, Data: out})
	}
	return c, nil
}

// SendText delivers the text message s from the client to the guest and
// returns the guest's reply, nil when there is none. The reply is also
// queued for the client, after whatever the guest sent during the event,
// unless the guest closed the connection. An empty reply travels as a
// message the guest sent, as it does in the gateway: it is nil here and
// shows in [WSClient.Received]. A status other than ok (the
// handler's error) is an *[EventError]; the gateway would send the client
// an error message and keep the connection open, and so may the test.
func (c *WSClient) SendText(s string) (reply []byte, err error) {
	return c.message(wire.WSText, []byte(s))
}

// SendBinary is SendText for a binary message; the reply is binary too.
func (c *WSClient) SendBinary(b []byte) (reply []byte, err error) {
	return c.message(wire.WSBinary, b)
}

func (c *WSClient) message(typ wire.WSEventType, data []byte) ([]byte, error) {
	if c.ended {
		return nil, ErrConnectionClosed
	}
	ev := c.event(typ)
	ev.Data = data
	status, out := Dispatch(KindWebSocket, ev.Append(nil))
	if status != StatusOK {
		return nil, &EventError{Status: status, Message: string(out)}
	}
	if len(out) == 0 {
		return nil, nil
	}
	hostcall.WSDeliver(c.ID, hostcall.WSMessage{Text: typ == wire.WSText, Data: out})
	return out, nil
}

// Close ends the connection and delivers its close event with code and
// reason, as the gateway does whichever side closed it: pass the code the
// client sent (1005 for a close frame without one, 1006 for a dropped
// connection), or, after the guest closed it (see [WSClient.ClosedByGuest]),
// the code the client echoed. From then on the connection is in no room
// and the guest's calls on it fail with shanhai.ErrNotFound. A panic in
// the guest's OnClose is an *[EventError].
func (c *WSClient) Close(code int, reason string) error {
	if c.ended {
		return ErrConnectionClosed
	}
	c.ended = true
	hostcall.WSEnd(c.ID)
	ev := c.event(wire.WSClose)
	ev.CloseCode = uint16(code)
	ev.Data = []byte(reason)
	if status, out := Dispatch(KindWebSocket, ev.Append(nil)); status != StatusOK {
		return &EventError{Status: status, Message: string(out)}
	}
	return nil
}

// event returns an envelope for the connection with a fresh request id.
func (c *WSClient) event(typ wire.WSEventType) wire.WSEvent {
	return wire.WSEvent{
		Type:       typ,
		Conn:       c.ID,
		URI:        c.URI,
		RemoteAddr: c.RemoteAddr,
		RequestID:  newRequestID(),
	}
}

// Received returns every message the client has been sent so far, in the
// order the gateway would send them: those queued with ws_send or
// ws_broadcast during an event, then the event's reply.
func (c *WSClient) Received() []shanhai.WSMessage {
	return messages(hostcall.WSReceived(c.ID))
}

// ClosedByGuest returns the code and reason the guest closed the
// connection with ([shanhai.WSConn.Close]); ok is false if it has not.
//
// Once the guest has closed a connection, the mock host, like the gateway,
// sends it nothing more (RFC 6455 allows no data frames after a close
// frame): sends and joins answer shanhai.ErrNotFound, broadcasts skip it,
// and an event's reply is dropped. A second close succeeds but changes
// nothing: the first one wins. The close event still comes from
// [WSClient.Close].
func (c *WSClient) ClosedByGuest() (code int, reason string, ok bool) {
	raw, reason, ok := hostcall.WSClosed(c.ID)
	return int(raw), reason, ok
}

// Rooms returns the rooms the connection is in, sorted.
func (c *WSClient) Rooms() []string { return hostcall.WSRooms(c.ID) }

// String returns e.g. "ws#3 /chat".
func (c *WSClient) String() string {
	return "ws#" + strconv.FormatUint(c.ID, 10) + " " + c.URI
}

// RoomMembers returns the ids of the connections in the module's room,
// sorted.
func RoomMembers(room string) []uint64 { return hostcall.WSRoomMembers(room) }

// Broadcast is one [shanhai.Broadcast] the mock host accepted.
type Broadcast struct {
	// Room is the room it went to.
	Room string
	// Message is what was sent.
	Message shanhai.WSMessage
	// Except is the connection left out, 0 for none.
	Except uint64
	// Count is what Broadcast returned: how many connections got it.
	Count int
}

// Broadcasts returns the broadcasts since the last [Reset], oldest first.
func Broadcasts() []Broadcast {
	raw := hostcall.WSBroadcasts()
	out := make([]Broadcast, len(raw))
	for i, b := range raw {
		out[i] = Broadcast{Room: b.Room, Message: message(b.Message), Except: b.Except, Count: b.Count}
	}
	return out
}

// SetMaxMessageBytes sets the largest message the guest may send, the
// gateway's websocket.max_message_bytes (1 MiB by default, and after
// [Reset]); a larger one fails with shanhai.ErrTooLarge. 0 means no limit.
func SetMaxMessageBytes(n int) { hostcall.SetMaxWSMessage(n) }

func messages(raw []hostcall.WSMessage) []shanhai.WSMessage {
	out := make([]shanhai.WSMessage, len(raw))
	for i, m := range raw {
		out[i] = message(m)
	}
	return out
}

// message copies m, whose data the mock host may share between the
// recipients of a broadcast.
func message(m hostcall.WSMessage) shanhai.WSMessage {
	return shanhai.WSMessage{Text: m.Text, Data: append([]byte(nil), m.Data...)}
}
