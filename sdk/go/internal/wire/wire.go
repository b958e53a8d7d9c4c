// Package wire encodes and decodes the binary envelopes of the Shanhai ABI
// (docs/abi.md, "Envelopes"); crates/abi/src/wire.rs is its Rust twin and
// both must produce the same bytes.
//
// Every integer is little-endian. A field is a uint32 length followed by that
// many bytes. The last element of an envelope (a body, an input) has no
// length prefix: it is the rest of the buffer, so it can be handed on
// without a copy.
//
// The guest's hot path uses the allocation-free pieces: [RequestSpans]
// locates the parts of a request inside the host-written buffer, and the
// Append functions build a response in a reused buffer. The value types
// ([HTTPRequest], [HTTPResponse], [Call], [WSEvent], [TimerEvent],
// [TCPEvent]) are for tests and the mock host.
package wire

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"
)

// DecodeError says why an envelope could not be decoded. The messages
// match crates/abi's DecodeError.
type DecodeError struct {
	kind   decodeErrorKind
	what   string
	number uint32
}

type decodeErrorKind uint8

const (
	errTruncated decodeErrorKind = iota
	errNotUTF8
	errTooManyHeaders
	errBadStatus
	errBadEventType
	errBadValueTag
	errTrailing
)

func (e *DecodeError) Error() string {
	switch e.kind {
	case errTruncated:
		return "envelope truncated in " + e.what
	case errNotUTF8:
		return e.what + " is not valid UTF-8"
	case errTooManyHeaders:
		return "header count " + strconv.FormatUint(uint64(e.number), 10) + " exceeds the envelope size"
	case errBadEventType:
		return "event type " + strconv.FormatUint(uint64(e.number), 10) + " is unknown"
	case errBadValueTag:
		return "SQL value tag " + strconv.FormatUint(uint64(e.number), 10) + " is unknown"
	case errTrailing:
		return "bytes after the end of the " + e.what
	default:
		return "HTTP status " + strconv.FormatUint(uint64(e.number), 10) + " is out of range"
	}
}

// Span locates one element of an envelope: b[s.Start:s.End].
type Span struct {
	Start, End int
}

// Bytes returns the element as a view into b, the envelope it was decoded
// from.
func (s Span) Bytes(b []byte) []byte { return b[s.Start:s.End:s.End] }

// In returns the element as a substring of str, a string copy of (a prefix
// of) the envelope it was decoded from; substrings share str's memory, so
// one conversion serves every field.
func (s Span) In(str string) string { return str[s.Start:s.End] }

// HeaderSpan locates one header of an envelope.
type HeaderSpan struct {
	Name, Value Span
}

// RequestSpans locates the parts of an HttpRequest envelope without copying
// them. Reuse one value across events: Decode reuses the Headers array.
type RequestSpans struct {
	Method, URI, RequestID, RemoteAddr Span
	Headers                            []HeaderSpan
	// Body is the offset at which the body starts; it runs to the end of
	// the envelope, and everything before it is the envelope's head.
	Body int
}

// Decode locates the parts of the HttpRequest envelope b. It checks what
// crates/abi checks: lengths, the header count against the remaining bytes,
// and that the four text fields are UTF-8.
func (r *RequestSpans) Decode(b []byte) error {
	d := decoder{b: b}
	var err error
	if r.Method, err = d.text("method"); err != nil {
		return err
	}
	if r.URI, err = d.text("uri"); err != nil {
		return err
	}
	if r.RequestID, err = d.text("request id"); err != nil {
		return err
	}
	if r.RemoteAddr, err = d.text("remote address"); err != nil {
		return err
	}
	if r.Headers, err = d.headers(r.Headers[:0]); err != nil {
		return err
	}
	r.Body = d.off
	return nil
}

// DecodeCall splits a Call envelope into the function name and the input,
// both views into b.
func DecodeCall(b []byte) (function, input []byte, err error) {
	d := decoder{b: b}
	name, err := d.text("function name")
	if err != nil {
		return nil, nil, err
	}
	return name.Bytes(b), b[d.off:], nil
}

