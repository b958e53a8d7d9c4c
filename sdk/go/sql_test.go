//go:build !wasm

package shanhai_test

import (
	"errors"
	"math"
	"reflect"
	"testing"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

// statement is one call the SQL handler saw.
type statement struct {
	db, query string
	args      []any
}

func recordSQL(resp shanhaitest.SQLResponse, err error) *[]statement {
	var seen []statement
	shanhaitest.HandleSQL(func(db, query string, args []any) (shanhaitest.SQLResponse, error) {
		seen = append(seen, statement{db, query, args})
		return resp, err
	})
	return &seen
}

func TestSQLArguments(t *testing.T) {
	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{SQLite: true})
	seen := recordSQL(shanhaitest.SQLResponse{RowsAffected: 1, LastInsertID: 42}, nil)

	res, err := shanhai.Database("").Exec("INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
		nil, 7, int64(math.MinInt64), 2.5, float32(0.25), "héllo", []byte{0, 0xff}, true, false, uint8(9))
	if err != nil || res != (shanhai.SQLResult{RowsAffected: 1, LastInsertID: 42}) {
		t.Fatalf("Exec = %+v, %v", res, err)
	}
	want := statement{"", "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)", []any{
		nil, int64(7), int64(math.MinInt64), 2.5, 0.25, "héllo", []byte{0, 0xff}, int64(1), int64(0), int64(9),
	}}
	if len(*seen) != 1 || !reflect.DeepEqual((*seen)[0], want) {
		t.Errorf("the host got %#v\nwant %#v", *seen, want)
	}

	// No arguments: no parameters.
	if _, err := shanhai.Database("").Exec("DELETE FROM t"); err != nil {
		t.Fatal(err)
	}
	if got := (*seen)[1]; got.args != nil {
		t.Errorf("no arguments: %#v", got.args)
	}

	// Arguments the ABI cannot carry fail before the host is called.
	for _, bad := range []any{struct{}{}, uint64(math.MaxUint64), "\xff", []string{"a"}} {
		_, err := shanhai.Database("").Exec("SELECT ?1", bad)
		var he *shanhai.HostError
		if !errors.As(err, &he) || he.Status != -3 || he.Func != "sql_exec" || he.Message == "" {
			t.Errorf("argument %#v: %v", bad, err)
		}
	}
	if len(*seen) != 2 {
		t.Errorf("bad arguments reached the host: %d calls", len(*seen))
	}
}

func TestSQLQuery(t *testing.T) {
	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{SQLiteDatabases: []string{"catalog"}})
	recordSQL(shanhaitest.SQLResponse{
		Columns: []string{"id", "name", "price", "image", "note"},
		Rows: [][]any{
			{1, "tea", 3.5, []byte{0x89, 'P'}, nil},
			{int64(2), "", float32(0.5), []byte{}, true},
		},
	}, nil)
	rows, err := shanhai.Database("catalog").Query("SELECT * FROM products")
	if err != nil {
		t.Fatal(err)
	}
	want := &shanhai.SQLRows{
		Columns: []string{"id", "name", "price", "image", "note"},
		Rows: [][]any{
			{int64(1), "tea", 3.5, []byte{0x89, 'P'}, nil},
			{int64(2), "", 0.5, []byte{}, int64(1)},
		},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("rows %#v\nwant %#v", rows, want)
	}

	recordSQL(shanhaitest.SQLResponse{}, nil)
	rows, err = shanhai.Database("catalog").Query("SELECT * FROM empty")
	if err != nil || len(rows.Columns) != 0 || len(rows.Rows) != 0 {
		t.Errorf("empty result: %#v, %v", rows, err)
	}
}

func TestSQLErrors(t *testing.T) {
	shanhaitest.Reset()
	_, err := shanhai.Database("").Exec("SELECT 1")
	if want := "shanhai: sql_exec: denied: the module's own SQLite database is not granted (grants.sqlite = true)"; !errors.Is(err, shanhai.ErrDenied) || err.Error() != want {
		t.Errorf("no grant: %v", err)
	}
	shanhaitest.SetGrants(shanhaitest.Grants{SQLite: true})
	if _, err := shanhai.Database("other").Query("SELECT 1"); !errors.Is(err, shanhai.ErrDenied) {
		t.Errorf("shared database without a grant: %v", err)
	}
	if _, err := shanhai.Database("").Exec("SELECT 1"); !errors.Is(err, shanhai.ErrUnavailable) {
		t.Errorf("no responder: %v", err)
	}

	// SQLite's message travels in the error.
	recordSQL(shanhaitest.SQLResponse{}, errors.New(`near "SELEC": syntax error`))
	_, err = shanhai.Database("").Exec("SELEC 1")
	if want := `shanhai: sql_exec: invalid argument: near "SELEC": syntax error`; !errors.Is(err, shanhai.ErrInvalidArgument) || err.Error() != want {
		t.Errorf("bad SQL: %v", err)
	}
	recordSQL(shanhaitest.SQLResponse{}, &shanhai.HostError{Status: -4, Message: "more than 10000 rows"})
	_, err = shanhai.Database("").Query("SELECT * FROM big")
	if want := "shanhai: sql_exec: too large: more than 10000 rows"; !errors.Is(err, shanhai.ErrTooLarge) || err.Error() != want {
		t.Errorf("too large: %v", err)
	}
	// A row whose width differs from the columns is a broken host.
	recordSQL(shanhaitest.SQLResponse{Columns: []string{"a", "b"}, Rows: [][]any{{1}}}, nil)
	if _, err := shanhai.Database("").Query("SELECT a, b"); !errors.Is(err, shanhai.ErrInternal) {
		t.Errorf("bad result: %v", err)
	}
}
