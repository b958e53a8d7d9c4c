//go:build !wasm

package shanhaitest

import (
	"errors"
	"strconv"

	"github.com/shanhai-edge/shanhai/sdk/go/internal/wire"
)

// DefaultRemoteAddr is the client address [ConnectTCP] uses when given
// none (the one httptest.NewRequest gives an HTTP request).
const DefaultRemoteAddr = "192.0.2.1:1234"

// ErrTCPConnectionClosed is what a TCPClient's Send and Close return once
// the connection is closed: after Close, or after an event of the
// connection failed.
var ErrTCPConnectionClosed = errors.New("shanhaitest: the TCP connection is closed")

// TCPClient is the client end of a TCP connection to the guest, as a
// listener ([tcp.NAME]) of the gateway would hold it. The gateway cuts the
// byte stream into frames; a TCPClient deals in frames directly: Send
// delivers one frame event to the guest's [shanhai.TCPHandler] and returns
// its reply.
type TCPClient struct {
	// ID is the connection id the guest sees as [shanhai.TCPConn.ID].
	ID uint64
	// Listener is the listener's name, [shanhai.TCPConn.Listener].
	Listener string
	// RemoteAddr is the client's address.
	RemoteAddr string

	received [][]byte
	closed   bool // the close event has been delivered
}

// ConnectTCP connects a client from remoteAddr (DefaultRemoteAddr when
// empty) to the listener named listener, as the gateway does when a client
// connects: it delivers an open event and, when the guest accepts, keeps
// its reply, if any, as the first frame the client receives. A refusal
// (the handler's error or panic) or a module without a TCP handler is an
// *[EventError]; the gateway then closes the connection and, as after
// every connection, delivers its close event, and so does ConnectTCP.
func ConnectTCP(listener, remoteAddr string) (*TCPClient, error) {
	if remoteAddr == "" {
		remoteAddr = DefaultRemoteAddr
	}
	c := &TCPClient{ID: connIDs.Add(1), Listener: listener, RemoteAddr: remoteAddr}
	if _, err := c.event(wire.TCPOpen, nil); err != nil {
		return nil, err
	}
	return c, nil
}

// Send delivers frame, one whole frame as the listener's framing cuts it
// (for the modbus framing, a whole ADU, header included), and returns the
// guest's reply, nil when there is none; a reply is also what the client
// receives ([TCPClient.Received]).
//
// A status other than ok (the handler's error or panic) is an
// *[EventError]. The gateway closes the connection then and delivers its
// close event, and so does Send: from then on Send and Close return
// [ErrTCPConnectionClosed].
func (c *TCPClient) Send(frame []byte) (reply []byte, err error) {
	if c.closed {
		return nil, ErrTCPConnectionClosed
	}
	return c.event(wire.TCPFrame, frame)
}

// Close ends the connection and delivers its close event, as the gateway
// does whichever side closed it. The gateway ignores what the close event
// answers; Close reports a panic in the guest's OnClose as an
// *[EventError].
func (c *TCPClient) Close() error {
	if c.closed {
		return ErrTCPConnectionClosed
	}
	c.closed = true
	if status, out := Dispatch(KindTCP, c.envelope(wire.TCPClose, nil)); status != StatusOK {
		return &EventError{Status: status, Message: string(out)}
	}
	return nil
}

// Closed reports whether the connection is closed: after Close, or after
// a failed event, which makes the gateway close it.
func (c *TCPClient) Closed() bool { return c.closed }

// Received returns every frame the client has been sent so far, oldest
// first: the open event's reply, then the replies to its frames (empty
// replies write nothing).
func (c *TCPClient) Received() [][]byte {
	out := make([][]byte, len(c.received))
	for i, f := range c.received {
		out[i] = append([]byte(nil), f...)
	}
	return out
}

// String returns e.g. "tcp#3 modbus 192.0.2.1:1234".
func (c *TCPClient) String() string {
	return "tcp#" + strconv.FormatUint(c.ID, 10) + " " + c.Listener + " " + c.RemoteAddr
}

// event delivers an open or a frame event and records its reply. A failed
// event closes the connection, as in the gateway, which then delivers the
// close event and ignores its outcome.
func (c *TCPClient) event(typ wire.TCPEventType, data []byte) ([]byte, error) {
	status, out := Dispatch(KindTCP, c.envelope(typ, data))
	if status != StatusOK {
		c.closed = true
		Dispatch(KindTCP, c.envelope(wire.TCPClose, nil))
		return nil, &EventError{Status: status, Message: string(out)}
	}
	if len(out) == 0 {
		return nil, nil
	}
	c.received = append(c.received, out)
	return append([]byte(nil), out...), nil
}

// envelope returns an event of the connection with a fresh request id.
func (c *TCPClient) envelope(typ wire.TCPEventType, data []byte) []byte {
	ev := wire.TCPEvent{
		Type:       typ,
		Conn:       c.ID,
		Listener:   c.Listener,
		RemoteAddr: c.RemoteAddr,
		RequestID:  newRequestID(),
		Data:       data,
	}
	return ev.Append(nil)
}
