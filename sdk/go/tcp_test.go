//go:build !wasm

package shanhai_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

// tcpSeen is one call of a TCP handler, as recorded by recordTCP.
type tcpSeen struct {
	Event string // "open", "frame" or "close"
	Conn  shanhai.TCPConn
	Frame []byte
}

// recordTCP registers h, wrapped to record every call, for the duration of
// a test, and resets the mock host. Nil fields of h stay nil.
func recordTCP(t *testing.T, h shanhai.TCPHandler) *[]tcpSeen {
	t.Helper()
	shanhaitest.Reset()
	var seen []tcpSeen
	wrapped := shanhai.TCPHandler{}
	if h.OnOpen != nil {
		wrapped.OnOpen = func(c *shanhai.TCPConn) ([]byte, error) {
			seen = append(seen, tcpSeen{Event: "open", Conn: *c})
			return h.OnOpen(c)
		}
	}
	if h.OnFrame != nil {
		wrapped.OnFrame = func(c *shanhai.TCPConn, frame []byte) ([]byte, error) {
			seen = append(seen, tcpSeen{Event: "frame", Conn: *c, Frame: bytes.Clone(frame)})
			return h.OnFrame(c, frame)
		}
	}
	if h.OnClose != nil {
		wrapped.OnClose = func(c *shanhai.TCPConn) {
			seen = append(seen, tcpSeen{Event: "close", Conn: *c})
			h.OnClose(c)
		}
	}
	shanhai.HandleTCP(wrapped)
	return &seen
}

func connectTCP(t *testing.T, listener string) *shanhaitest.TCPClient {
	t.Helper()
	c, err := shanhaitest.ConnectTCP(listener, "")
	if err != nil {
		t.Fatalf("ConnectTCP(%s): %v", listener, err)
	}
	return c
}

// upperFrames answers each frame with its upper-cased copy, "" with
// nothing, "fail" with an error and "panic" with a panic.
func upperFrames(_ *shanhai.TCPConn, frame []byte) ([]byte, error) {
	switch string(frame) {
	case "fail":
		return []byte("never written"), errors.New("bad frame")
	case "panic":
		panic("exploded")
	}
	return bytes.ToUpper(frame), nil
}

