package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"unicode/utf8"
)

// This file holds the envelopes of the state host functions (docs/abi.md,
// "KeyPage", "SQL values", "SqlResult"); crates/abi/src/wire/state.rs is
// their Rust twin.

// KeyPage is a KeyPage envelope, the page of keys kv_list stages.
type KeyPage struct {
	// Keys are the page's keys, in the store's order. Keys are bytes, not
	// necessarily UTF-8; a string holds them unchanged.
	Keys []string
	// Next is the cursor for the next page; empty on the last page.
	Next string
}

// Append appends the encoded page to dst.
func (p *KeyPage) Append(dst []byte) []byte {
	dst = AppendU32(dst, uint32(len(p.Keys)))
	for _, k := range p.Keys {
		dst = AppendFieldString(dst, k)
	}
	return AppendFieldString(dst, p.Next)
}

// DecodeKeyPage decodes a KeyPage envelope into a copy, refusing what
// crates/abi refuses: truncation, a key count larger than the bytes that
// follow, and bytes after the cursor.
func DecodeKeyPage(b []byte) (KeyPage, error) {
	d := decoder{b: b}
	count, err := d.count(4, "key count")
	if err != nil {
		return KeyPage{}, err
	}
	var p KeyPage
	if count > 0 {
		p.Keys = make([]string, 0, count)
	}
	for range count {
		k, err := d.field("key")
		if err != nil {
			return KeyPage{}, err
		}
		p.Keys = append(p.Keys, string(k.Bytes(b)))
	}
	next, err := d.field("next cursor")
	if err != nil {
		return KeyPage{}, err
	}
	p.Next = string(next.Bytes(b))
	return p, d.end("key page")
}

// SQL value tags (docs/abi.md, "SQL values").
const (
	SQLNull    byte = 0
	SQLInteger byte = 1
	SQLReal    byte = 2
	SQLText    byte = 3
	SQLBlob    byte = 4
)

// SQLValue converts v to the Go type of the SQL value it encodes as, the
// types SQL values decode to: nil (NULL), int64 (integer), float64 (real),
// string (text) or []byte (blob). Besides those it accepts the other
// integer types, float32, and bool (the integer 0 or 1, SQLite's
// booleans). A uint or uint64 above math.MaxInt64, text that is not
// UTF-8, and any other type are errors.
func SQLValue(v any) (any, error) {
	switch v := v.(type) {
	case nil, int64, float64, []byte:
		return v, nil
	case string:
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("SQL text %q is not valid UTF-8", v)
		}
		return v, nil
	case int:
		return int64(v), nil
	case int8:
		return int64(v), nil
	case int16:
		return int64(v), nil
	case int32:
		return int64(v), nil
	case uint8:
		return int64(v), nil
	case uint16:
		return int64(v), nil
	case uint32:
		return int64(v), nil
	case uint:
		return uintValue(uint64(v))
	case uint64:
		return uintValue(v)
	case float32:
		return float64(v), nil
	case bool:
		if v {
			return int64(1), nil
		}
		return int64(0), nil
	default:
		return nil, fmt.Errorf("unsupported SQL value type %T", v)
	}
}

func uintValue(v uint64) (any, error) {
	if v > math.MaxInt64 {
		return nil, fmt.Errorf("SQL integer %d overflows int64", v)
	}
	return int64(v), nil
}

// AppendSQLValue appends one SQL value, a tag and its data; v is converted
// as by [SQLValue].
func AppendSQLValue(dst []byte, v any) ([]byte, error) {
	v, err := SQLValue(v)
	if err != nil {
		return dst, err
	}
	switch v := v.(type) {
	case nil:
		return append(dst, SQLNull), nil
	case int64:
		return binary.LittleEndian.AppendUint64(append(dst, SQLInteger), uint64(v)), nil
	case float64:
		return binary.LittleEndian.AppendUint64(append(dst, SQLReal), math.Float64bits(v)), nil
	case string:
		return AppendFieldString(append(dst, SQLText), v), nil
	default:
		return AppendField(append(dst, SQLBlob), v.([]byte)), nil
	}
}

// AppendSQLParams appends the parameters of a statement (the params of
// sql_exec): their count, then each value as by [AppendSQLValue]. On an
// error it returns dst unchanged and names the parameter, from 1 as in
// ?1, ?2, ...
func AppendSQLParams(dst []byte, params []any) ([]byte, error) {
	start := len(dst)
	dst = AppendU32(dst, uint32(len(params)))
	for i, p := range params {
		var err error
		if dst, err = AppendSQLValue(dst, p); err != nil {
			return dst[:start], fmt.Errorf("parameter %d: %w", i+1, err)
		}
	}
	return dst, nil
}

