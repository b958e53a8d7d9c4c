//go:build !wasm

package shanhai_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

// handleWS registers h for the duration of a test and resets the mock host.
func handleWS(t *testing.T, h shanhai.WebSocketHandler) {
	t.Helper()
	shanhaitest.Reset()
	shanhai.HandleWebSocket(h)
}

func connect(t *testing.T, uri string) *shanhaitest.WSClient {
	t.Helper()
	c, err := shanhaitest.Connect(httptest.NewRequest("GET", uri, nil))
	if err != nil {
		t.Fatalf("Connect(%s): %v", uri, err)
	}
	return c
}

func text(s string) shanhai.WSMessage { return shanhai.WSMessage{Text: true, Data: []byte(s)} }

func binary(b string) shanhai.WSMessage { return shanhai.WSMessage{Data: []byte(b)} }

func wantReceived(t *testing.T, c *shanhaitest.WSClient, want ...shanhai.WSMessage) {
	t.Helper()
	got := c.Received()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	// Data compared as bytes: an empty message may hold nil or []byte{}.
	same := slices.EqualFunc(got, want, func(a, b shanhai.WSMessage) bool {
		return a.Text == b.Text && bytes.Equal(a.Data, b.Data)
	})
	if !same {
		t.Errorf("%v received %s, want %s", c, messagesString(got), messagesString(want))
	}
}

