package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"reflect"
	"testing"
)

// vectors is testdata/vectors.json, the golden envelopes that crates/abi
// is checked against too.
type vectors struct {
	HTTPRequest []struct {
		Name       string      `json:"name"`
		Method     string      `json:"method"`
		URI        string      `json:"uri"`
		RequestID  string      `json:"request_id"`
		RemoteAddr string      `json:"remote_addr"`
		Headers    [][2]string `json:"headers"`
		BodyHex    string      `json:"body_hex"`
		Hex        string      `json:"hex"`
	} `json:"http_request"`
	HTTPResponse []struct {
		Name    string      `json:"name"`
		Status  uint16      `json:"status"`
		Headers [][2]string `json:"headers"`
		BodyHex string      `json:"body_hex"`
		Hex     string      `json:"hex"`
	} `json:"http_response"`
	Call []struct {
		Name     string `json:"name"`
		Function string `json:"function"`
		InputHex string `json:"input_hex"`
		Hex      string `json:"hex"`
	} `json:"call"`
	WSEvent []struct {
		Name       string      `json:"name"`
		Type       uint8       `json:"type"`
		Connection uint64      `json:"connection"`
		CloseCode  uint16      `json:"close_code"`
		URI        string      `json:"uri"`
		RemoteAddr string      `json:"remote_addr"`
		RequestID  string      `json:"request_id"`
		Headers    [][2]string `json:"headers"`
		DataHex    string      `json:"data_hex"`
		Hex        string      `json:"hex"`
	} `json:"ws_event"`
	TimerEvent []struct {
		Name        string `json:"name"`
		Timer       string `json:"timer"`
		ScheduledMs uint64 `json:"scheduled_ms"`
		Run         uint64 `json:"run"`
		Skipped     uint32 `json:"skipped"`
		PayloadHex  string `json:"payload_hex"`
		Hex         string `json:"hex"`
	} `json:"timer_event"`
	TCPEvent []struct {
		Name       string `json:"name"`
		Type       uint8  `json:"type"`
		Connection uint64 `json:"connection"`
		Listener   string `json:"listener"`
		RemoteAddr string `json:"remote_addr"`
		RequestID  string `json:"request_id"`
		DataHex    string `json:"data_hex"`
		Hex        string `json:"hex"`
	} `json:"tcp_event"`
}

