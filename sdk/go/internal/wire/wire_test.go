package wire

import (
	"bytes"
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
	if len(v.HTTPRequest) == 0 || len(v.HTTPResponse) == 0 || len(v.Call) == 0 {
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
	f.Fuzz(func(t *testing.T, b []byte) {
		var s RequestSpans
		if s.Decode(b) == nil && s.Body > len(b) {
			t.Fatal("body offset past the end")
		}
		_, _ = DecodeHTTPResponse(b)
		_, _, _ = DecodeCall(b)
	})
}