// AppendU16 appends v little-endian.
func AppendU16(dst []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(dst, v) }

// AppendU32 appends v little-endian.
func AppendU32(dst []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(dst, v) }

// AppendField appends a length-prefixed field.
func AppendField(dst, field []byte) []byte {
	dst = AppendU32(dst, uint32(len(field)))
	return append(dst, field...)
}

// AppendFieldString appends a length-prefixed field from a string.
func AppendFieldString(dst []byte, field string) []byte {
	dst = AppendU32(dst, uint32(len(field)))
	return append(dst, field...)
}

// Header is one HTTP header. Strings may hold any bytes, as HTTP allows
// non-UTF-8 values.
type Header struct {
	Name, Value string
}

// HTTPRequest is an HttpRequest envelope (event kind 1) as values.
type HTTPRequest struct {
	Method     string
	URI        string
	RequestID  string
	RemoteAddr string
	Headers    []Header
	Body       []byte
}

// Append appends the encoded request to dst.
func (r *HTTPRequest) Append(dst []byte) []byte {
	dst = AppendFieldString(dst, r.Method)
	dst = AppendFieldString(dst, r.URI)
	dst = AppendFieldString(dst, r.RequestID)
	dst = AppendFieldString(dst, r.RemoteAddr)
	dst = appendHeaders(dst, r.Headers)
	return append(dst, r.Body...)
}

// DecodeHTTPRequest decodes an HttpRequest envelope into a copy.
func DecodeHTTPRequest(b []byte) (HTTPRequest, error) {
	var s RequestSpans
	if err := s.Decode(b); err != nil {
		return HTTPRequest{}, err
	}
	head := string(b[:s.Body])
	r := HTTPRequest{
		Method:     s.Method.In(head),
		URI:        s.URI.In(head),
		RequestID:  s.RequestID.In(head),
		RemoteAddr: s.RemoteAddr.In(head),
		Body:       append([]byte(nil), b[s.Body:]...),
	}
	for _, h := range s.Headers {
		r.Headers = append(r.Headers, Header{Name: h.Name.In(head), Value: h.Value.In(head)})
	}
	return r, nil
}

// HTTPResponse is an HttpResponse envelope (the output of event kind 1) as
// values.
type HTTPResponse struct {
	Status  uint16
	Headers []Header
	Body    []byte
}

// Append appends the encoded response to dst.
func (r *HTTPResponse) Append(dst []byte) []byte {
	dst = AppendU16(dst, r.Status)
	dst = appendHeaders(dst, r.Headers)
	return append(dst, r.Body...)
}

// DecodeHTTPResponse decodes an HttpResponse envelope into a copy, refusing
// what the host refuses: truncation, a header count larger than the bytes
// that follow, a status outside 100..=999.
func DecodeHTTPResponse(b []byte) (HTTPResponse, error) {
	d := decoder{b: b}
	if len(b) < 2 {
		return HTTPResponse{}, &DecodeError{kind: errTruncated, what: "status"}
	}
	status := binary.LittleEndian.Uint16(b)
	if status < 100 || status > 999 {
		return HTTPResponse{}, &DecodeError{kind: errBadStatus, number: uint32(status)}
	}
	d.off = 2
	spans, err := d.headers(nil)
	if err != nil {
		return HTTPResponse{}, err
	}
	r := HTTPResponse{Status: status, Body: append([]byte(nil), b[d.off:]...)}
	for _, h := range spans {
		r.Headers = append(r.Headers, Header{Name: string(h.Name.Bytes(b)), Value: string(h.Value.Bytes(b))})
	}
	return r, nil
}

// Call is a Call envelope (event kind 2) as values.
type Call struct {
	Function string
	Input    []byte
}

// Append appends the encoded call to dst.
func (c *Call) Append(dst []byte) []byte {
	dst = AppendFieldString(dst, c.Function)
	return append(dst, c.Input...)
}

// WSEventType says what happened on a WebSocket connection (the first
// byte of a WsEvent envelope).
type WSEventType uint8