func TestTCPEventsSeeTheConnection(t *testing.T) {
	seen := recordTCP(t, shanhai.TCPHandler{
		OnOpen:  func(*shanhai.TCPConn) ([]byte, error) { return []byte("ready"), nil },
		OnFrame: upperFrames,
		OnClose: func(*shanhai.TCPConn) {},
	})
	c, err := shanhaitest.ConnectTCP("modbus", "10.0.0.9:502")
	if err != nil {
		t.Fatal(err)
	}
	if c.ID == 0 || c.Listener != "modbus" || c.RemoteAddr != "10.0.0.9:502" {
		t.Errorf("client %+v", c)
	}
	reply, err := c.Send([]byte("abc"))
	if err != nil || string(reply) != "ABC" {
		t.Fatalf("Send: %q, %v", reply, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if len(*seen) != 3 {
		t.Fatalf("%d events: %+v", len(*seen), *seen)
	}
	ids := map[string]bool{}
	for i, want := range []string{"open", "frame", "close"} {
		got := (*seen)[i]
		conn := got.Conn
		if got.Event != want || conn.ID != c.ID || conn.Listener != "modbus" || conn.RemoteAddr != "10.0.0.9:502" ||
			!strings.HasPrefix(conn.RequestID, "shanhaitest-") {
			t.Errorf("event %d: %+v, want %s", i, got, want)
		}
		ids[conn.RequestID] = true
	}
	if len(ids) != 3 {
		t.Errorf("each event has its own request id: %+v", *seen)
	}
	if string((*seen)[1].Frame) != "abc" {
		t.Errorf("OnFrame saw %q", (*seen)[1].Frame)
	}
	if got := c.Received(); !reflect.DeepEqual(got, [][]byte{[]byte("ready"), []byte("ABC")}) {
		t.Errorf("received %q", got)
	}
}

// Binary frames pass unchanged both ways, and each connection has its own
// id.
func TestTCPBinaryFramesAndConnections(t *testing.T) {
	recordTCP(t, shanhai.TCPHandler{
		OnFrame: func(c *shanhai.TCPConn, frame []byte) ([]byte, error) {
			return append([]byte{byte(c.ID)}, frame...), nil
		},
	})
	a, b := connectTCP(t, "l"), connectTCP(t, "l")
	if a.ID == b.ID {
		t.Fatalf("two connections with id %d", a.ID)
	}
	frame := []byte{0, 0xff, 0x80, 0}
	reply, err := b.Send(frame)
	if err != nil || !bytes.Equal(reply, append([]byte{byte(b.ID)}, frame...)) {
		t.Errorf("reply %x, %v", reply, err)
	}
	if len(a.Received()) != 0 {
		t.Errorf("a received %q", a.Received())
	}
}

func TestTCPNilCallbacks(t *testing.T) {
	recordTCP(t, shanhai.TCPHandler{})
	c := connectTCP(t, "l")
	reply, err := c.Send([]byte("ignored"))
	if err != nil || reply != nil {
		t.Errorf("Send with a nil OnFrame: %q, %v", reply, err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close with a nil OnClose: %v", err)
	}
	if len(c.Received()) != 0 {
		t.Errorf("received %q", c.Received())
	}
}

func TestTCPOpenRefused(t *testing.T) {
	seen := recordTCP(t, shanhai.TCPHandler{
		OnOpen: func(c *shanhai.TCPConn) ([]byte, error) {
			return []byte("never written"), errors.New("not from " + c.RemoteAddr)
		},
		OnClose: func(*shanhai.TCPConn) {},
	})
	c, err := shanhaitest.ConnectTCP("l", "203.0.113.5:1")
	if c != nil {
		t.Errorf("a refused connection: %v", c)
	}
	wantEventError(t, err, shanhaitest.StatusError, "not from 203.0.113.5:1")
	if len(*seen) != 2 || (*seen)[0].Event != "open" || (*seen)[1].Event != "close" ||
		(*seen)[1].Conn.ID != (*seen)[0].Conn.ID {
		t.Errorf("a refused connection gets its close event too: %+v", *seen)
	}
}

// A frame's error or panic fails the event, which makes the gateway close
// the connection and deliver its close event; the instance keeps serving
// other connections.
func TestTCPFrameErrorsCloseTheConnection(t *testing.T) {
	seen := recordTCP(t, shanhai.TCPHandler{OnFrame: upperFrames, OnClose: func(*shanhai.TCPConn) {}})
	c := connectTCP(t, "l")
	_, err := c.Send([]byte("fail"))
	wantEventError(t, err, shanhaitest.StatusError, "bad frame")
	if !c.Closed() {
		t.Error("the connection stays open after an error")
	}
	if last := (*seen)[len(*seen)-1]; last.Event != "close" || last.Conn.ID != c.ID {
		t.Errorf("no close event after the error: %+v", *seen)
	}
	if _, err := c.Send([]byte("more")); err != shanhaitest.ErrTCPConnectionClosed {
		t.Errorf("Send after the gateway closed the connection: %v", err)
	}
	if err := c.Close(); err != shanhaitest.ErrTCPConnectionClosed {
		t.Errorf("Close after the gateway closed the connection: %v", err)
	}
	events := len(*seen)

	d := connectTCP(t, "l")
	_, err = d.Send([]byte("panic"))
	wantEventError(t, err, shanhaitest.StatusError, "panic: exploded")
	logs := shanhaitest.Logs()
	if len(logs) != 1 || logs[0].Level != 4 || !strings.HasPrefix(logs[0].Text, "panic: exploded\n") {
		t.Errorf("logs %+v, want the panic with its stack", logs)
	}
	if reply, err := connectTCP(t, "l").Send([]byte("ok")); err != nil || string(reply) != "OK" {
		t.Errorf("after a panic: %q, %v", reply, err)
	}
	// d's frame and close event, then a new connection's frame.
	if got := len(*seen) - events; got != 3 {
		t.Errorf("%d events after the first close: %+v", got, (*seen)[events:])
	}
}

func TestTCPCloseTwice(t *testing.T) {
	seen := recordTCP(t, shanhai.TCPHandler{OnClose: func(*shanhai.TCPConn) {}})
	c := connectTCP(t, "l")
	if err := c.Close(); err != nil || !c.Closed() {
		t.Fatalf("Close: %v, closed %v", err, c.Closed())
	}
	if err := c.Close(); err != shanhaitest.ErrTCPConnectionClosed {
		t.Errorf("a second Close: %v", err)
	}
	if _, err := c.Send([]byte("x")); err != shanhaitest.ErrTCPConnectionClosed {
		t.Errorf("Send after Close: %v", err)
	}
	if len(*seen) != 1 {
		t.Errorf("events %+v", *seen)
	}
}

func TestTCPClosePanic(t *testing.T) {
	recordTCP(t, shanhai.TCPHandler{OnClose: func(*shanhai.TCPConn) { panic("in close") }})
	err := connectTCP(t, "l").Close()
	wantEventError(t, err, shanhaitest.StatusError, "panic: in close")
}

func TestTCPReplyOverTheOutputLimit(t *testing.T) {
	recordTCP(t, shanhai.TCPHandler{
		OnFrame: func(*shanhai.TCPConn, []byte) ([]byte, error) { return make([]byte, 1000), nil },
	})
	shanhaitest.SetMaxOutput(100)
	_, err := connectTCP(t, "l").Send([]byte("x"))
	var ee *shanhaitest.EventError
	if !errors.As(err, &ee) || ee.Status != shanhaitest.StatusError ||
		!strings.HasPrefix(ee.Message, "output of 1000 bytes refused") {
		t.Errorf("got %v", err)
	}
}

func TestTCPBadEnvelope(t *testing.T) {
	seen := recordTCP(t, shanhai.TCPHandler{OnFrame: upperFrames})
	for env, want := range map[string]string{
		"":                     "envelope truncated in event type",
		"\x04":                 "event type 4 is unknown",
		"\x02\x01\x00\x00\x00": "envelope truncated in connection",
		"\x02" + strings.Repeat("\x00", 8) + "\x09\x00\x00\x00modbus":   "envelope truncated in listener",
		"\x02" + strings.Repeat("\x00", 8) + "\x01\x00\x00\x00\xff":     "listener is not valid UTF-8",
		"\x02" + strings.Repeat("\x00", 8) + "\x00\x00\x00\x00\x00\x00": "envelope truncated in remote address",
	} {
		status, out := shanhaitest.Dispatch(shanhaitest.KindTCP, []byte(env))
		if status != shanhaitest.StatusError || string(out) != "bad TCP event envelope: "+want {
			t.Errorf("%q: status %d, %q", env, status, out)
		}
	}
	if len(*seen) != 0 {
		t.Errorf("the handler ran for a bad envelope: %+v", *seen)
	}
}

// The frame is a view of the envelope, capped so that appending to it
// cannot overwrite anything.
func TestTCPFrameIsCapped(t *testing.T) {
	recordTCP(t, shanhai.TCPHandler{
		OnFrame: func(_ *shanhai.TCPConn, frame []byte) ([]byte, error) {
			if cap(frame) != len(frame) {
				return nil, errors.New("frame has spare capacity")
			}
			return append(frame, '!'), nil
		},
	})
	reply, err := connectTCP(t, "l").Send([]byte("hi"))
	if err != nil || string(reply) != "hi!" {
		t.Errorf("%q, %v", reply, err)
	}
}

// The golden TcpEvent envelopes, which crates/abi encodes byte for byte,
// reach the handler as the values they hold.
func TestTCPGoldenVectors(t *testing.T) {
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		TCPEvent []struct {
			Name string `json:"name"`
			Hex  string `json:"hex"`
		} `json:"tcp_event"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	modbus := shanhai.TCPConn{ID: 1<<32 + 3, Listener: "modbus", RemoteAddr: "192.0.2.7:50123"}
	withID := func(c shanhai.TCPConn, id string) shanhai.TCPConn { c.RequestID = id; return c }
	want := map[string]tcpSeen{
		"modbus-read-holding-registers": {
			Event: "frame", Conn: withID(modbus, "r-4"),
			Frame: []byte{0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 2},
		},
		"open":  {Event: "open", Conn: shanhai.TCPConn{ID: 7, Listener: "plc-line-2", RemoteAddr: "[::1]:1"}},
		"close": {Event: "close", Conn: withID(modbus, "r-5")},
	}
	if len(v.TCPEvent) != len(want) {
		t.Fatalf("%d tcp_event vectors, the test knows %d", len(v.TCPEvent), len(want))
	}
	seen := recordTCP(t, shanhai.TCPHandler{
		OnOpen:  func(*shanhai.TCPConn) ([]byte, error) { return nil, nil },
		OnFrame: func(*shanhai.TCPConn, []byte) ([]byte, error) { return nil, nil },
		OnClose: func(*shanhai.TCPConn) {},
	})
	for _, vec := range v.TCPEvent {
		t.Run(vec.Name, func(t *testing.T) {
			env, err := hex.DecodeString(vec.Hex)
			if err != nil {
				t.Fatal(err)
			}
			*seen = nil
			if status, out := shanhaitest.Dispatch(shanhaitest.KindTCP, env); status != shanhaitest.StatusOK || len(out) != 0 {
				t.Fatalf("status %d: %q", status, out)
			}
			if len(*seen) != 1 || !reflect.DeepEqual((*seen)[0], want[vec.Name]) {
				t.Errorf("handler saw\n %+v\nwant\n %+v", *seen, want[vec.Name])
			}
		})
	}
}

// A TCP event may use the host like any event: config and the log.
func TestTCPUsesTheHost(t *testing.T) {
	recordTCP(t, shanhai.TCPHandler{
		OnFrame: func(c *shanhai.TCPConn, frame []byte) ([]byte, error) {
			prefix, err := shanhai.Config("prefix")
			if err != nil {
				return nil, err
			}
			shanhai.Logger().Info("frame", "conn", c.ID, "bytes", len(frame))
			return append([]byte(prefix), frame...), nil
		},
	})
	shanhaitest.SetConfig("prefix", "> ")
	c := connectTCP(t, "l")
	if reply, err := c.Send([]byte("x")); err != nil || string(reply) != "> x" {
		t.Errorf("%q, %v", reply, err)
	}
	shanhaitest.UnsetConfig("prefix")
	_, err := c.Send([]byte("y"))
	wantEventError(t, err, shanhaitest.StatusError, "shanhai: config_get: not found")
	if logs := shanhaitest.Logs(); len(logs) != 1 || !strings.HasPrefix(logs[0].Text, "frame conn=") {
		t.Errorf("logs %+v", logs)
	}
}
