//go:build !wasm

package hostcall

import (
	"maps"
	"slices"
	"unicode/utf8"
)

// The mock host's WebSocket hub: what the gateway's connection hub does for
// one module, minus the network. Connections are registered by the test
// driver (package shanhaitest) around the events it delivers; the guest
// acts on them through the ws_* imports below. Everything is guarded by mu.

// WSMessage is one message queued for a connection.
type WSMessage struct {
	Text bool
	Data []byte
}

// WSBroadcastRecord is one ws_broadcast call the host accepted.
type WSBroadcastRecord struct {
	Room    string
	Message WSMessage
	Except  uint64
	// Count is what the call returned: the connections it was queued for.
	Count int
}

// wsConn is the host's side of one connection.
type wsConn struct {
	ended   bool // the connection is over: every call answers not_found
	closing bool // the guest called ws_close; nothing more can be sent
	code    int32
	reason  string
	rooms   map[string]struct{}
	queued  []WSMessage // everything sent to the client, in order
}

// DefaultMaxWSMessage is the mock host's message limit, the gateway's
// default websocket.max_message_bytes.
const DefaultMaxWSMessage = 1 << 20

var (
	wsConns      = map[uint64]*wsConn{}
	wsBroadcasts []WSBroadcastRecord
	maxWSMessage = DefaultMaxWSMessage // 0: no limit
)

// Limits of the ABI (docs/abi.md, the ws_* imports).
const (
	maxRoomLen        = 256
	maxCloseReasonLen = 123
)

func resetWS() {
	wsConns, wsBroadcasts, maxWSMessage = map[uint64]*wsConn{}, nil, DefaultMaxWSMessage
}

// SetMaxWSMessage sets the largest message ws_send and ws_broadcast
// accept, the gateway's websocket.max_message_bytes; 0 removes the limit.
func SetMaxWSMessage(n int) {
	mu.Lock()
	defer mu.Unlock()
	maxWSMessage = n
}

// WSConnect registers a new open connection, before its open event: the
// guest may already act on it during that event.
func WSConnect(id uint64) {
	mu.Lock()
	defer mu.Unlock()
	wsConns[id] = &wsConn{rooms: map[string]struct{}{}}
}

// WSEnd ends a connection (its close event, or a refused open): it leaves
// its rooms and every later call on it answers not_found. What it received
// stays readable.
func WSEnd(id uint64) {
	mu.Lock()
	defer mu.Unlock()
	if c, ok := wsConns[id]; ok {
		c.ended = true
		clear(c.rooms)
	}
}

// WSDeliver sends an event's own output to the client, as the gateway does
// with the output of an ok open or message event. It reports false when
// the connection can no longer be sent to (the guest closed it, or it
// ended), and the message is dropped.
func WSDeliver(id uint64, m WSMessage) bool {
	mu.Lock()
	defer mu.Unlock()
	c, ok := wsConns[id]
	if !ok || c.ended || c.closing {
		return false
	}
	c.queued = append(c.queued, WSMessage{Text: m.Text, Data: append([]byte(nil), m.Data...)})
	return true
}

// WSReceived returns a copy of everything queued for connection id, in
// order.
func WSReceived(id uint64) []WSMessage {
	mu.Lock()
	defer mu.Unlock()
	c, ok := wsConns[id]
	if !ok {
		return nil
	}
	return slices.Clone(c.queued)
}

// WSClosed returns the code and reason of the guest's ws_close on
// connection id; ok is false if it has not closed it.
func WSClosed(id uint64) (code int32, reason string, ok bool) {
	mu.Lock()
	defer mu.Unlock()
	c, found := wsConns[id]
	if !found || !c.closing {
		return 0, "", false
	}
	return c.code, c.reason, true
}

// WSRooms returns the rooms connection id is in, sorted.
func WSRooms(id uint64) []string {
	mu.Lock()
	defer mu.Unlock()
	c, ok := wsConns[id]
	if !ok {
		return nil
	}
	return slices.Sorted(maps.Keys(c.rooms))
}

// WSRoomMembers returns the connections in room, sorted.
func WSRoomMembers(room string) []uint64 {
	mu.Lock()
	defer mu.Unlock()
	return roomMembers(room)
}