// WebSocket event types (docs/abi.md, "WsEvent").
const (
	WSOpen   WSEventType = 1
	WSText   WSEventType = 2
	WSBinary WSEventType = 3
	WSClose  WSEventType = 4
)

// WSEventSpans locates the parts of a WsEvent envelope without copying
// them. Reuse one value across events: Decode reuses the Headers array.
type WSEventSpans struct {
	Type      WSEventType
	Conn      uint64
	CloseCode uint16
	URI       Span
	// RemoteAddr and RequestID follow URI in the envelope.
	RemoteAddr, RequestID Span
	Headers               []HeaderSpan
	// Data is the offset at which the data (message, close reason) starts;
	// it runs to the end of the envelope, and everything before it is the
	// envelope's head.
	Data int
}

// Decode locates the parts of the WsEvent envelope b. It checks what
// crates/abi checks: the event type, lengths, the header count against the
// remaining bytes, and that the three text fields are UTF-8.
func (e *WSEventSpans) Decode(b []byte) error {
	if len(b) < 1 {
		return &DecodeError{kind: errTruncated, what: "event type"}
	}
	e.Type = WSEventType(b[0])
	if e.Type < WSOpen || e.Type > WSClose {
		return &DecodeError{kind: errBadEventType, number: uint32(b[0])}
	}
	if len(b) < 1+8 {
		return &DecodeError{kind: errTruncated, what: "connection"}
	}
	e.Conn = binary.LittleEndian.Uint64(b[1:])
	if len(b) < 1+8+2 {
		return &DecodeError{kind: errTruncated, what: "close code"}
	}
	e.CloseCode = binary.LittleEndian.Uint16(b[9:])
	d := decoder{b: b, off: 11}
	var err error
	if e.URI, err = d.text("uri"); err != nil {
		return err
	}
	if e.RemoteAddr, err = d.text("remote address"); err != nil {
		return err
	}
	if e.RequestID, err = d.text("request id"); err != nil {
		return err
	}
	if e.Headers, err = d.headers(e.Headers[:0]); err != nil {
		return err
	}
	e.Data = d.off
	return nil
}

// WSEvent is a WsEvent envelope (event kind 3) as values.
type WSEvent struct {
	Type       WSEventType
	Conn       uint64
	CloseCode  uint16
	URI        string
	RemoteAddr string
	RequestID  string
	Headers    []Header
	Data       []byte
}

// Append appends the encoded event to dst.
func (e *WSEvent) Append(dst []byte) []byte {
	dst = append(dst, byte(e.Type))
	dst = binary.LittleEndian.AppendUint64(dst, e.Conn)
	dst = AppendU16(dst, e.CloseCode)
	dst = AppendFieldString(dst, e.URI)
	dst = AppendFieldString(dst, e.RemoteAddr)
	dst = AppendFieldString(dst, e.RequestID)
	dst = appendHeaders(dst, e.Headers)
	return append(dst, e.Data...)
}

// DecodeWSEvent decodes a WsEvent envelope into a copy.
func DecodeWSEvent(b []byte) (WSEvent, error) {
	var s WSEventSpans
	if err := s.Decode(b); err != nil {
		return WSEvent{}, err
	}
	head := string(b[:s.Data])
	e := WSEvent{
		Type:       s.Type,
		Conn:       s.Conn,
		CloseCode:  s.CloseCode,
		URI:        s.URI.In(head),
		RemoteAddr: s.RemoteAddr.In(head),
		RequestID:  s.RequestID.In(head),
		Data:       append([]byte(nil), b[s.Data:]...),
	}
	for _, h := range s.Headers {
		e.Headers = append(e.Headers, Header{Name: h.Name.In(head), Value: h.Value.In(head)})
	}
	return e, nil
}

// TimerEventSpans locates the parts of a TimerEvent envelope without
// copying them.
type TimerEventSpans struct {
	Timer Span
	// ScheduledMs is when the run was due, in milliseconds since the Unix
	// epoch.
	ScheduledMs uint64
	Run         uint64
	Skipped     uint32
	// Payload is the offset at which the payload starts; it runs to the end
	// of the envelope.
	Payload int
}

