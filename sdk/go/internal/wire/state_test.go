package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"
)

// sqlValueVector is one SQL value in testdata/vectors.json.
type sqlValueVector struct {
	Type    string  `json:"type"`
	Integer int64   `json:"integer"`
	Real    float64 `json:"real"`
	Text    string  `json:"text"`
	Hex     string  `json:"hex"`
}

func (v sqlValueVector) value(t *testing.T) any {
	t.Helper()
	switch v.Type {
	case "null":
		return nil
	case "integer":
		return v.Integer
	case "real":
		return v.Real
	case "text":
		return v.Text
	case "blob":
		return unhex(t, v.Hex)
	}
	t.Fatalf("unknown SQL value type %q", v.Type)
	return nil
}

// stateVectors are the state envelopes of testdata/vectors.json.
type stateVectors struct {
	KeyPage []struct {
		Name string   `json:"name"`
		Keys []string `json:"keys"`
		Next string   `json:"next"`
		Hex  string   `json:"hex"`
	} `json:"key_page"`
	SQLParams []struct {
		Name   string           `json:"name"`
		Values []sqlValueVector `json:"values"`
		Hex    string           `json:"hex"`
	} `json:"sql_params"`
	SQLResult []struct {
		Name            string             `json:"name"`
		RowsAffected    uint64             `json:"rows_affected"`
		LastInsertRowID int64              `json:"last_insert_rowid"`
		Columns         []string           `json:"columns"`
		Rows            [][]sqlValueVector `json:"rows"`
		Hex             string             `json:"hex"`
	} `json:"sql_result"`
}

func loadStateVectors(t *testing.T) stateVectors {
	t.Helper()
	b, err := os.ReadFile("../../testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v stateVectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.KeyPage) == 0 || len(v.SQLParams) == 0 || len(v.SQLResult) == 0 {
		t.Fatal("vectors.json lacks a kind of state envelope")
	}
	return v
}

func TestVectorsKeyPage(t *testing.T) {
	for _, v := range loadStateVectors(t).KeyPage {
		t.Run(v.Name, func(t *testing.T) {
			want := unhex(t, v.Hex)
			page := KeyPage{Keys: v.Keys, Next: v.Next}
			if got := page.Append(nil); !bytes.Equal(got, want) {
				t.Errorf("encoded\n %x\nwant\n %x", got, want)
			}
			got, err := DecodeKeyPage(want)
			if err != nil {
				t.Fatal(err)
			}
			got.Keys, page.Keys = normalize(got.Keys), normalize(page.Keys)
			if !reflect.DeepEqual(got, page) {
				t.Errorf("decoded %+v\nwant %+v", got, page)
			}
		})
	}
}

func TestVectorsSQLParams(t *testing.T) {
	for _, v := range loadStateVectors(t).SQLParams {
		t.Run(v.Name, func(t *testing.T) {
			want := unhex(t, v.Hex)
			var params []any
			for _, value := range v.Values {
				params = append(params, value.value(t))
			}
			got, err := AppendSQLParams(nil, params)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("encoded\n %x, %v\nwant\n %x", got, err, want)
			}
			decoded, err := DecodeSQLParams(want)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normalize(decoded), normalize(params)) {
				t.Errorf("decoded %#v\nwant %#v", decoded, params)
			}
		})
	}
}

func TestVectorsSQLResult(t *testing.T) {
	for _, v := range loadStateVectors(t).SQLResult {
		t.Run(v.Name, func(t *testing.T) {
			want := unhex(t, v.Hex)
			result := SQLResult{RowsAffected: v.RowsAffected, LastInsertRowID: v.LastInsertRowID, Columns: v.Columns}
			for _, row := range v.Rows {
				values := []any{}
				for _, value := range row {
					values = append(values, value.value(t))
				}
				result.Rows = append(result.Rows, values)
			}
			got, err := result.Append(nil)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("encoded\n %x, %v\nwant\n %x", got, err, want)
			}
			decoded, err := DecodeSQLResult(want)
			if err != nil {
				t.Fatal(err)
			}
			decoded.Columns, result.Columns = normalize(decoded.Columns), normalize(result.Columns)
			decoded.Rows, result.Rows = normalize(decoded.Rows), normalize(result.Rows)
			if !reflect.DeepEqual(decoded, result) {
				t.Errorf("decoded %#v\nwant %#v", decoded, result)
			}
		})
	}
}