func loadVectors(t *testing.T) vectors {
	t.Helper()
	b, err := os.ReadFile("../../testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.HTTPRequest) == 0 || len(v.HTTPResponse) == 0 || len(v.Call) == 0 || len(v.WSEvent) == 0 ||
		len(v.TimerEvent) == 0 || len(v.TCPEvent) == 0 {
		t.Fatal("vectors.json lacks a kind of envelope")
	}
	return v
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func headers(pairs [][2]string) []Header {
	var hs []Header
	for _, p := range pairs {
		hs = append(hs, Header{Name: p[0], Value: p[1]})
	}
	return hs
}

// normalize makes empty and nil slices compare equal.
func normalize[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func TestVectorsHTTPRequest(t *testing.T) {
	for _, v := range loadVectors(t).HTTPRequest {
		t.Run(v.Name, func(t *testing.T) {
			want := unhex(t, v.Hex)
			req := HTTPRequest{
				Method: v.Method, URI: v.URI, RequestID: v.RequestID, RemoteAddr: v.RemoteAddr,
				Headers: headers(v.Headers), Body: unhex(t, v.BodyHex),
			}
			if got := req.Append(nil); !bytes.Equal(got, want) {
				t.Errorf("encoded\n %x\nwant\n %x", got, want)
			}
			got, err := DecodeHTTPRequest(want)
			if err != nil {
				t.Fatal(err)
			}
			got.Headers, got.Body = normalize(got.Headers), normalize(got.Body)
			req.Headers, req.Body = normalize(req.Headers), normalize(req.Body)
			if !reflect.DeepEqual(got, req) {
				t.Errorf("decoded %+v\nwant %+v", got, req)
			}
		})
	}
}

func TestVectorsHTTPResponse(t *testing.T) {
	for _, v := range loadVectors(t).HTTPResponse {
		t.Run(v.Name, func(t *testing.T) {
			want := unhex(t, v.Hex)
			resp := HTTPResponse{Status: v.Status, Headers: headers(v.Headers), Body: unhex(t, v.BodyHex)}
			if got := resp.Append(nil); !bytes.Equal(got, want) {
				t.Errorf("encoded\n %x\nwant\n %x", got, want)
			}
			got, err := DecodeHTTPResponse(want)
			if err != nil {
				t.Fatal(err)
			}
			got.Headers, got.Body = normalize(got.Headers), normalize(got.Body)
			resp.Headers, resp.Body = normalize(resp.Headers), normalize(resp.Body)
			if !reflect.DeepEqual(got, resp) {
				t.Errorf("decoded %+v\nwant %+v", got, resp)
			}
		})
	}
}

func TestVectorsCall(t *testing.T) {
	for _, v := range loadVectors(t).Call {
		t.Run(v.Name, func(t *testing.T) {
			want := unhex(t, v.Hex)
			call := Call{Function: v.Function, Input: unhex(t, v.InputHex)}
			if got := call.Append(nil); !bytes.Equal(got, want) {
				t.Errorf("encoded %x, want %x", got, want)
			}
			name, input, err := DecodeCall(want)
			if err != nil {
				t.Fatal(err)
			}
			if string(name) != call.Function || !bytes.Equal(input, call.Input) {
				t.Errorf("decoded %q %x, want %q %x", name, input, call.Function, call.Input)
			}
		})
	}
}

func TestVectorsWSEvent(t *testing.T) {
	for _, v := range loadVectors(t).WSEvent {
		t.Run(v.Name, func(t *testing.T) {
			want := unhex(t, v.Hex)
			ev := WSEvent{
				Type: WSEventType(v.Type), Conn: v.Connection, CloseCode: v.CloseCode,
				URI: v.URI, RemoteAddr: v.RemoteAddr, RequestID: v.RequestID,
				Headers: headers(v.Headers), Data: unhex(t, v.DataHex),
			}
			if got := ev.Append(nil); !bytes.Equal(got, want) {
				t.Errorf("encoded\n %x\nwant\n %x", got, want)
			}
			got, err := DecodeWSEvent(want)
			if err != nil {
				t.Fatal(err)
			}
			got.Headers, got.Data = normalize(got.Headers), normalize(got.Data)
			ev.Headers, ev.Data = normalize(ev.Headers), normalize(ev.Data)
			if !reflect.DeepEqual(got, ev) {
				t.Errorf("decoded %+v\nwant %+v", got, ev)
			}
		})
	}
}

func TestVectorsTimerEvent(t *testing.T) {
	for _, v := range loadVectors(t).TimerEvent {
		t.Run(v.Name, func(t *testing.T) {
			want := unhex(t, v.Hex)
			ev := TimerEvent{
				Timer: v.Timer, ScheduledMs: v.ScheduledMs, Run: v.Run, Skipped: v.Skipped,
				Payload: unhex(t, v.PayloadHex),
			}
			if got := ev.Append(nil); !bytes.Equal(got, want) {
				t.Errorf("encoded\n %x\nwant\n %x", got, want)
			}
			got, err := DecodeTimerEvent(want)
			if err != nil {
				t.Fatal(err)
			}
			got.Payload, ev.Payload = normalize(got.Payload), normalize(ev.Payload)
			if !reflect.DeepEqual(got, ev) {
				t.Errorf("decoded %+v\nwant %+v", got, ev)
			}
		})
	}
}

func TestVectorsTCPEvent(t *testing.T) {
	for _, v := range loadVectors(t).TCPEvent {
		t.Run(v.Name, func(t *testing.T) {
			want := unhex(t, v.Hex)
			ev := TCPEvent{
				Type: TCPEventType(v.Type), Conn: v.Connection, Listener: v.Listener,
				RemoteAddr: v.RemoteAddr, RequestID: v.RequestID, Data: unhex(t, v.DataHex),
			}
			if got := ev.Append(nil); !bytes.Equal(got, want) {
				t.Errorf("encoded\n %x\nwant\n %x", got, want)
			}
			got, err := DecodeTCPEvent(want)
			if err != nil {
				t.Fatal(err)
			}
			got.Data, ev.Data = normalize(got.Data), normalize(ev.Data)
			if !reflect.DeepEqual(got, ev) {
				t.Errorf("decoded %+v\nwant %+v", got, ev)
			}
		})
	}
}

func randBytes(r *rand.Rand, max int) []byte {
	b := make([]byte, r.IntN(max+1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func randText(r *rand.Rand, max int) string {
	b := make([]byte, r.IntN(max+1))
	for i := range b {
		b[i] = byte(' ' + r.IntN('~'-' '+1))
	}
	return string(b)
}

func TestRoundTrips(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		var hs []Header
		for range r.IntN(8) {
			hs = append(hs, Header{Name: string(randBytes(r, 16)), Value: string(randBytes(r, 64))})
		}
		req := HTTPRequest{
			Method: randText(r, 8), URI: "/" + randText(r, 40), RequestID: randText(r, 20),
			RemoteAddr: "127.0.0.1:1", Headers: hs, Body: randBytes(r, 256),
		}
		enc := req.Append(nil)
		got, err := DecodeHTTPRequest(enc)
		if err != nil {
			t.Fatal(err)
		}
		got.Headers, got.Body = normalize(got.Headers), normalize(got.Body)
		req.Headers, req.Body = normalize(req.Headers), normalize(req.Body)
		if !reflect.DeepEqual(got, req) {
			t.Fatalf("request round trip: got %+v, want %+v", got, req)
		}

		resp := HTTPResponse{Status: uint16(100 + r.IntN(900)), Headers: hs, Body: randBytes(r, 256)}
		gotResp, err := DecodeHTTPResponse(resp.Append(nil))
		if err != nil {
			t.Fatal(err)
		}
		gotResp.Headers, gotResp.Body = normalize(gotResp.Headers), normalize(gotResp.Body)
		resp.Headers, resp.Body = normalize(resp.Headers), normalize(resp.Body)
		if !reflect.DeepEqual(gotResp, resp) {
			t.Fatalf("response round trip: got %+v, want %+v", gotResp, resp)
		}

		ev := WSEvent{
			Type: WSEventType(1 + r.IntN(4)), Conn: r.Uint64(), CloseCode: uint16(r.Uint32()),
			URI: "/" + randText(r, 40), RemoteAddr: randText(r, 21), RequestID: randText(r, 20),
			Headers: hs, Data: randBytes(r, 256),
		}
		gotEv, err := DecodeWSEvent(ev.Append(nil))
		if err != nil {
			t.Fatal(err)
		}
		gotEv.Headers, gotEv.Data = normalize(gotEv.Headers), normalize(gotEv.Data)
		ev.Headers, ev.Data = normalize(ev.Headers), normalize(ev.Data)
		if !reflect.DeepEqual(gotEv, ev) {
			t.Fatalf("WebSocket event round trip: got %+v, want %+v", gotEv, ev)
		}

		timer := TimerEvent{
			Timer: randText(r, 20), ScheduledMs: r.Uint64(), Run: r.Uint64(), Skipped: r.Uint32(),
			Payload: randBytes(r, 64),
		}
		gotTimer, err := DecodeTimerEvent(timer.Append(nil))
		if err != nil {
			t.Fatal(err)
		}
		gotTimer.Payload, timer.Payload = normalize(gotTimer.Payload), normalize(timer.Payload)
		if !reflect.DeepEqual(gotTimer, timer) {
			t.Fatalf("timer event round trip: got %+v, want %+v", gotTimer, timer)
		}

		tcp := TCPEvent{
			Type: TCPEventType(1 + r.IntN(3)), Conn: r.Uint64(), Listener: randText(r, 20),
			RemoteAddr: randText(r, 21), RequestID: randText(r, 20), Data: randBytes(r, 256),
		}
		gotTCP, err := DecodeTCPEvent(tcp.Append(nil))
		if err != nil {
			t.Fatal(err)
		}
		gotTCP.Data, tcp.Data = normalize(gotTCP.Data), normalize(tcp.Data)
		if !reflect.DeepEqual(gotTCP, tcp) {
			t.Fatalf("TCP event round trip: got %+v, want %+v", gotTCP, tcp)
		}
	}
}

// Every cut of a WebSocket event inside its head is an error that names
// the element it stopped in; a cut inside the data is shorter data.
func TestTruncatedWSEvents(t *testing.T) {
	ev := WSEvent{
		Type: WSText, Conn: 1 << 40, URI: "/ws?a=b", RemoteAddr: "1.2.3.4:5", RequestID: "id",
		Headers: []Header{{"x", "yz"}}, Data: []byte("message"),
	}
	enc := ev.Append(nil)
	head := len(enc) - len(ev.Data)
	want := func(cut int) string {
		switch {
		case cut < 1:
			return "event type"
		case cut < 9:
			return "connection"
		case cut < 11:
			return "close code"
		case cut < 11+4+len(ev.URI):
			return "uri"
		case cut < 11+8+len(ev.URI)+len(ev.RemoteAddr):
			return "remote address"
		case cut < 11+12+len(ev.URI)+len(ev.RemoteAddr)+len(ev.RequestID):
			return "request id"
		default:
			return "" // somewhere in the headers
		}
	}
	var s WSEventSpans
	for cut := range len(enc) {
		err := s.Decode(enc[:cut])
		if cut >= head {
			if err != nil || s.Data != head {
				t.Fatalf("cut at %d in the data: %v, data at %d", cut, err, s.Data)
			}
			continue
		}
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Fatalf("cut at %d: got %v, want a DecodeError", cut, err)
		}
		if what := want(cut); what != "" && err.Error() != "envelope truncated in "+what {
			t.Errorf("cut at %d: %q, want truncated in %s", cut, err, what)
		}
	}
}

// Every cut of a timer event before its payload is an error that names
// the element it stopped in; a cut inside the payload is a shorter payload.
func TestTruncatedTimerEvents(t *testing.T) {
	ev := TimerEvent{Timer: "cleanup", ScheduledMs: 1 << 40, Run: 3, Skipped: 1, Payload: []byte("payload")}
	enc := ev.Append(nil)
	head := len(enc) - len(ev.Payload)
	name := 4 + len(ev.Timer)
	want := func(cut int) string {
		switch {
		case cut < name:
			return "timer name"
		case cut < name+8:
			return "scheduled time"
		case cut < name+16:
			return "run number"
		default:
			return "skipped runs"
		}
	}
	var s TimerEventSpans
	for cut := range len(enc) {
		err := s.Decode(enc[:cut])
		if cut >= head {
			if err != nil || s.Payload != head || string(s.Timer.Bytes(enc)) != ev.Timer {
				t.Fatalf("cut at %d in the payload: %v, payload at %d", cut, err, s.Payload)
			}
			continue
		}
		if err == nil || err.Error() != "envelope truncated in "+want(cut) {
			t.Errorf("cut at %d: %v, want truncated in %s", cut, err, want(cut))
		}
	}
}

// Every cut of a TCP event inside its head is an error that names the
// element it stopped in; a cut inside the data is shorter data.
func TestTruncatedTCPEvents(t *testing.T) {
	ev := TCPEvent{
		Type: TCPFrame, Conn: 1 << 40, Listener: "modbus", RemoteAddr: "1.2.3.4:5", RequestID: "id",
		Data: []byte{0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 2},
	}
	enc := ev.Append(nil)
	head := len(enc) - len(ev.Data)
	want := func(cut int) string {
		switch {
		case cut < 1:
			return "event type"
		case cut < 9:
			return "connection"
		case cut < 9+4+len(ev.Listener):
			return "listener"
		case cut < 9+8+len(ev.Listener)+len(ev.RemoteAddr):
			return "remote address"
		default:
			return "request id"
		}
	}
	var s TCPEventSpans
	for cut := range len(enc) {
		err := s.Decode(enc[:cut])
		if cut >= head {
			if err != nil || s.Data != head || string(s.Listener.Bytes(enc)) != ev.Listener {
				t.Fatalf("cut at %d in the data: %v, data at %d", cut, err, s.Data)
			}
			continue
		}
		if err == nil || err.Error() != "envelope truncated in "+want(cut) {
			t.Errorf("cut at %d: %v, want truncated in %s", cut, err, want(cut))
		}
	}
}

// Every cut of a request inside its head is an error; a cut inside the
// body is a shorter body.
func TestTruncatedRequests(t *testing.T) {
	req := HTTPRequest{
		Method: "PUT", URI: "/a?b=c", RequestID: "id", RemoteAddr: "1.2.3.4:5",
		Headers: []Header{{"x", "yz"}, {"accept", "*/*"}}, Body: []byte("body"),
	}
	enc := req.Append(nil)
	head := len(enc) - len(req.Body)
	var s RequestSpans
	for cut := range len(enc) {
		err := s.Decode(enc[:cut])
		if cut < head {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("cut at %d: got %v, want a DecodeError", cut, err)
			}
		} else if err != nil || s.Body != head {
			t.Fatalf("cut at %d in the body: %v, body at %d", cut, err, s.Body)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		decode func() error
		want   string
	}{
		{"hostile header count", func() error {
			_, err := DecodeHTTPResponse([]byte{200, 0, 0xff, 0xff, 0xff, 0xff})
			return err
		}, "header count 4294967295 exceeds the envelope size"},
		{"status out of range", func() error {
			_, err := DecodeHTTPResponse([]byte{42, 0, 0, 0, 0, 0})
			return err
		}, "HTTP status 42 is out of range"},
		{"status 1000", func() error {
			_, err := DecodeHTTPResponse(AppendU32(AppendU16(nil, 1000), 0))
			return err
		}, "HTTP status 1000 is out of range"},
		{"truncated status", func() error {
			_, err := DecodeHTTPResponse([]byte{200})
			return err
		}, "envelope truncated in status"},
		{"truncated function name", func() error {
			_, _, err := DecodeCall([]byte{5, 0, 0, 0, 'a'})
			return err
		}, "envelope truncated in function name"},
		{"function name not UTF-8", func() error {
			_, _, err := DecodeCall([]byte{1, 0, 0, 0, 0xff})
			return err
		}, "function name is not valid UTF-8"},
		{"WebSocket event type 0", func() error {
			_, err := DecodeWSEvent([]byte{0})
			return err
		}, "event type 0 is unknown"},
		{"WebSocket event type 9", func() error {
			_, err := DecodeWSEvent(append([]byte{9}, make([]byte, 40)...))
			return err
		}, "event type 9 is unknown"},
		{"empty WebSocket event", func() error {
			_, err := DecodeWSEvent(nil)
			return err
		}, "envelope truncated in event type"},
		{"WebSocket event of garbage", func() error {
			_, err := DecodeWSEvent([]byte("\x02garbage!!!!!!!!"))
			return err
		}, "envelope truncated in uri"},
		{"WebSocket uri not UTF-8", func() error {
			b := (&WSEvent{Type: WSText, Conn: 1}).Append(nil)[:11]
			_, err := DecodeWSEvent(AppendField(b, []byte{'/', 0xff}))
			return err
		}, "uri is not valid UTF-8"},
		{"WebSocket hostile header count", func() error {
			b := (&WSEvent{Type: WSOpen, Conn: 1}).Append(nil)
			binary.LittleEndian.PutUint32(b[len(b)-4:], 1<<31)
			_, err := DecodeWSEvent(b)
			return err
		}, "header count 2147483648 exceeds the envelope size"},
		{"TCP event type 0", func() error {
			_, err := DecodeTCPEvent([]byte{0})
			return err
		}, "event type 0 is unknown"},
		{"TCP event type 4", func() error {
			_, err := DecodeTCPEvent(append([]byte{4}, make([]byte, 40)...))
			return err
		}, "event type 4 is unknown"},
		{"empty TCP event", func() error {
			_, err := DecodeTCPEvent(nil)
			return err
		}, "envelope truncated in event type"},
		{"TCP listener not UTF-8", func() error {
			b := (&TCPEvent{Type: TCPOpen, Conn: 1}).Append(nil)[:9]
			_, err := DecodeTCPEvent(AppendField(b, []byte{'a', 0xff}))
			return err
		}, "listener is not valid UTF-8"},
		{"TCP listener longer than the envelope", func() error {
			b := (&TCPEvent{Type: TCPFrame, Conn: 1}).Append(nil)[:9]
			_, err := DecodeTCPEvent(append(AppendU32(b, 1<<31), "modbus"...))
			return err
		}, "envelope truncated in listener"},
		{"empty timer event", func() error {
			_, err := DecodeTimerEvent(nil)
			return err
		}, "envelope truncated in timer name"},
		{"timer name not UTF-8", func() error {
			_, err := DecodeTimerEvent(AppendField(nil, []byte{'a', 0xff}))
			return err
		}, "timer name is not valid UTF-8"},
		{"timer name longer than the envelope", func() error {
			_, err := DecodeTimerEvent([]byte{0xff, 0xff, 0xff, 0xff, 'a'})
			return err
		}, "envelope truncated in timer name"},
		{"uri not UTF-8", func() error {
			var s RequestSpans
			return s.Decode(AppendField(AppendFieldString(nil, "GET"), []byte{0xc3}))
		}, "uri is not valid UTF-8"},
		{"header value cut", func() error {
			b := AppendFieldString(nil, "GET")
			for range 3 {
				b = AppendFieldString(b, "")
			}
			b = AppendU32(b, 1)
			b = AppendFieldString(b, "a")
			b = AppendU32(b, 9) // a value of 9 bytes that are not there
			var s RequestSpans
			return s.Decode(b)
		}, "envelope truncated in header value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.decode()
			if err == nil || err.Error() != tc.want {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// Decode reuses the Headers array, and a shorter event must not see the
// headers of an earlier one.
func TestWSEventSpansReuse(t *testing.T) {
	var s WSEventSpans
	long := (&WSEvent{Type: WSOpen, Conn: 1, Headers: []Header{{"a", "1"}, {"b", "2"}}}).Append(nil)
	short := (&WSEvent{Type: WSText, Conn: 1, Data: []byte("x")}).Append(nil)
	if err := s.Decode(long); err != nil {
		t.Fatal(err)
	}
	if err := s.Decode(short); err != nil {
		t.Fatal(err)
	}
	if len(s.Headers) != 0 || s.Type != WSText || string(short[s.Data:]) != "x" {
		t.Fatalf("after reuse: %+v", s)
	}
}

// Decode reuses the Headers array, and a shorter request must not see the
// headers of an earlier one.
func TestRequestSpansReuse(t *testing.T) {
	var s RequestSpans
	long := (&HTTPRequest{Method: "GET", URI: "/", Headers: []Header{{"a", "1"}, {"b", "2"}}}).Append(nil)
	short := (&HTTPRequest{Method: "GET", URI: "/", Headers: []Header{{"c", "3"}}}).Append(nil)
	if err := s.Decode(long); err != nil {
		t.Fatal(err)
	}
	if err := s.Decode(short); err != nil {
		t.Fatal(err)
	}
	if len(s.Headers) != 1 || string(s.Headers[0].Name.Bytes(short)) != "c" {
		t.Fatalf("headers after reuse: %+v", s.Headers)
	}
}

// The host decodes what guests write and guests decode what the host
// writes: hostile bytes must give an error, never a panic.
func FuzzDecoders(f *testing.F) {
	f.Add([]byte{})
	f.Add((&HTTPRequest{Method: "GET", URI: "/", Headers: []Header{{"a", "b"}}, Body: []byte("x")}).Append(nil))
	f.Add((&HTTPResponse{Status: 200, Headers: []Header{{"a", "b"}}}).Append(nil))
	f.Add((&WSEvent{Type: WSOpen, Conn: 3, URI: "/", Headers: []Header{{"a", "b"}}}).Append(nil))
	f.Add((&TCPEvent{Type: TCPFrame, Conn: 3, Listener: "modbus", Data: []byte{0, 1}}).Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s RequestSpans
		if s.Decode(b) == nil && s.Body > len(b) {
			t.Fatal("body offset past the end")
		}
		_, _ = DecodeHTTPResponse(b)
		_, _, _ = DecodeCall(b)
		var ws WSEventSpans
		if ws.Decode(b) == nil && ws.Data > len(b) {
			t.Fatal("data offset past the end")
		}
		var tcp TCPEventSpans
		if tcp.Decode(b) == nil && tcp.Data > len(b) {
			t.Fatal("TCP data offset past the end")
		}
	})
}