// Decode locates the parts of the TimerEvent envelope b. It checks what
// crates/abi checks: lengths, and that the timer's name is UTF-8.
func (e *TimerEventSpans) Decode(b []byte) error {
	d := decoder{b: b}
	var err error
	if e.Timer, err = d.text("timer name"); err != nil {
		return err
	}
	if e.ScheduledMs, err = d.u64("scheduled time"); err != nil {
		return err
	}
	if e.Run, err = d.u64("run number"); err != nil {
		return err
	}
	if e.Skipped, err = d.u32("skipped runs"); err != nil {
		return err
	}
	e.Payload = d.off
	return nil
}

// TimerEvent is a TimerEvent envelope (event kind 4) as values.
type TimerEvent struct {
	Timer       string
	ScheduledMs uint64
	Run         uint64
	Skipped     uint32
	Payload     []byte
}

// Append appends the encoded event to dst.
func (e *TimerEvent) Append(dst []byte) []byte {
	dst = AppendFieldString(dst, e.Timer)
	dst = binary.LittleEndian.AppendUint64(dst, e.ScheduledMs)
	dst = binary.LittleEndian.AppendUint64(dst, e.Run)
	dst = AppendU32(dst, e.Skipped)
	return append(dst, e.Payload...)
}

// DecodeTimerEvent decodes a TimerEvent envelope into a copy.
func DecodeTimerEvent(b []byte) (TimerEvent, error) {
	var s TimerEventSpans
	if err := s.Decode(b); err != nil {
		return TimerEvent{}, err
	}
	return TimerEvent{
		Timer:       string(s.Timer.Bytes(b)),
		ScheduledMs: s.ScheduledMs,
		Run:         s.Run,
		Skipped:     s.Skipped,
		Payload:     append([]byte(nil), b[s.Payload:]...),
	}, nil
}

// TCPEventType says what happened on a TCP connection (the first byte of
// a TcpEvent envelope).
type TCPEventType uint8

// TCP event types (docs/abi.md, "TcpEvent").
const (
	TCPOpen  TCPEventType = 1
	TCPFrame TCPEventType = 2
	TCPClose TCPEventType = 3
)

// TCPEventSpans locates the parts of a TcpEvent envelope without copying
// them.
type TCPEventSpans struct {
	Type TCPEventType
	Conn uint64
	// Listener, RemoteAddr and RequestID follow each other in the
	// envelope.
	Listener, RemoteAddr, RequestID Span
	// Data is the offset at which the data (a frame) starts; it runs to
	// the end of the envelope, and everything before it is the envelope's
	// head.
	Data int
}

// Decode locates the parts of the TcpEvent envelope b. It checks what
// crates/abi checks: the event type, lengths, and that the three text
// fields are UTF-8.
func (e *TCPEventSpans) Decode(b []byte) error {
	if len(b) < 1 {
		return &DecodeError{kind: errTruncated, what: "event type"}
	}
	e.Type = TCPEventType(b[0])
	if e.Type < TCPOpen || e.Type > TCPClose {
		return &DecodeError{kind: errBadEventType, number: uint32(b[0])}
	}
	d := decoder{b: b, off: 1}
	var err error
	if e.Conn, err = d.u64("connection"); err != nil {
		return err
	}
	if e.Listener, err = d.text("listener"); err != nil {
		return err
	}
	if e.RemoteAddr, err = d.text("remote address"); err != nil {
		return err
	}
	if e.RequestID, err = d.text("request id"); err != nil {
		return err
	}
	e.Data = d.off
	return nil
}

// TCPEvent is a TcpEvent envelope (event kind 6) as values.
type TCPEvent struct {
	Type       TCPEventType
	Conn       uint64
	Listener   string
	RemoteAddr string
	RequestID  string
	Data       []byte
}