func messagesString(ms []shanhai.WSMessage) string {
	var parts []string
	for _, m := range ms {
		kind := "binary"
		if m.Text {
			kind = "text"
		}
		parts = append(parts, kind+":"+string(m.Data))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func wantEventError(t *testing.T, err error, status int32, message string) {
	t.Helper()
	var ee *shanhaitest.EventError
	if !errors.As(err, &ee) || ee.Status != status || ee.Message != message {
		t.Errorf("got %v, want status %d %q", err, status, message)
	}
}

func TestWSOpenSeesTheUpgradeRequest(t *testing.T) {
	var got shanhai.WSConn
	handleWS(t, shanhai.WebSocketHandler{
		OnOpen: func(c *shanhai.WSConn) ([]byte, error) {
			got = *c
			return []byte("welcome"), nil
		},
	})
	r := httptest.NewRequest("GET", "/chat?room=lobby", nil)
	r.Header.Set("X-Request-Id", "r-7")
	r.Header.Add("Sec-WebSocket-Protocol", "chat")
	r.Header.Add("Sec-WebSocket-Protocol", "json")
	c, err := shanhaitest.Connect(r)
	if err != nil {
		t.Fatal(err)
	}
	want := shanhai.WSConn{
		ID: c.ID, URI: "/chat?room=lobby", RemoteAddr: "192.0.2.1:1234", RequestID: "r-7",
		Header: http.Header{
			"Host":                   {"example.com"},
			"X-Request-Id":           {"r-7"},
			"Sec-Websocket-Protocol": {"chat", "json"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("OnOpen saw\n %+v\nwant\n %+v", got, want)
	}
	if c.ID == 0 {
		t.Error("connection id 0")
	}
	wantReceived(t, c, text("welcome"))
}

func TestWSOpenRefused(t *testing.T) {
	var id uint64
	handleWS(t, shanhai.WebSocketHandler{
		OnOpen: func(c *shanhai.WSConn) ([]byte, error) {
			id = c.ID
			if err := c.Join("lobby"); err != nil {
				return nil, err
			}
			return []byte("never sent"), errors.New("members only")
		},
	})
	c, err := shanhaitest.Connect(httptest.NewRequest("GET", "/", nil))
	if c != nil {
		t.Errorf("a refused connection: %v", c)
	}
	wantEventError(t, err, shanhaitest.StatusError, "members only")
	if got := shanhaitest.RoomMembers("lobby"); len(got) != 0 {
		t.Errorf("a refused connection stays in its rooms: %v", got)
	}
	if err := shanhai.WSSend(id, text("hi")); !errors.Is(err, shanhai.ErrNotFound) {
		t.Errorf("send to a refused connection: %v", err)
	}
}

func TestWSNilCallbacksAccept(t *testing.T) {
	handleWS(t, shanhai.WebSocketHandler{})
	c := connect(t, "/")
	if reply, err := c.SendText("anyone?"); reply != nil || err != nil {
		t.Errorf("message without OnMessage: %q, %v", reply, err)
	}
	if err := c.Close(1000, ""); err != nil {
		t.Errorf("close without OnClose: %v", err)
	}
	wantReceived(t, c)
}

func TestWSMessages(t *testing.T) {
	var conns []shanhai.WSConn
	handleWS(t, shanhai.WebSocketHandler{
		OnMessage: func(c *shanhai.WSConn, m shanhai.WSMessage) ([]byte, error) {
			conns = append(conns, *c)
			switch s := string(m.Data); {
			case !m.Text:
				return slices.Concat([]byte{0}, m.Data), nil
			case s == "fail":
				return nil, errors.New("cannot do that")
			case s == "panic":
				panic("exploded")
			case s == "silent":
				return nil, nil
			case s == "empty":
				return []byte{}, nil
			case s == "bad reply":
				return []byte{0xff}, nil
			case s == "send first":
				if err := c.SendText("queued"); err != nil {
					return nil, err
				}
				return []byte("reply"), nil
			default:
				return bytes.ToUpper(m.Data), nil
			}
		},
	})
	c := connect(t, "/echo")
	if reply, err := c.SendText("hello"); string(reply) != "HELLO" || err != nil {
		t.Errorf("text: %q, %v", reply, err)
	}
	if reply, err := c.SendBinary([]byte{1, 2}); !bytes.Equal(reply, []byte{0, 1, 2}) || err != nil {
		t.Errorf("binary: %x, %v", reply, err)
	}
	if reply, err := c.SendText("silent"); reply != nil || err != nil {
		t.Errorf("no reply: %q, %v", reply, err)
	}
	// A non-nil empty reply is an empty message, queued like one sent.
	if reply, err := c.SendText("empty"); reply != nil || err != nil {
		t.Errorf("empty reply: %q, %v", reply, err)
	}
	_, err := c.SendText("fail")
	wantEventError(t, err, shanhaitest.StatusError, "cannot do that")
	_, err = c.SendText("panic")
	wantEventError(t, err, shanhaitest.StatusError, "panic: exploded")
	_, err = c.SendText("bad reply")
	wantEventError(t, err, shanhaitest.StatusError, "a text reply is not valid UTF-8")
	if reply, err := c.SendText("send first"); string(reply) != "reply" || err != nil {
		t.Errorf("send first: %q, %v", reply, err)
	}
	// The connection stays usable after errors, and messages queued during
	// an event go out before its reply.
	wantReceived(t, c, text("HELLO"), binary("\x00\x01\x02"), text(""), text("queued"), text("reply"))

	ids := map[string]bool{}
	for _, seen := range conns {
		if seen.ID != c.ID || seen.URI != "/echo" || seen.Header != nil || seen.RequestID == "" {
			t.Errorf("OnMessage saw %+v", seen)
		}
		ids[seen.RequestID] = true
	}
	if len(ids) != len(conns) {
		t.Errorf("request ids repeat: %v", ids)
	}
}

func TestWSClose(t *testing.T) {
	type closed struct {
		id     uint64
		code   int
		reason string
		err    error
	}
	var got []closed
	handleWS(t, shanhai.WebSocketHandler{
		OnOpen: func(c *shanhai.WSConn) ([]byte, error) { return nil, c.Join("all") },
		OnClose: func(c *shanhai.WSConn, code int, reason string) {
			// The connection is over: calls on it fail.
			got = append(got, closed{c.ID, code, reason, c.SendText("too late")})
		},
	})
	a, b := connect(t, "/"), connect(t, "/")
	if err := a.Close(1001, "going away"); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(1006, ""); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].id != a.ID || got[0].code != 1001 || got[0].reason != "going away" ||
		got[1].id != b.ID || got[1].code != 1006 || got[1].reason != "" {
		t.Fatalf("OnClose calls: %+v", got)
	}
	for _, g := range got {
		if !errors.Is(g.err, shanhai.ErrNotFound) {
			t.Errorf("send during the close event: %v", g.err)
		}
	}
	if members := shanhaitest.RoomMembers("all"); len(members) != 0 || len(a.Rooms()) != 0 {
		t.Errorf("closed connections stay in rooms: %v, %v", members, a.Rooms())
	}
	if _, err := a.SendText("x"); !errors.Is(err, shanhaitest.ErrConnectionClosed) {
		t.Errorf("message after close: %v", err)
	}
	if err := a.Close(1000, ""); !errors.Is(err, shanhaitest.ErrConnectionClosed) {
		t.Errorf("second close: %v", err)
	}
}

// A small chat: rooms from the query, messages broadcast to the room.
func chatHandler() shanhai.WebSocketHandler {
	room := func(c *shanhai.WSConn) string {
		_, r, _ := strings.Cut(c.URI, "room=")
		return r
	}
	return shanhai.WebSocketHandler{
		OnOpen: func(c *shanhai.WSConn) ([]byte, error) {
			return nil, c.Join(room(c))
		},
		OnMessage: func(c *shanhai.WSConn, m shanhai.WSMessage) ([]byte, error) {
			cmd, arg, _ := strings.Cut(string(m.Data), " ")
			switch cmd {
			case "leave":
				return nil, c.Leave(arg)
			case "kick":
				return nil, c.Close(4000, arg)
			default:
				n, err := shanhai.Broadcast(room(c), m, c.ID)
				if err != nil {
					return nil, err
				}
				return []byte(strings.Repeat("+", n)), nil
			}
		},
	}
}

func TestWSRoomsAndBroadcast(t *testing.T) {
	handleWS(t, chatHandler())
	alice, bob := connect(t, "/chat?room=lobby"), connect(t, "/chat?room=lobby")
	carol := connect(t, "/chat?room=attic")
	if got := shanhaitest.RoomMembers("lobby"); !slices.Equal(got, []uint64{alice.ID, bob.ID}) {
		t.Fatalf("lobby: %v", got)
	}
	if got := carol.Rooms(); !slices.Equal(got, []string{"attic"}) {
		t.Fatalf("carol's rooms: %v", got)
	}

	if reply, err := alice.SendText("hi all"); string(reply) != "+" || err != nil {
		t.Fatalf("broadcast reply %q, %v", reply, err)
	}
	if _, err := bob.SendBinary([]byte{7}); err != nil {
		t.Fatal(err)
	}
	wantReceived(t, alice, text("+"), binary("\x07"))
	wantReceived(t, bob, text("hi all"), binary("+"))
	wantReceived(t, carol)

	want := []shanhaitest.Broadcast{
		{Room: "lobby", Message: text("hi all"), Except: alice.ID, Count: 1},
		{Room: "lobby", Message: binary("\x07"), Except: bob.ID, Count: 1},
	}
	if got := shanhaitest.Broadcasts(); !reflect.DeepEqual(got, want) {
		t.Errorf("broadcasts\n %+v\nwant\n %+v", got, want)
	}

	// Leaving a room twice: the second time it is not in it.
	if _, err := bob.SendText("leave lobby"); err != nil {
		t.Fatal(err)
	}
	_, err := bob.SendText("leave lobby")
	wantEventError(t, err, shanhaitest.StatusError, "shanhai: ws_leave: not found")
	if got := shanhaitest.RoomMembers("lobby"); !slices.Equal(got, []uint64{alice.ID}) {
		t.Errorf("lobby after bob left: %v", got)
	}

	// Broadcast outside any event's connection, to a room and to none.
	if n, err := shanhai.Broadcast("attic", text("dust"), 0); n != 1 || err != nil {
		t.Errorf("broadcast to the attic: %d, %v", n, err)
	}
	if n, err := shanhai.Broadcast("cellar", text("echo"), 0); n != 0 || err != nil {
		t.Errorf("broadcast to an empty room: %d, %v", n, err)
	}
	wantReceived(t, carol, text("dust"))
}

func TestWSGuestClose(t *testing.T) {
	handleWS(t, chatHandler())
	alice, bob := connect(t, "/chat?room=lobby"), connect(t, "/chat?room=lobby")
	// The reply of the event that closed the connection is not sent: no
	// data may follow a close frame.
	if reply, err := bob.SendText("kick spam"); reply != nil || err != nil {
		t.Fatalf("kick: %q, %v", reply, err)
	}
	if code, reason, ok := bob.ClosedByGuest(); code != 4000 || reason != "spam" || !ok {
		t.Errorf("ClosedByGuest: %d %q %v", code, reason, ok)
	}
	if _, _, ok := alice.ClosedByGuest(); ok {
		t.Error("alice closed too")
	}
	if err := shanhai.WSSend(bob.ID, text("still there?")); !errors.Is(err, shanhai.ErrNotFound) {
		t.Errorf("send after the guest's close: %v", err)
	}
	// A closing connection is skipped by broadcasts.
	if n, err := shanhai.Broadcast("lobby", text("news"), 0); n != 1 || err != nil {
		t.Errorf("broadcast: %d, %v", n, err)
	}
	wantReceived(t, bob)
	wantReceived(t, alice, text("news"))
	// The client answers the close; the guest then gets the close event.
	if err := bob.Close(4000, "spam"); err != nil {
		t.Fatal(err)
	}
}

func TestWSHostErrors(t *testing.T) {
	var conn *shanhai.WSConn
	handleWS(t, shanhai.WebSocketHandler{
		OnOpen: func(c *shanhai.WSConn) ([]byte, error) { conn = c; return nil, nil },
	})
	c := connect(t, "/")
	shanhaitest.SetMaxMessageBytes(4)
	long := strings.Repeat("r", 257)
	for _, tc := range []struct {
		name string
		err  error
		fn   string
		want error
	}{
		{"send to connection 0", shanhai.WSSend(0, text("x")), "ws_send", shanhai.ErrNotFound},
		{"send to an unknown connection", shanhai.WSSend(c.ID+1000, text("x")), "ws_send", shanhai.ErrNotFound},
		{"text that is not UTF-8", shanhai.WSSend(c.ID, shanhai.WSMessage{Text: true, Data: []byte{0xff}}), "ws_send", shanhai.ErrInvalidArgument},
		{"message over max_message_bytes", conn.SendBinary([]byte("12345")), "ws_send", shanhai.ErrTooLarge},
		{"broadcast over max_message_bytes", errOf(shanhai.Broadcast("r", text("12345"), 0)), "ws_broadcast", shanhai.ErrTooLarge},
		{"empty room", conn.Join(""), "ws_join", shanhai.ErrInvalidArgument},
		{"room over 256 bytes", conn.Join(long), "ws_join", shanhai.ErrInvalidArgument},
		{"room not UTF-8", conn.Join("\xff"), "ws_join", shanhai.ErrInvalidArgument},
		{"leave a room it is not in", conn.Leave("r"), "ws_leave", shanhai.ErrNotFound},
		{"leave a room no room can be", conn.Leave(""), "ws_leave", shanhai.ErrNotFound},
		{"leave a room not UTF-8", conn.Leave("\xff"), "ws_leave", shanhai.ErrInvalidArgument},
		{"broadcast to a room not UTF-8", errOf(shanhai.Broadcast("\xff", text("x"), 0)), "ws_broadcast", shanhai.ErrInvalidArgument},
		{"close reason not UTF-8", conn.Close(1000, "\xff"), "ws_close", shanhai.ErrInvalidArgument},
		{"close code 999", conn.Close(999, ""), "ws_close", shanhai.ErrInvalidArgument},
		{"close code 1005", conn.Close(1005, ""), "ws_close", shanhai.ErrInvalidArgument},
		{"close code 5000", conn.Close(5000, ""), "ws_close", shanhai.ErrInvalidArgument},
		{"close code past 16 bits", conn.Close(1<<16+1000, ""), "ws_close", shanhai.ErrInvalidArgument},
		{"negative close code", conn.Close(-1, ""), "ws_close", shanhai.ErrInvalidArgument},
		{"close reason over 123 bytes", conn.Close(1000, strings.Repeat("x", 124)), "ws_close", shanhai.ErrInvalidArgument},
		{"close an unknown connection", (&shanhai.WSConn{ID: 99999}).Close(1000, ""), "ws_close", shanhai.ErrNotFound},
		{"join for an unknown connection", (&shanhai.WSConn{ID: 99999}).Join("r"), "ws_join", shanhai.ErrNotFound},
	} {
		var he *shanhai.HostError
		if !errors.Is(tc.err, tc.want) || !errors.As(tc.err, &he) || he.Func != tc.fn {
			t.Errorf("%s: %v, want %v from %s", tc.name, tc.err, tc.want, tc.fn)
		}
	}
	// Within the limits, all of these work; a name no room can have is a
	// room nobody is in.
	for _, err := range []error{
		conn.SendText("1234"), conn.Join(long[:256]), conn.Join(long[:256]), conn.Leave(long[:256]),
		errOf(shanhai.Broadcast(long, text("x"), 0)), errOf(shanhai.Broadcast("", text("x"), 0)),
		conn.Close(3000, strings.Repeat("x", 123)),
	} {
		if err != nil {
			t.Errorf("within the limits: %v", err)
		}
	}
	// After its close, the connection can be sent nothing and join no
	// room; a second close changes nothing.
	if err := conn.SendText("x"); !errors.Is(err, shanhai.ErrNotFound) {
		t.Errorf("send after close: %v", err)
	}
	if err := conn.Join("r"); !errors.Is(err, shanhai.ErrNotFound) {
		t.Errorf("join after close: %v", err)
	}
	if err := conn.Close(1000, "again"); err != nil {
		t.Errorf("second close: %v", err)
	}
	if code, reason, ok := c.ClosedByGuest(); code != 3000 || reason != strings.Repeat("x", 123) || !ok {
		t.Errorf("ClosedByGuest: %d %q %v", code, reason, ok)
	}
	wantReceived(t, c, text("1234"))
}

func TestWSDefaultMessageLimit(t *testing.T) {
	handleWS(t, shanhai.WebSocketHandler{})
	c := connect(t, "/")
	if err := shanhai.WSSend(c.ID, binary(strings.Repeat("x", 1<<20))); err != nil {
		t.Errorf("1 MiB: %v", err)
	}
	if err := shanhai.WSSend(c.ID, binary(strings.Repeat("x", 1<<20+1))); !errors.Is(err, shanhai.ErrTooLarge) {
		t.Errorf("1 MiB + 1: %v", err)
	}
	shanhaitest.SetMaxMessageBytes(0)
	if err := shanhai.WSSend(c.ID, binary(strings.Repeat("x", 1<<20+1))); err != nil {
		t.Errorf("no limit: %v", err)
	}
}

func errOf(_ int, err error) error { return err }

// Host calls work in any event, for any of the module's connections.
func TestWSSendFromOtherEvents(t *testing.T) {
	handleWS(t, shanhai.WebSocketHandler{})
	c := connect(t, "/")
	shanhai.HandleHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := shanhai.WSSend(c.ID, binary("from http")); err != nil {
			http.Error(w, err.Error(), 500)
		}
	}))
	if resp, err := shanhaitest.Do(httptest.NewRequest("POST", "/notify", nil)); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	wantReceived(t, c, binary("from http"))
}