func TestSQLValueConversions(t *testing.T) {
	for _, c := range []struct {
		in   any
		want any
	}{
		{nil, nil},
		{7, int64(7)},
		{int8(-8), int64(-8)},
		{int16(-16), int64(-16)},
		{int32(-32), int64(-32)},
		{int64(math.MinInt64), int64(math.MinInt64)},
		{uint8(8), int64(8)},
		{uint16(16), int64(16)},
		{uint32(math.MaxUint32), int64(math.MaxUint32)},
		{uint(9), int64(9)},
		{uint64(math.MaxInt64), int64(math.MaxInt64)},
		{float32(0.5), 0.5},
		{math.Inf(-1), math.Inf(-1)},
		{true, int64(1)},
		{false, int64(0)},
		{"text", "text"},
		{[]byte{0, 1}, []byte{0, 1}},
	} {
		got, err := SQLValue(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("SQLValue(%#v) = %#v, %v; want %#v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []any{uint64(math.MaxInt64 + 1), "\xff", struct{}{}, []int{1}, new(int64)} {
		if got, err := SQLValue(bad); err == nil {
			t.Errorf("SQLValue(%#v) = %#v, want an error", bad, got)
		}
	}

	dst := []byte("kept")
	got, err := AppendSQLParams(dst, []any{1, "ok", struct{}{}})
	if err == nil || !strings.HasPrefix(err.Error(), "parameter 3: ") || string(got) != "kept" {
		t.Errorf("bad parameter: %q, %v", got, err)
	}
	// A NaN's bits travel unchanged.
	nan := math.Float64frombits(0x7ff8000000000001)
	enc, _ := AppendSQLValue(nil, nan)
	params, err := DecodeSQLParams(append([]byte{1, 0, 0, 0}, enc...))
	if err != nil || math.Float64bits(params[0].(float64)) != 0x7ff8000000000001 {
		t.Errorf("NaN: %#v, %v", params, err)
	}
}

func TestSQLResultEncodingErrors(t *testing.T) {
	for name, r := range map[string]SQLResult{
		"short row":       {Columns: []string{"a", "b"}, Rows: [][]any{{1}}},
		"bad value":       {Columns: []string{"a"}, Rows: [][]any{{struct{}{}}}},
		"bad column name": {Columns: []string{"\xff"}},
	} {
		if got, err := r.Append([]byte("x")); err == nil || string(got) != "x" {
			t.Errorf("%s: %q, %v", name, got, err)
		}
	}
}

func TestStateDecodeErrors(t *testing.T) {
	page := (&KeyPage{Keys: []string{"a", "bc"}, Next: "bc"}).Append(nil)
	params, _ := AppendSQLParams(nil, []any{int64(1), "x", []byte("y"), 0.5, nil})
	result, _ := (&SQLResult{RowsAffected: 1, Columns: []string{"a", "b"}, Rows: [][]any{{int64(1), "x"}, {nil, []byte("y")}}}).Append(nil)

	// Every cut is an error; so is every extra byte.
	for name, c := range map[string]struct {
		enc    []byte
		decode func([]byte) error
	}{
		"key page":       {page, func(b []byte) error { _, err := DecodeKeyPage(b); return err }},
		"SQL parameters": {params, func(b []byte) error { _, err := DecodeSQLParams(b); return err }},
		"SQL result":     {result, func(b []byte) error { _, err := DecodeSQLResult(b); return err }},
	} {
		for cut := range len(c.enc) {
			if name == "SQL parameters" && cut == 0 {
				continue // zero bytes are no parameters
			}
			var de *DecodeError
			if err := c.decode(c.enc[:cut]); !errors.As(err, &de) {
				t.Errorf("%s cut at %d: %v, want a DecodeError", name, cut, err)
			}
		}
		err := c.decode(append(bytes.Clone(c.enc), 0))
		if err == nil || err.Error() != "bytes after the end of the "+name {
			t.Errorf("%s with a trailing byte: %v", name, err)
		}
	}

	keyPage := func(b []byte) error { _, err := DecodeKeyPage(b); return err }
	sqlParams := func(b []byte) error { _, err := DecodeSQLParams(b); return err }
	for name, c := range map[string]struct {
		decode func([]byte) error
		enc    []byte
		want   string
	}{
		"huge key count":    {keyPage, []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, "header count 4294967295 exceeds the envelope size"},
		"huge param count":  {sqlParams, []byte{9, 0, 0, 0, 0}, "header count 9 exceeds the envelope size"},
		"bad tag":           {sqlParams, []byte{1, 0, 0, 0, 5}, "SQL value tag 5 is unknown"},
		"text not UTF-8":    {sqlParams, []byte{1, 0, 0, 0, 3, 1, 0, 0, 0, 0xff}, "text is not valid UTF-8"},
		"truncated integer": {sqlParams, []byte{1, 0, 0, 0, 1, 0}, "envelope truncated in integer"},
	} {
		if err := c.decode(c.enc); err == nil || err.Error() != c.want {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}

	// Rows of zero columns take no bytes, so no row count can be trusted.
	noColumns := make([]byte, 16+4)
	noColumns = append(noColumns, 1, 0, 0, 0)
	if _, err := DecodeSQLResult(noColumns); err == nil || err.Error() != "header count 1 exceeds the envelope size" {
		t.Errorf("rows without columns: %v", err)
	}
}

func TestStateRoundTrips(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	randValue := func() any {
		switch r.IntN(5) {
		case 0:
			return nil
		case 1:
			return int64(r.Uint64())
		case 2:
			return math.Float64frombits(r.Uint64() &^ (0x7ff << 52)) // no NaN: DeepEqual
		case 3:
			return randText(r, 20)
		default:
			return randBytes(r, 20)
		}
	}
	for range 300 {
		var page KeyPage
		for range r.IntN(6) {
			page.Keys = append(page.Keys, string(randBytes(r, 12)))
		}
		page.Next = string(randBytes(r, 12))
		got, err := DecodeKeyPage(page.Append(nil))
		got.Keys, page.Keys = normalize(got.Keys), normalize(page.Keys)
		if err != nil || !reflect.DeepEqual(got, page) {
			t.Fatalf("key page round trip: %+v, %v; want %+v", got, err, page)
		}

		var params []any
		for range r.IntN(6) {
			params = append(params, randValue())
		}
		enc, err := AppendSQLParams(nil, params)
		if err != nil {
			t.Fatal(err)
		}
		gotParams, err := DecodeSQLParams(enc)
		if err != nil || !reflect.DeepEqual(normalize(gotParams), normalize(params)) {
			t.Fatalf("params round trip: %#v, %v; want %#v", gotParams, err, params)
		}

		res := SQLResult{RowsAffected: r.Uint64(), LastInsertRowID: int64(r.Uint64())}
		for i := range r.IntN(4) {
			res.Columns = append(res.Columns, randText(r, 6)+string(rune('a'+i)))
		}
		if len(res.Columns) > 0 {
			for range r.IntN(5) {
				row := make([]any, len(res.Columns))
				for i := range row {
					row[i] = randValue()
				}
				res.Rows = append(res.Rows, row)
			}
		}
		enc, err = res.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		gotRes, err := DecodeSQLResult(enc)
		gotRes.Columns, res.Columns = normalize(gotRes.Columns), normalize(res.Columns)
		gotRes.Rows, res.Rows = normalize(gotRes.Rows), normalize(res.Rows)
		if err != nil || !reflect.DeepEqual(gotRes, res) {
			t.Fatalf("result round trip: %#v, %v; want %#v", gotRes, err, res)
		}
	}
}

func FuzzStateDecoders(f *testing.F) {
	page := (&KeyPage{Keys: []string{"k"}, Next: "k"}).Append(nil)
	params, _ := AppendSQLParams(nil, []any{1, "x"})
	result, _ := (&SQLResult{Columns: []string{"a"}, Rows: [][]any{{nil}}}).Append(nil)
	for _, seed := range [][]byte{page, params, result, nil} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := DecodeKeyPage(b); err == nil && !bytes.Equal(p.Append(nil), b) {
			t.Errorf("key page %x re-encodes differently", b)
		}
		if ps, err := DecodeSQLParams(b); err == nil && len(b) > 0 {
			if enc, err := AppendSQLParams(nil, ps); err != nil || !bytes.Equal(enc, b) {
				t.Errorf("params %x re-encode as %x, %v", b, enc, err)
			}
		}
		if r, err := DecodeSQLResult(b); err == nil {
			if enc, err := r.Append(nil); err != nil || !bytes.Equal(enc, b) {
				t.Errorf("result %x re-encodes as %x, %v", b, enc, err)
			}
		}
	})
}
