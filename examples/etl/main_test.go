//go:build !wasm

// The tests run natively, against shanhaitest's mock host, whose SQL
// handler records every statement the module sends.

package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

// statement is one SQL call the module made.
type statement struct {
	db, query string
	args      []any
}

// fakeDB answers the module's SQL: it remembers the (device, ts) keys
// inserted, to count the new ones as SQLite's INSERT OR IGNORE would, and
// answers queries with rows.
type fakeDB struct {
	log  []statement
	keys map[[2]string]bool
	rows [][]any // the answer to the next SELECT ... LIMIT
	sums [][]any // the answer to the next SELECT ... GROUP BY
	fail error
}

func (f *fakeDB) handle(db, query string, args []any) (shanhaitest.SQLResponse, error) {
	f.log = append(f.log, statement{db, query, args})
	if f.fail != nil {
		return shanhaitest.SQLResponse{}, f.fail
	}
	switch {
	case strings.HasPrefix(query, "INSERT"):
		n := 0
		for i := 0; i+3 < len(args); i += 4 {
			key := [2]string{args[i].(string), args[i+1].(string)}
			if !f.keys[key] {
				f.keys[key] = true
				n++
			}
		}
		return shanhaitest.SQLResponse{RowsAffected: uint64(n)}, nil
	case strings.Contains(query, "GROUP BY"):
		return shanhaitest.SQLResponse{Columns: []string{"device", "n", "avg", "min", "max", "hum", "first", "last"}, Rows: f.sums}, nil
	case strings.HasPrefix(query, "SELECT"):
		return shanhaitest.SQLResponse{Columns: []string{"device", "ts", "temp_c", "humidity"}, Rows: f.rows}, nil
	}
	return shanhaitest.SQLResponse{}, nil
}

func start(t *testing.T) *fakeDB {
	t.Helper()
	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{SQLite: true})
	schemaReady = false
	f := &fakeDB{keys: make(map[[2]string]bool)}
	shanhaitest.HandleSQL(f.handle)
	return f
}

