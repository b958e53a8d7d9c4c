package shanhai

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/shanhai-edge/shanhai/sdk/go/internal/wire"
)

// httpHandler is the handler registered with HandleHTTP. Like functions it
// is written in init and read during events, which never overlap.
var httpHandler http.Handler

// HandleHTTP registers h as the module's HTTP handler: every HTTP event
// (kind 1) becomes a call of h.ServeHTTP with an ordinary *http.Request and
// http.ResponseWriter, so any net/http handler or router works unchanged.
// Call it from an init function; a later call replaces the handler. Without
// a handler, HTTP events answer unsupported (the gateway's 404 no_handler).
//
// The request carries the method, the URL and RequestURI as received (the
// full path, including the prefix the module is mounted at), Host (from the
// host header, which is then removed from Header like net/http does),
// Header, Body, ContentLength, RemoteAddr and the gateway's request id (see
// [RequestID]). The response is buffered and sent when h returns: the
// status defaults to 200, headers are taken when the status is written, and
// a missing Content-Type is sniffed from the body with
// [http.DetectContentType], as net/http does. Nothing is streamed, so
// Flush is not supported.
//
// As with net/http, the request body and the ResponseWriter must not be
// used after h returns: the body is a view of guest memory that the next
// event reuses. A panic in h makes the event fail (500 guest_error) with
// the panic message; the instance stays usable.
func HandleHTTP(h http.Handler) {
	if h == nil {
		panic("shanhai: HandleHTTP with a nil handler")
	}
	httpHandler = h
}

type requestIDKey struct{}

// RequestID returns the gateway's id for the request being served, the id
// its logs and the x-request-id header carry, or "" when r did not come
// from the gateway. Requests derived with r.WithContext keep it as long as
// the new context derives from r.Context().
func RequestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey{}).(string)
	return id
}

// Per-instance state reused by every HTTP event. Events never overlap, so
// it needs no lock; anything a handler could keep a reference to (the
// request, its header maps, the writer) is allocated per event instead.
var (
	requestSpans wire.RequestSpans
	outBuf       []byte // the encoded response envelope
	bodyBuf      []byte // the response body, until the envelope is built
	headerKeys   []string
	// canonicalKeys maps lower-case wire names to canonical Go header keys
	// so that the common headers do not allocate on every request.
	canonicalKeys = make(map[string]string)
)

// maxCanonicalKeys bounds canonicalKeys against clients that send ever
// new header names.
const maxCanonicalKeys = 256

// emptyRequest lets serveHTTPEvent allocate a request with its context in
// one step: WithContext returns a shallow copy.
var emptyRequest = new(http.Request)

// serveHTTPEvent handles event kind 1.
func serveHTTPEvent(in []byte) int32 {
	h := httpHandler
	if h == nil {
		return statusUnsupported
	}
	s := &requestSpans
	if err := s.Decode(in); err != nil {
		return fail("bad request envelope: " + err.Error())
	}
	w := newResponseWriter()
	defer w.release()

	// One copy of the envelope's head serves every text field as a
	// substring.
	head := string(in[:s.Body])
	uri := s.URI.In(head)
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		// The gateway has already parsed the URI, so this is unlikely; answer
		// like net/http does for a malformed request line.
		http.Error(w, "malformed request URI", http.StatusBadRequest)
		return w.finish()
	}

	ctx := context.WithValue(context.Background(), requestIDKey{}, s.RequestID.In(head))
	r := emptyRequest.WithContext(ctx)
	r.Method = s.Method.In(head)
	r.URL = u
	r.RequestURI = uri
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	r.RemoteAddr = s.RemoteAddr.In(head)
	r.Header = requestHeader(s.Headers, head, &r.Host)
	if u.Host != "" {
		r.Host = u.Host // an absolute-form URI wins over the header, as in net/http
	}
	if body := in[s.Body:]; len(body) > 0 {
		b := new(requestBody)
		b.Reset(body)
		r.Body = b
		r.ContentLength = int64(len(body))
	} else {
		r.Body = http.NoBody
	}

	h.ServeHTTP(w, r)
	return w.finish()
}

// requestHeader builds the request's header map. Every value is a
// substring of head, and one backing array serves all single values.
func requestHeader(spans []wire.HeaderSpan, head string, host *string) http.Header {
	header := make(http.Header, len(spans))
	values := make([]string, len(spans))
	for i, hs := range spans {
		key := canonicalKey(hs.Name.In(head))
		value := hs.Value.In(head)
		if key == "Host" {
			*host = value
			continue
		}
		if vs, ok := header[key]; ok {
			header[key] = append(vs, value)
			continue
		}
		values[i] = value
		// The capacity limit makes an append by the handler copy instead
		// of overwriting the next header's value.
		header[key] = values[i : i+1 : i+1]
	}
	return header
}