// Append appends the encoded event to dst.
func (e *TCPEvent) Append(dst []byte) []byte {
	dst = append(dst, byte(e.Type))
	dst = binary.LittleEndian.AppendUint64(dst, e.Conn)
	dst = AppendFieldString(dst, e.Listener)
	dst = AppendFieldString(dst, e.RemoteAddr)
	dst = AppendFieldString(dst, e.RequestID)
	return append(dst, e.Data...)
}

// DecodeTCPEvent decodes a TcpEvent envelope into a copy.
func DecodeTCPEvent(b []byte) (TCPEvent, error) {
	var s TCPEventSpans
	if err := s.Decode(b); err != nil {
		return TCPEvent{}, err
	}
	head := string(b[:s.Data])
	return TCPEvent{
		Type:       s.Type,
		Conn:       s.Conn,
		Listener:   s.Listener.In(head),
		RemoteAddr: s.RemoteAddr.In(head),
		RequestID:  s.RequestID.In(head),
		Data:       append([]byte(nil), b[s.Data:]...),
	}, nil
}

func appendHeaders(dst []byte, headers []Header) []byte {
	dst = AppendU32(dst, uint32(len(headers)))
	for _, h := range headers {
		dst = AppendFieldString(dst, h.Name)
		dst = AppendFieldString(dst, h.Value)
	}
	return dst
}

// decoder reads an envelope front to back. Lengths are checked against the
// bytes that remain before they are used, so hostile input can neither
// panic nor make it allocate.
type decoder struct {
	b   []byte
	off int
}

func (d *decoder) u32(what string) (uint32, error) {
	if len(d.b)-d.off < 4 {
		return 0, &DecodeError{kind: errTruncated, what: what}
	}
	v := binary.LittleEndian.Uint32(d.b[d.off:])
	d.off += 4
	return v, nil
}

func (d *decoder) u64(what string) (uint64, error) {
	if len(d.b)-d.off < 8 {
		return 0, &DecodeError{kind: errTruncated, what: what}
	}
	v := binary.LittleEndian.Uint64(d.b[d.off:])
	d.off += 8
	return v, nil
}

// count reads a uint32 count of elements that take at least minBytes each,
// refused when the remaining bytes cannot hold that many.
func (d *decoder) count(minBytes int, what string) (int, error) {
	n, err := d.u32(what)
	if err != nil {
		return 0, err
	}
	if uint64(n) > uint64(len(d.b)-d.off)/uint64(minBytes) {
		return 0, &DecodeError{kind: errTooManyHeaders, number: n}
	}
	return int(n), nil
}

// end refuses bytes after the last element of the envelope named what.
func (d *decoder) end(what string) error {
	if d.off != len(d.b) {
		return &DecodeError{kind: errTrailing, what: what}
	}
	return nil
}

func (d *decoder) field(what string) (Span, error) {
	n, err := d.u32(what)
	if err != nil {
		return Span{}, err
	}
	if uint64(n) > uint64(len(d.b)-d.off) {
		return Span{}, &DecodeError{kind: errTruncated, what: what}
	}
	s := Span{Start: d.off, End: d.off + int(n)}
	d.off = s.End
	return s, nil
}

func (d *decoder) text(what string) (Span, error) {
	s, err := d.field(what)
	if err != nil {
		return Span{}, err
	}
	if !utf8.Valid(s.Bytes(d.b)) {
		return Span{}, &DecodeError{kind: errNotUTF8, what: what}
	}
	return s, nil
}

func (d *decoder) headers(dst []HeaderSpan) ([]HeaderSpan, error) {
	count, err := d.u32("header count")
	if err != nil {
		return dst, err
	}
	// Each header needs at least two length prefixes; refuse counts the
	// remaining bytes cannot hold before reserving anything.
	if uint64(count) > uint64(len(d.b)-d.off)/8 {
		return dst, &DecodeError{kind: errTooManyHeaders, number: count}
	}
	for range count {
		name, err := d.field("header name")
		if err != nil {
			return dst, err
		}
		value, err := d.field("header value")
		if err != nil {
			return dst, err
		}
		dst = append(dst, HeaderSpan{Name: name, Value: value})
	}
	return dst, nil
}