func do(t *testing.T, method, target, body string, out any) int {
	t.Helper()
	resp, err := shanhaitest.Do(httptest.NewRequest(method, target, strings.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("%s %s: %d %s", method, target, resp.StatusCode, raw)
	}
	return resp.StatusCode
}

func post(t *testing.T, body string) BatchResult {
	t.Helper()
	var r BatchResult
	if status := do(t, "POST", "/etl/batch", body, &r); status != 200 {
		t.Fatalf("POST /etl/batch: %d %+v", status, r)
	}
	return r
}

const messy = `[
  {"Device_ID": " Boiler-1 ", "timestamp": "2024-05-01 10:00:00", "Temp": "71.6 F", "humidity": "40%"},
  {"device": "boiler-1", "ts": 1714557600, "temperature": 21.5, "unit": "celsius"},
  {"sensor": "Attic", "time": "2024-05-01T12:00:00+02:00", "temp": "294.65K"},
  {"device": 17, "time": 1714557600123, "temp_f": "32", "rh": 55.555},
  {"device": "x", "time": "2024-05-01t10:00:00.5z", "temperature": "21,5", "units": "°C", "note": "ignored"},
  {"time": "2024-05-01T10:00:00Z", "temp": 1},
  {"device": "x", "temp": 1},
  {"device": "x", "time": "2024-05-01T10:00:00Z"},
  {"device": "x", "time": "2024-05-01T10:00:00Z", "temp": "warm"},
  {"device": "x", "time": "2024-05-01T10:00:00Z", "temp": 20, "unit": "R"},
  {"device": "x", "time": "2024-05-01T10:00:00Z", "temp": "20C", "unit": "F"},
  {"device": "x", "time": "2024-05-01T10:00:00Z", "temp": 20, "humidity": 120},
  {"device": "x", "time": "2024-05-01T10:00:00Z", "temp": "-300C"},
  [1, 2],
  {"device": "x", "time": "yesterday", "temp": 1},
  {"device": "  ", "time": "2024-05-01T10:00:00Z", "temp": 1},
  {"device": "x", "time": "1960-01-01T00:00:00Z", "temp": 1},
  {"device": true, "time": "2024-05-01T10:00:00Z", "temp": 1}
]`

func TestBatch(t *testing.T) {
	f := start(t)
	got := post(t, messy)
	want := BatchResult{
		Accepted: 5, Stored: 4, Duplicates: 1, Rejected: 13,
		Rejections: []Rejection{
			{6, "device is missing"},
			{7, "time is missing"},
			{8, "temperature is missing"},
			{9, `temperature "warm" is not a number`},
			{10, `unit "R" is not one of C, F, K`},
			{11, `temperature "20C" is in °C and °F at once`},
			{12, "humidity 120 is not between 0 and 100"},
			{13, `temperature "-300C" is below absolute zero`},
			{14, "not a JSON object"},
			{15, `time "yesterday" is not RFC 3339, "YYYY-MM-DD hh:mm:ss" or Unix time`},
			{16, `device "" must be 1 to 64 characters`},
			{17, "time 1960-01-01T00:00:00Z is outside the years 1970 to 9999"},
			{18, "device true is not a string"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if len(f.log) != 2 || f.log[0].query != Schema || f.log[0].args != nil || f.log[0].db != "" {
		t.Fatalf("statements: %+v", f.log)
	}
	insert := f.log[1]
	wantQuery := "INSERT OR IGNORE INTO readings (device, ts, temp_c, humidity) VALUES " +
		"(?1, ?2, ?3, ?4), (?5, ?6, ?7, ?8), (?9, ?10, ?11, ?12), (?13, ?14, ?15, ?16), (?17, ?18, ?19, ?20)"
	wantArgs := []any{
		"boiler-1", "2024-05-01T10:00:00.000Z", 22.0, 40.0,
		"boiler-1", "2024-05-01T10:00:00.000Z", 21.5, nil,
		"attic", "2024-05-01T10:00:00.000Z", 21.5, nil,
		"17", "2024-05-01T10:00:00.123Z", 0.0, 55.56,
		"x", "2024-05-01T10:00:00.500Z", 21.5, nil,
	}
	if insert.query != wantQuery || !reflect.DeepEqual(insert.args, wantArgs) {
		t.Errorf("INSERT:\n %s\n %#v\nwant\n %s\n %#v", insert.query, insert.args, wantQuery, wantArgs)
	}

	// The table is created once per instance; the same batch again is
	// all duplicates.
	again := post(t, messy)
	if again.Stored != 0 || again.Duplicates != 5 || len(f.log) != 3 {
		t.Errorf("again: %+v, %d statements", again, len(f.log))
	}
}

func TestJSONLines(t *testing.T) {
	f := start(t)
	got := post(t, "{\"device\":\"a\",\"time\":\"2024-05-01T10:00:00Z\",\"temp\":20}\n\n"+
		"{not json}\n"+
		"  {\"device\":\"a\",\"time\":\"2024-05-01T10:01:00Z\",\"temp\":\"21\"}  \r\n"+
		"{\"device\":\"a\"} {\"device\":\"b\"}\n")
	want := BatchResult{Accepted: 2, Stored: 2, Rejected: 2, Rejections: []Rejection{{3, "not a JSON object"}, {5, "not a JSON object"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if args := f.log[1].args; !reflect.DeepEqual(args, []any{"a", "2024-05-01T10:00:00.000Z", 20.0, nil, "a", "2024-05-01T10:01:00.000Z", 21.0, nil}) {
		t.Errorf("args %#v", args)
	}
	// Nothing to store: no SQL at all.
	f.log = nil
	if got := post(t, `[{"device":"a"}]`); got.Accepted != 0 || got.Rejected != 1 || len(f.log) != 0 {
		t.Errorf("%+v, statements %+v", got, f.log)
	}
}

func TestBadBatches(t *testing.T) {
	f := start(t)
	many := "[" + strings.TrimSuffix(strings.Repeat(`{},`, maxRecords+1), ",") + "]"
	for _, tc := range []struct {
		body   string
		status int
		want   string
	}{
		{`[{"device":"a"}`, 400, "the body starts like a JSON array but is not one"},
		{``, 400, "the batch holds no records"},
		{"\n \n", 400, "the batch holds no records"},
		{`[]`, 400, "the batch holds no records"},
		{many, 413, "a batch holds at most 1000 records, not 1001"},
		{strings.Repeat(" ", maxBody+1), 413, "larger than"},
	} {
		var r struct{ Error string }
		if status := do(t, "POST", "/etl/batch", tc.body, &r); status != tc.status || !strings.Contains(r.Error, tc.want) {
			t.Errorf("%.30q: %d %q, want %d with %q", tc.body, status, r.Error, tc.status, tc.want)
		}
	}
	if len(f.log) != 0 {
		t.Errorf("statements: %+v", f.log)
	}
}

func TestQuery(t *testing.T) {
	f := start(t)
	f.rows = [][]any{
		{"boiler-1", "2024-05-01T10:00:00.000Z", 21.5, 40.0},
		{"boiler-1", "2024-05-01T11:00:00.000Z", int64(23), nil},
		{"boiler-1", "2024-05-01T12:00:00.000Z", 22.0, nil},
	}
	f.sums = [][]any{{"boiler-1", int64(3), 22.166666, 21.5, 23.0, 40.0, "2024-05-01T10:00:00.000Z", "2024-05-01T12:00:00.000Z"}}
	var got QueryResult
	if status := do(t, "GET", "/etl/query?device=%20Boiler-1&since=2024-05-01T09:00:00%2B02:00&until=2024-05-02&limit=2", "", &got); status != 200 {
		t.Fatalf("%d %+v", status, got)
	}
	h := 40.0
	want := QueryResult{
		Rows: []Reading{
			{"boiler-1", "2024-05-01T10:00:00.000Z", 21.5, &h},
			{"boiler-1", "2024-05-01T11:00:00.000Z", 23, nil},
		},
		Truncated: true,
		Devices: []DeviceSummary{{Device: "boiler-1", Count: 3, AvgTempC: 22.17, MinTempC: 21.5, MaxTempC: 23, AvgHumidity: &h,
			First: "2024-05-01T10:00:00.000Z", Last: "2024-05-01T12:00:00.000Z"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	filter := " WHERE device = ?1 AND ts >= ?2 AND ts < ?3"
	args := []any{"boiler-1", "2024-05-01T07:00:00.000Z", "2024-05-02T00:00:00.000Z"}
	wantLog := []statement{
		{"", Schema, nil},
		{"", "SELECT device, ts, temp_c, humidity FROM readings" + filter + " ORDER BY ts, device LIMIT 3", args},
		{"", "SELECT device, COUNT(*), AVG(temp_c), MIN(temp_c), MAX(temp_c), AVG(humidity), MIN(ts), MAX(ts) FROM readings" + filter + " GROUP BY device ORDER BY device", args},
	}
	if !reflect.DeepEqual(f.log, wantLog) {
		t.Errorf("statements:\n%q\nwant\n%q", f.log, wantLog)
	}

	// No parameters: everything, 100 rows at most.
	f.log, f.rows, f.sums = nil, nil, nil
	if status := do(t, "GET", "/etl/query", "", &got); status != 200 || len(got.Rows) != 0 || got.Rows == nil || got.Devices == nil || got.Truncated {
		t.Errorf("%d %+v", status, got)
	}
	if q := f.log[0].query; q != "SELECT device, ts, temp_c, humidity FROM readings ORDER BY ts, device LIMIT 101" || f.log[0].args != nil {
		t.Errorf("%q %v", q, f.log[0].args)
	}
}

func TestBadQueries(t *testing.T) {
	f := start(t)
	for _, tc := range []struct{ target, want string }{
		{"/etl/query?since=soon", `since: time "soon" is not RFC 3339`},
		{"/etl/query?until=1900-01-01T00:00:00Z", "until: time 1900-01-01T00:00:00Z is outside the years 1970 to 9999"},
		{"/etl/query?limit=0", "limit must be 1 to 1000"},
		{"/etl/query?limit=1001", "limit must be 1 to 1000"},
		{"/etl/query?limit=x", "limit must be 1 to 1000"},
	} {
		var r struct{ Error string }
		if status := do(t, "GET", tc.target, "", &r); status != 400 || !strings.Contains(r.Error, tc.want) {
			t.Errorf("%s: %d %q", tc.target, status, r.Error)
		}
	}
	if len(f.log) != 0 {
		t.Errorf("statements: %+v", f.log)
	}
}

func TestDatabaseFailures(t *testing.T) {
	f := start(t)
	f.fail = errors.New("near \"INSERT\": syntax error")
	var r struct{ Error string }
	if status := do(t, "POST", "/etl/batch", `[{"device":"a","time":1714557600,"temp":1}]`, &r); status != 500 ||
		r.Error != `creating the table: shanhai: sql_exec: invalid argument: near "INSERT": syntax error` {
		t.Errorf("%d %q", status, r.Error)
	}
	if schemaReady {
		t.Error("a failed CREATE TABLE counts as done")
	}

	shanhaitest.SetGrants(shanhaitest.Grants{})
	f.fail = nil
	for _, tc := range []struct{ method, target, body string }{
		{"POST", "/etl/batch", `[{"device":"a","time":1714557600,"temp":1}]`},
		{"GET", "/etl/query", ""},
	} {
		if status := do(t, tc.method, tc.target, tc.body, &r); status != 500 || !strings.HasPrefix(r.Error, "creating the table: shanhai: sql_exec: denied") {
			t.Errorf("%s %s: %d %q", tc.method, tc.target, status, r.Error)
		}
	}
	// The denial happens before the handler: nothing reached it.
	if len(f.log) != 1 {
		t.Errorf("statements: %+v", f.log)
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[any]string{
		"2024-05-01T10:00:00Z":           "2024-05-01T10:00:00.000Z",
		"2024-05-01T12:00:00+02:00":      "2024-05-01T10:00:00.000Z",
		"2024-05-01T12:00:00.25+0200":    "2024-05-01T10:00:00.250Z",
		"2024-05-01 05:00:00-05:00":      "2024-05-01T10:00:00.000Z",
		"2024-05-01 10:00":               "2024-05-01T10:00:00.000Z",
		"2024/05/01 10:00:00":            "2024-05-01T10:00:00.000Z",
		" 1714557600 ":                   "2024-05-01T10:00:00.000Z",
		"1714557600.5":                   "2024-05-01T10:00:00.500Z",
		json.Number("1714557600999"):     "2024-05-01T10:00:00.999Z",
		json.Number("100000000000"):      "1973-03-03T09:46:40.000Z",
		json.Number("99999999999"):       "5138-11-16T09:46:39.000Z",
		"2024-05-01T10:00:00.123456789Z": "2024-05-01T10:00:00.123Z",
	} {
		got, err := ParseTime(in)
		if err != nil || got.Format(tsLayout) != want {
			t.Errorf("%v: %v %v, want %s", in, got.Format(tsLayout), err, want)
		}
	}
	for _, in := range []any{"", "5/1/2024", "2024-13-01T00:00:00Z", json.Number("-1"), json.Number("1e300"), true, "10000-01-01T00:00:00Z"} {
		if got, err := ParseTime(in); err == nil {
			t.Errorf("%v: %v, want an error", in, got)
		}
	}
}

func TestUnitsAndNumbers(t *testing.T) {
	for in, want := range map[string]string{"C": "C", " celsius ": "C", "°c": "C", "degC": "C", "deg F": "F", "Fahrenheit": "F", "K": "K", "kelvin": "K", "º F": "F"} {
		if got, ok := Unit(in); !ok || got != want {
			t.Errorf("Unit(%q) = %q %v, want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "R", "%", "cc"} {
		if got, ok := Unit(in); ok {
			t.Errorf("Unit(%q) = %q", in, got)
		}
	}
	for _, tc := range []struct {
		in    any
		value float64
		unit  string
	}{
		{json.Number("-3.5"), -3.5, ""},
		{" 21,5 ", 21.5, ""},
		{"70.7 °F", 70.7, "°F"},
		{"294.6K", 294.6, "K"},
		{".5", 0.5, ""},
		{"45 %", 45, "%"},
		{"1e2", 100, ""},
	} {
		v, unit, err := number(tc.in)
		if err != nil || v != tc.value || unit != tc.unit {
			t.Errorf("number(%v) = %v %q %v", tc.in, v, unit, err)
		}
	}
	for _, in := range []any{"", "warm", "--1", true, "1e999"} {
		if v, _, err := number(in); err == nil {
			t.Errorf("number(%v) = %v", in, v)
		}
	}
}