// DecodeSQLParams decodes the parameters of a statement into a copy; zero
// bytes are no parameters. Values are nil, int64, float64, string or
// []byte.
func DecodeSQLParams(b []byte) ([]any, error) {
	if len(b) == 0 {
		return nil, nil
	}
	d := decoder{b: b}
	count, err := d.count(1, "parameter count")
	if err != nil {
		return nil, err
	}
	params := make([]any, 0, count)
	for range count {
		v, err := d.sqlValue()
		if err != nil {
			return nil, err
		}
		params = append(params, v)
	}
	return params, d.end("SQL parameters")
}

// SQLResult is a SqlResult envelope, the result of a statement that
// sql_exec stages.
type SQLResult struct {
	// RowsAffected counts the rows an INSERT, UPDATE or DELETE changed.
	RowsAffected uint64
	// LastInsertRowID is the rowid of the last row inserted.
	LastInsertRowID int64
	// Columns are a query's column names; empty for other statements.
	Columns []string
	// Rows hold one value per column each: nil, int64, float64, string or
	// []byte.
	Rows [][]any
}

// Append appends the encoded result to dst. Values are converted as by
// [SQLValue]; a value it refuses, or a row whose length differs from the
// number of columns, is an error, and dst is returned unchanged.
func (r *SQLResult) Append(dst []byte) ([]byte, error) {
	start := len(dst)
	dst = binary.LittleEndian.AppendUint64(dst, r.RowsAffected)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.LastInsertRowID))
	dst = AppendU32(dst, uint32(len(r.Columns)))
	for _, c := range r.Columns {
		if !utf8.ValidString(c) {
			return dst[:start], fmt.Errorf("column name %q is not valid UTF-8", c)
		}
		dst = AppendFieldString(dst, c)
	}
	dst = AppendU32(dst, uint32(len(r.Rows)))
	for i, row := range r.Rows {
		if len(row) != len(r.Columns) {
			return dst[:start], fmt.Errorf("row %d has %d values for %d columns", i, len(row), len(r.Columns))
		}
		for j, v := range row {
			var err error
			if dst, err = AppendSQLValue(dst, v); err != nil {
				return dst[:start], fmt.Errorf("row %d, column %d: %w", i, j, err)
			}
		}
	}
	return dst, nil
}

// DecodeSQLResult decodes a SqlResult envelope into a copy, refusing what
// crates/abi refuses: truncation, counts larger than the bytes that
// follow, unknown value tags, text that is not UTF-8 and trailing bytes.
func DecodeSQLResult(b []byte) (SQLResult, error) {
	d := decoder{b: b}
	var r SQLResult
	var err error
	if r.RowsAffected, err = d.u64("rows affected"); err != nil {
		return SQLResult{}, err
	}
	lastID, err := d.u64("last insert rowid")
	if err != nil {
		return SQLResult{}, err
	}
	r.LastInsertRowID = int64(lastID)
	columns, err := d.count(4, "column count")
	if err != nil {
		return SQLResult{}, err
	}
	if columns > 0 {
		r.Columns = make([]string, 0, columns)
	}
	for range columns {
		c, err := d.text("column name")
		if err != nil {
			return SQLResult{}, err
		}
		r.Columns = append(r.Columns, string(c.Bytes(b)))
	}
	rows, err := d.u32("row count")
	if err != nil {
		return SQLResult{}, err
	}
	// A row of zero columns takes no bytes: bound the count by the bytes
	// each row needs, at least one tag per column.
	if rows > 0 && (columns == 0 || uint64(rows) > uint64(len(b)-d.off)/uint64(columns)) {
		return SQLResult{}, &DecodeError{kind: errTooManyHeaders, number: rows}
	}
	if rows > 0 {
		r.Rows = make([][]any, 0, rows)
	}
	for range rows {
		row := make([]any, 0, columns)
		for range columns {
			v, err := d.sqlValue()
			if err != nil {
				return SQLResult{}, err
			}
			row = append(row, v)
		}
		r.Rows = append(r.Rows, row)
	}
	return r, d.end("SQL result")
}

func (d *decoder) sqlValue() (any, error) {
	if d.off >= len(d.b) {
		return nil, &DecodeError{kind: errTruncated, what: "value tag"}
	}
	tag := d.b[d.off]
	d.off++
	switch tag {
	case SQLNull:
		return nil, nil
	case SQLInteger:
		v, err := d.u64("integer")
		return int64(v), err
	case SQLReal:
		v, err := d.u64("real")
		return math.Float64frombits(v), err
	case SQLText:
		s, err := d.text("text")
		if err != nil {
			return nil, err
		}
		return string(s.Bytes(d.b)), nil
	case SQLBlob:
		s, err := d.field("blob")
		if err != nil {
			return nil, err
		}
		return append([]byte{}, s.Bytes(d.b)...), nil
	default:
		return nil, &DecodeError{kind: errBadValueTag, number: uint32(tag)}
	}
}
