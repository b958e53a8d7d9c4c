package shanhai

import "github.com/shanhai-edge/shanhai/sdk/go/internal/wire"

// TCPConn is one TCP connection as an event sees it. The gateway holds the
// connection and cuts its byte stream into frames; a TCPConn only names
// it.
type TCPConn struct {
	// ID identifies the connection: unique in the gateway process, never
	// 0, and never reused.
	ID uint64
	// Listener is the name of the listener the client connected to, NAME
	// in the gateway's [tcp.NAME].
	Listener string
	// RemoteAddr is the client's "ip:port".
	RemoteAddr string
	// RequestID is the gateway's id of this event.
	RequestID string
}

// TCPHandler handles a module's TCP connections (event kind 6). Its fields
// may be nil.
type TCPHandler struct {
	// OnOpen runs when a client has connected. An error closes the
	// connection (OnClose still runs); a non-empty reply is written to it
	// first, as one frame. A nil OnOpen accepts every connection.
	OnOpen func(c *TCPConn) (reply []byte, err error)
	// OnFrame runs for each frame, in order: one at a time per connection.
	// A non-empty reply is written back as one frame (the gateway frames
	// it as the listener's framing says: it adds the length or the
	// delimiter, and writes a Modbus reply, a whole ADU, as is); a nil or
	// empty reply writes nothing. An error closes the connection. frame
	// is only valid until OnFrame returns. A nil OnFrame reads the frames
	// and writes nothing.
	OnFrame func(c *TCPConn, frame []byte) (reply []byte, err error)
	// OnClose runs once the connection has ended, whichever side closed
	// it (the gateway does after an error or a malformed frame), for every
	// connection, including one OnOpen refused. What it does cannot reach
	// the client any more.
	OnClose func(c *TCPConn)
}

// tcpHandler is the handler registered with HandleTCP, nil when there is
// none. Like httpHandler it is written in init and read during events.
var tcpHandler *TCPHandler

// HandleTCP registers h as the module's TCP handler: every TCP event (kind
// 6) of a listener ([tcp.NAME] in the gateway's config) that targets the
// module calls the matching field of h. Call it from an init function; a
// later call replaces the handler. Without a handler, TCP events answer
// unsupported and the gateway closes the connections.
//
// Connections are held by the gateway, not by an instance: the events of
// one connection may reach different instances, so state kept per
// connection in globals must be keyed by [TCPConn.ID] and may be lost with
// an instance. A panic in a handler counts as an error, which closes the
// connection.
func HandleTCP(h TCPHandler) {
	tcpHandler = &h
}

// tcpEvent handles event kind 6.
func tcpEvent(in []byte) int32 {
	h := tcpHandler
	if h == nil {
		return statusUnsupported
	}
	var s wire.TCPEventSpans
	if err := s.Decode(in); err != nil {
		return fail("bad TCP event envelope: " + err.Error())
	}
	head := string(in[:s.Data])
	c := &TCPConn{
		ID:         s.Conn,
		Listener:   s.Listener.In(head),
		RemoteAddr: s.RemoteAddr.In(head),
		RequestID:  s.RequestID.In(head),
	}
	var (
		reply []byte
		err   error
	)
	switch s.Type {
	case wire.TCPOpen:
		if h.OnOpen != nil {
			reply, err = h.OnOpen(c)
		}
	case wire.TCPFrame:
		if h.OnFrame != nil {
			reply, err = h.OnFrame(c, in[s.Data:len(in):len(in)])
		}
	default: // wire.TCPClose; Decode refuses other types
		if h.OnClose != nil {
			h.OnClose(c)
		}
	}
	if err != nil {
		return fail(err.Error())
	}
	if len(reply) == 0 {
		return statusOK
	}
	return writeOutput(reply)
}