func roomMembers(room string) []uint64 {
	var ids []uint64
	for id, c := range wsConns {
		if _, ok := c.rooms[room]; ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// WSBroadcasts returns a copy of the broadcasts accepted so far.
func WSBroadcasts() []WSBroadcastRecord {
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(wsBroadcasts)
}

// liveConn returns connection id if the guest may act on it.
func liveConn(id uint64) (*wsConn, bool) {
	c, ok := wsConns[id]
	if !ok || c.ended {
		return nil, false
	}
	return c, true
}

// checkMessage validates a ws_send or ws_broadcast message as the host does.
func checkMessage(typ int32, data []byte) (WSMessage, int32) {
	if typ != WSText && typ != WSBinary {
		return WSMessage{}, StatusInvalidArgument
	}
	if typ == WSText && !utf8.Valid(data) {
		return WSMessage{}, StatusInvalidArgument
	}
	if maxWSMessage > 0 && len(data) > maxWSMessage {
		return WSMessage{}, StatusTooLarge
	}
	return WSMessage{Text: typ == WSText, Data: append([]byte(nil), data...)}, 0
}

func validRoom(room string) bool {
	return len(room) >= 1 && len(room) <= maxRoomLen && utf8.ValidString(room)
}

func validCloseCode(code int32) bool {
	switch code {
	case 1000, 1001, 1008, 1011:
		return true
	}
	return code >= 3000 && code <= 4999
}

// WSSend queues a message of type typ (WSText or WSBinary) for connection
// conn. A connection the guest has closed cannot be sent to any more
// (RFC 6455: no data frames after a close frame), so it answers not_found.
func WSSend(conn uint64, typ int32, data []byte) int32 {
	mu.Lock()
	defer mu.Unlock()
	m, status := checkMessage(typ, data)
	if status != 0 {
		return status
	}
	c, ok := liveConn(conn)
	if !ok || c.closing {
		return StatusNotFound
	}
	c.queued = append(c.queued, m)
	return 0
}

// WSClose starts closing connection conn with code and reason. As on the
// gateway, the first close wins: a later one answers 0 and changes
// nothing.
func WSClose(conn uint64, code int32, reason string) int32 {
	mu.Lock()
	defer mu.Unlock()
	if !validCloseCode(code) || len(reason) > maxCloseReasonLen || !utf8.ValidString(reason) {
		return StatusInvalidArgument
	}
	c, ok := liveConn(conn)
	if !ok {
		return StatusNotFound
	}
	if !c.closing {
		c.closing, c.code, c.reason = true, code, reason
	}
	return 0
}

// WSJoin adds connection conn to room; joining a room twice is not an
// error, joining once the guest has closed the connection is not_found.
func WSJoin(conn uint64, room string) int32 {
	mu.Lock()
	defer mu.Unlock()
	if !validRoom(room) {
		return StatusInvalidArgument
	}
	c, ok := liveConn(conn)
	if !ok || c.closing {
		return StatusNotFound
	}
	c.rooms[room] = struct{}{}
	return 0
}

// WSLeave removes connection conn from room; not_found when it is not in
// it (so also for a name no room can have).
func WSLeave(conn uint64, room string) int32 {
	mu.Lock()
	defer mu.Unlock()
	if !utf8.ValidString(room) {
		return StatusInvalidArgument
	}
	c, ok := liveConn(conn)
	if !ok {
		return StatusNotFound
	}
	if _, in := c.rooms[room]; !in {
		return StatusNotFound
	}
	delete(c.rooms, room)
	return 0
}

// WSBroadcast queues a message for every connection in room but except
// (0 for none) that can still be sent to, and returns how many that was; a
// name no room can have is a room nobody is in.
func WSBroadcast(room string, typ int32, data []byte, except uint64) int32 {
	mu.Lock()
	defer mu.Unlock()
	if !utf8.ValidString(room) {
		return StatusInvalidArgument
	}
	m, status := checkMessage(typ, data)
	if status != 0 {
		return status
	}
	n := 0
	for _, id := range roomMembers(room) {
		if c := wsConns[id]; id != except && !c.closing {
			c.queued = append(c.queued, m)
			n++
		}
	}
	wsBroadcasts = append(wsBroadcasts, WSBroadcastRecord{Room: room, Message: m, Except: except, Count: n})
	return int32(n)
}