func TestWSBadEnvelope(t *testing.T) {
	handleWS(t, shanhai.WebSocketHandler{})
	for env, want := range map[string]string{
		"":                         "bad WebSocket event envelope: envelope truncated in event type",
		"\x09":                     "bad WebSocket event envelope: event type 9 is unknown",
		"\x02\x01\x00\x00\x00":     "bad WebSocket event envelope: envelope truncated in connection",
		"\x02garbage\xff\xff\xff!": "bad WebSocket event envelope: envelope truncated in uri",
	} {
		status, out := shanhaitest.Dispatch(shanhaitest.KindWebSocket, []byte(env))
		if status != shanhaitest.StatusError || string(out) != want {
			t.Errorf("%q: status %d, %q", env, status, out)
		}
	}
}

// The golden WsEvent envelopes, which crates/abi encodes byte for byte,
// reach the handler as the values they hold.
func TestWSGoldenVectors(t *testing.T) {
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		WSEvent []struct {
			Name string `json:"name"`
			Hex  string `json:"hex"`
		} `json:"ws_event"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	type seen struct {
		Event   string
		Conn    shanhai.WSConn
		Message shanhai.WSMessage
		Code    int
		Reason  string
	}
	var got seen
	handleWS(t, shanhai.WebSocketHandler{
		OnOpen: func(c *shanhai.WSConn) ([]byte, error) {
			got = seen{Event: "open", Conn: *c}
			return nil, nil
		},
		OnMessage: func(c *shanhai.WSConn, m shanhai.WSMessage) ([]byte, error) {
			got = seen{Event: "message", Conn: *c, Message: shanhai.WSMessage{Text: m.Text, Data: bytes.Clone(m.Data)}}
			return nil, nil
		},
		OnClose: func(c *shanhai.WSConn, code int, reason string) {
			got = seen{Event: "close", Conn: *c, Code: code, Reason: reason}
		},
	})
	want := map[string]seen{
		"open-with-headers": {Event: "open", Conn: shanhai.WSConn{
			ID: 4294967298, URI: "/chat?room=lobby", RemoteAddr: "127.0.0.1:5000", RequestID: "r-2",
			Header: http.Header{"Host": {"example.com"}, "Upgrade": {"websocket"}, "Sec-Websocket-Protocol": {"chat"}},
		}},
		"text": {Event: "message", Conn: shanhai.WSConn{
			ID: 4294967298, URI: "/chat?room=lobby", RemoteAddr: "127.0.0.1:5000", RequestID: "r-3",
		}, Message: text("hé")},
		"close-with-reason": {Event: "close", Conn: shanhai.WSConn{ID: 7, URI: "/", RemoteAddr: "[::1]:1"}, Code: 1001, Reason: "bye"},
	}
	if len(v.WSEvent) != len(want) {
		t.Fatalf("%d ws_event vectors, the test knows %d", len(v.WSEvent), len(want))
	}
	for _, vec := range v.WSEvent {
		t.Run(vec.Name, func(t *testing.T) {
			env, err := hex.DecodeString(vec.Hex)
			if err != nil {
				t.Fatal(err)
			}
			got = seen{}
			if status, out := shanhaitest.Dispatch(shanhaitest.KindWebSocket, env); status != shanhaitest.StatusOK {
				t.Fatalf("status %d: %s", status, out)
			}
			if !reflect.DeepEqual(got, want[vec.Name]) {
				t.Errorf("handler saw\n %+v\nwant\n %+v", got, want[vec.Name])
			}
		})
	}
}
