package shanhai

import (
	"github.com/shanhai-edge/shanhai/sdk/go/internal/hostcall"
	"github.com/shanhai-edge/shanhai/sdk/go/internal/wire"
)

// DB is a SQLite database of the host: the module's own or a shared one,
// as named by [Database]. The value is just the name, so make one wherever
// it is needed.
//
// Each call runs one statement, with its arguments bound to ?1, ?2, ...
// (or plain ?). Arguments may be nil (NULL), any integer type (a uint64
// above math.MaxInt64 is refused), float32 or float64, string (UTF-8),
// []byte (a blob) or bool (stored as 0 or 1, as SQLite does); anything
// else is [ErrInvalidArgument] without a host call. Errors: [ErrDenied]
// when the database is not granted; [ErrInvalidArgument] for bad SQL,
// with SQLite's message in the error's text; [ErrTooLarge] beyond the
// gateway's row or byte limit; [ErrUnavailable] on a timeout.
type DB struct {
	name string
}

// Database returns the SQLite database called name. The empty name is
// the module's own database, which needs the grant sqlite = true; any
// other name is a database shared between modules, which each of them
// needs in its sqlite_databases grant:
//
//	[modules.orders.grants]
//	sqlite = true
//	sqlite_databases = ["catalog"]
//
// For example:
//
//	db := shanhai.Database("")
//	_, err := db.Exec("CREATE TABLE IF NOT EXISTS hits (path TEXT PRIMARY KEY, n INTEGER)")
//	_, err = db.Exec("INSERT INTO hits VALUES (?1, 1) ON CONFLICT (path) DO UPDATE SET n = n + 1", r.URL.Path)
func Database(name string) DB { return DB{name: name} }

// Name returns the database's name, "" for the module's own.
func (d DB) Name() string { return d.name }

// SQLResult says what a statement run by [DB.Exec] changed.
type SQLResult struct {
	// RowsAffected counts the rows an INSERT, UPDATE or DELETE changed.
	RowsAffected uint64
	// LastInsertID is the rowid of the last row inserted through the
	// database's connection.
	LastInsertID int64
}

// SQLRows is the result of a query run by [DB.Query], read whole: the
// column names and every row, each with one cell per column. A cell is
// nil (NULL), int64 (INTEGER), float64 (REAL), string (TEXT) or []byte
// (BLOB).
type SQLRows struct {
	Columns []string
	Rows    [][]any
}

// Exec runs a statement that returns no rows (CREATE, INSERT, UPDATE,
// DELETE, ...) and says what it changed; rows it does return are
// discarded.
//
//	res, err := shanhai.Database("").Exec("INSERT INTO notes (body) VALUES (?1)", body)
//	if err != nil {
//		return err
//	}
//	id := res.LastInsertID
func (d DB) Exec(query string, args ...any) (SQLResult, error) {
	r, err := d.exec(query, args)
	if err != nil {
		return SQLResult{}, err
	}
	return SQLResult{RowsAffected: r.RowsAffected, LastInsertID: r.LastInsertRowID}, nil
}

// Query runs a statement and returns its rows, all of them: the host
// refuses results beyond its limits with [ErrTooLarge], so bound large
// queries with LIMIT.
//
//	rows, err := shanhai.Database("").Query("SELECT id, body FROM notes WHERE owner = ?1", owner)
//	if err != nil {
//		return err
//	}
//	for _, row := range rows.Rows {
//		id, _ := row[0].(int64)
//		body, _ := row[1].(string)
//		...
//	}
func (d DB) Query(query string, args ...any) (*SQLRows, error) {
	r, err := d.exec(query, args)
	if err != nil {
		return nil, err
	}
	return &SQLRows{Columns: r.Columns, Rows: r.Rows}, nil
}

func (d DB) exec(query string, args []any) (wire.SQLResult, error) {
	var params []byte
	if len(args) > 0 {
		var err error
		if params, err = wire.AppendSQLParams(nil, args); err != nil {
			return wire.SQLResult{}, &HostError{Func: "sql_exec", Status: hostcall.StatusInvalidArgument, Message: err.Error()}
		}
	}
	n, err := clearingResult("sql_exec", hostcall.SQLExec(d.name, query, params))
	if err != nil {
		return wire.SQLResult{}, err
	}
	b, err := readStaged("sql_exec", n)
	if err != nil {
		return wire.SQLResult{}, err
	}
	r, err := wire.DecodeSQLResult(b)
	if err != nil {
		return wire.SQLResult{}, &HostError{Func: "sql_exec", Status: hostcall.StatusInternal, Message: "malformed SQL result: " + err.Error()}
	}
	return r, nil
}