// canonicalKey returns the canonical form of a header name
// ("content-type" -> "Content-Type"), from a cache when it can.
func canonicalKey(name string) string {
	if key, ok := canonicalKeys[name]; ok {
		return key
	}
	key := http.CanonicalHeaderKey(name)
	if len(canonicalKeys) < maxCanonicalKeys {
		// name is a substring of the event's head; clone it so the cache
		// does not keep the whole head alive.
		canonicalKeys[strings.Clone(name)] = key
	}
	return key
}

// requestBody is the request's Body: a reader over the body bytes in the
// event's envelope. bytes.Reader also gives handlers WriteTo and Seek.
type requestBody struct {
	bytes.Reader
}

// Close does nothing: the body is a view of guest memory.
func (*requestBody) Close() error { return nil }

// errResponseDone is what a ResponseWriter answers once its event is over,
// typically to a goroutine that outlived its handler.
var errResponseDone = errors.New("shanhai: response written after the handler returned")

// responseWriter buffers a response and encodes it as an HttpResponse
// envelope. The status line and headers are encoded into out when the
// status is written, which is also when net/http snapshots the headers;
// the body collects in body and is appended in finish, after Content-Type
// sniffing has had its chance to add a header.
type responseWriter struct {
	header http.Header
	status int // 0 until WriteHeader
	out    []byte
	count  uint32 // headers encoded into out
	body   []byte
	sniff  bool // add a sniffed Content-Type in finish
	done   bool
}

func newResponseWriter() *responseWriter {
	return &responseWriter{header: make(http.Header), out: outBuf[:0], body: bodyBuf[:0]}
}

// Header returns the response headers; changes after WriteHeader (or the
// first Write) have no effect.
func (w *responseWriter) Header() http.Header { return w.header }

// WriteHeader sets the status and takes the headers. Like net/http it
// panics on a code outside 100..=999 and ignores later calls;
// informational codes (1xx but 101) cannot be relayed and are ignored.
func (w *responseWriter) WriteHeader(code int) {
	if w.done || w.status != 0 {
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		return
	}
	w.status = code
	w.out = wire.AppendU16(w.out, uint16(code))
	w.out = wire.AppendU32(w.out, 0) // the count, patched in finish

	keys := headerKeys[:0]
	for k := range w.header {
		if !strings.HasPrefix(k, http.TrailerPrefix) {
			keys = append(keys, k)
		}
	}
	// Sorted, like net/http writes them, so responses are deterministic.
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range w.header[k] {
			w.appendHeader(k, v)
		}
	}
	headerKeys = keys[:0]

	_, haveType := w.header["Content-Type"]
	_, haveTE := w.header["Transfer-Encoding"]
	w.sniff = !haveType && !haveTE && w.header.Get("Content-Encoding") == "" && bodyAllowed(code)
}

// appendHeader encodes one header with its name lower-cased, as HTTP/2
// and the host's own headers spell names. Like net/http, line breaks in a
// value become spaces, so a value cannot inject a header.
func (w *responseWriter) appendHeader(name, value string) {
	w.out = wire.AppendU32(w.out, uint32(len(name)))
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		w.out = append(w.out, c)
	}
	if strings.ContainsAny(value, "\r\n") {
		value = strings.NewReplacer("\r", " ", "\n", " ").Replace(value)
	}
	value = strings.Trim(value, " \t")
	w.out = wire.AppendFieldString(w.out, value)
	w.count++
}

// Write appends p to the body, writing a 200 status first if none was
// written. Statuses that allow no body (1xx, 204, 304) refuse it with
// http.ErrBodyNotAllowed, as in net/http.
func (w *responseWriter) Write(p []byte) (int, error) {
	if err := w.beforeWrite(); err != nil {
		return 0, err
	}
	w.body = append(w.body, p...)
	return len(p), nil
}

// WriteString is Write for a string, without the conversion.
func (w *responseWriter) WriteString(s string) (int, error) {
	if err := w.beforeWrite(); err != nil {
		return 0, err
	}
	w.body = append(w.body, s...)
	return len(s), nil
}

func (w *responseWriter) beforeWrite() error {
	if w.done {
		return errResponseDone
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return http.ErrBodyNotAllowed
	}
	return nil
}

// finish completes the envelope and writes it as the event's output.
func (w *responseWriter) finish() int32 {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.sniff && len(w.body) > 0 {
		w.appendHeader("content-type", http.DetectContentType(w.body))
	}
	// Patch the header count reserved after the status.
	binary.LittleEndian.PutUint32(w.out[2:6], w.count)
	w.out = append(w.out, w.body...)
	return writeOutput(w.out)
}

// release ends the writer's life, so that a goroutine still holding it
// cannot write into a later event's response, and keeps its buffers for
// the next event unless they grew large.
func (w *responseWriter) release() {
	w.done = true
	if cap(w.out) <= bigBuffer {
		outBuf = w.out[:0]
	} else {
		outBuf = nil
	}
	if cap(w.body) <= bigBuffer {
		bodyBuf = w.body[:0]
	} else {
		bodyBuf = nil
	}
	w.out, w.body = nil, nil
}

// bodyAllowed reports whether a response with this status may have a
// body (RFC 9110: not 1xx, 204 or 304).
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}
