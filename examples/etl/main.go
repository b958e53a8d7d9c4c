// Command etl takes batches of messy sensor records, cleans and
// normalises them, stores them in the module's SQLite database and answers
// queries over them.
//
// The gateway mounts it at /etl:
//
//   - POST /etl/batch with a JSON array of records, or JSON lines (one
//     record per line), stores the records it can make sense of and
//     answers 200 with what it did:
//
//     {"accepted":3,"stored":2,"duplicates":1,"rejected":1,
//     "rejections":[{"record":4,"reason":"temperature \"warm\" is not a number"}]}
//
//     record counts from 1: the position in the array, or the line. A
//     record already stored (same device and time) is a duplicate and
//     keeps its first value, so a batch sent twice is stored once. A body
//     that is neither, or holds no records or more than 1000, is 400 or
//     413.
//
//   - GET /etl/query?device=D&since=T&until=T&limit=N returns the stored
//     rows, oldest first, and per device the count and the average,
//     minimum and maximum temperature:
//
//     {"rows":[{"device":"boiler-1","ts":"2024-05-01T10:00:00.000Z","temp_c":21.5,"humidity":40}],
//     "truncated":false,"devices":[{"device":"boiler-1","count":1,"avg_temp_c":21.5,
//     "min_temp_c":21.5,"max_temp_c":21.5,"avg_humidity":40,"first":"...","last":"..."}]}
//
//     Every parameter is optional; since is inclusive, until exclusive,
//     both read like a record's time; limit is 1 to 1000, 100 by
//     default, and bounds rows only (truncated says it cut them), not the
//     per-device figures.
//
// A record is a JSON object; field names are matched without regard to
// case, spaces, '-' or '_' ("Device_ID" is deviceid):
//
//   - device (or deviceid, sensor, sensorid, id): required; a string or
//     number, trimmed and lower-cased, so " Boiler-1 " and "boiler-1" are
//     one device; 1 to 64 characters.
//   - time (or ts, timestamp, datetime): required; RFC 3339 with any
//     offset; "2006-01-02 15:04:05", "2006-01-02" and other forms without
//     an offset, taken as UTC; or Unix time in seconds or, from 10^11,
//     milliseconds, as a number or a string. Stored as RFC 3339 UTC with milliseconds,
//     a fixed width, so that comparing the text compares the times.
//   - temperature (or temp): required; a number or a string such as
//     "21,5", "70.7 °F" or "294.6K", in the unit of its suffix or of the
//     field unit (or units): C, F or K in any case, with or without
//     "°" or "deg", or the names (celsius, fahrenheit, kelvin); °C when
//     neither says. temp_c, temp_f (and temperature_c, temperature_f) fix
//     the unit. Stored in °C, to 0.01; below absolute zero is rejected.
//   - humidity (or hum, rh): optional; 0 to 100, "%" allowed.
//
// Anything else in a record is ignored.
//
//	[modules.etl.grants]
//	sqlite = true
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o etl.wasm .
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
)

const (
	// maxRecords bounds a batch. One batch is one INSERT of four
	// parameters a record, well below SQLite's 32766.
	maxRecords = 1000
	// maxBody bounds a batch's body.
	maxBody = 4 << 20
	// maxLimit bounds the rows of a query.
	maxLimit = 1000
	// tsLayout is the stored time format: fixed width, UTC.
	tsLayout = "2006-01-02T15:04:05.000Z"
)

// Schema is the table the module keeps its readings in. The primary key
// makes (device, time) unique, which is what makes a resent batch
// harmless, and serves the queries by device and time.
const Schema = `CREATE TABLE IF NOT EXISTS readings (
  device TEXT NOT NULL,
  ts TEXT NOT NULL,
  temp_c REAL NOT NULL,
  humidity REAL,
  PRIMARY KEY (device, ts)
)`

func init() {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /etl/batch", batch)
	mux.HandleFunc("GET /etl/query", query)
	shanhai.HandleHTTP(mux)
}

// main is empty: the gateway calls the module's exports, not main.
func main() {}

// Reading is a cleaned record, as stored.
type Reading struct {
	Device   string   `json:"device"`
	TS       string   `json:"ts"`
	TempC    float64  `json:"temp_c"`
	Humidity *float64 `json:"humidity"`
}

// Rejection is a record that could not be cleaned, and why.
type Rejection struct {
	Record int    `json:"record"`
	Reason string `json:"reason"`
}

// BatchResult is the answer to POST /etl/batch.
type BatchResult struct {
	Accepted   int         `json:"accepted"`
	Stored     int         `json:"stored"`
	Duplicates int         `json:"duplicates"`
	Rejected   int         `json:"rejected"`
	Rejections []Rejection `json:"rejections"`
}

// schemaReady says this instance has created the table; it saves a host
// call per request after the first.
var schemaReady bool

func ensureSchema() error {
	if schemaReady {
		return nil
	}
	if _, err := shanhai.Database("").Exec(Schema); err != nil {
		return err
	}
	schemaReady = true
	return nil
}

func batch(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", maxBody))
		return
	}
	records, err := Split(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	switch {
	case len(records) == 0:
		writeError(w, http.StatusBadRequest, "the batch holds no records")
		return
	case len(records) > maxRecords:
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("a batch holds at most %d records, not %d", maxRecords, len(records)))
		return
	}
	result := BatchResult{Rejections: []Rejection{}}
	var rows []Reading
	for _, rec := range records {
		reading, err := rec.clean()
		if err != nil {
			result.Rejections = append(result.Rejections, Rejection{Record: rec.n, Reason: err.Error()})
			continue
		}
		rows = append(rows, reading)
	}
	result.Accepted, result.Rejected = len(rows), len(result.Rejections)
	if len(rows) > 0 {
		if err := ensureSchema(); err != nil {
			dbFailed(w, "creating the table", err)
			return
		}
		stored, err := insert(rows)
		if err != nil {
			dbFailed(w, "storing the batch", err)
			return
		}
		result.Stored, result.Duplicates = stored, len(rows)-stored
	}
	slog.Info("batch", "accepted", result.Accepted, "stored", result.Stored, "rejected", result.Rejected)
	writeJSON(w, http.StatusOK, result)
}

// insert stores rows in one statement, so a batch is stored whole or not
// at all, and returns how many were new.
func insert(rows []Reading) (int, error) {
	var q strings.Builder
	q.WriteString("INSERT OR IGNORE INTO readings (device, ts, temp_c, humidity) VALUES ")
	args := make([]any, 0, 4*len(rows))
	for i, row := range rows {
		if i > 0 {
			q.WriteString(", ")
		}
		n := 4 * i
		fmt.Fprintf(&q, "(?%d, ?%d, ?%d, ?%d)", n+1, n+2, n+3, n+4)
		var humidity any // NULL unless given
		if row.Humidity != nil {
			humidity = *row.Humidity
		}
		args = append(args, row.Device, row.TS, row.TempC, humidity)
	}
	res, err := shanhai.Database("").Exec(q.String(), args...)
	if err != nil {
		return 0, err
	}
	return int(res.RowsAffected), nil
}

// record is one record of a batch, numbered from 1, with its fields by
// normalised name. bad holds why it is not an object, if it is not.
type record struct {
	n      int
	fields map[string]any
	bad    string
}

// Split cuts a body into records: a JSON array, or JSON lines. An array
// that is not valid JSON is an error; a line that is not is a rejected
// record, so one bad line does not lose the batch.
func Split(body []byte) ([]record, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(trimmed, &items); err != nil {
			return nil, fmt.Errorf("the body starts like a JSON array but is not one: %v", err)
		}
		out := make([]record, len(items))
		for i, item := range items {
			out[i] = parseRecord(i+1, item)
		}
		return out, nil
	}
	var out []record
	for i, line := range bytes.Split(body, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		out = append(out, parseRecord(i+1, line))
	}
	return out, nil
}

func parseRecord(n int, raw []byte) record {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // numbers stay as written, e.g. Unix milliseconds
	var fields map[string]any
	if err := dec.Decode(&fields); err != nil || dec.More() || fields == nil {
		return record{n: n, bad: "not a JSON object"}
	}
	norm := make(map[string]any, len(fields))
	for k, v := range fields {
		norm[fieldName(k)] = v
	}
	return record{n: n, fields: norm}
}

// fieldName normalises a field name: lower case, without spaces, '-' or
// '_'.
func fieldName(k string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' || r == '_' {
			return -1
		}
		return r
	}, strings.ToLower(strings.TrimSpace(k)))
}

// get returns the first of the names the record has, with its name; null
// counts as missing.
func (r record) get(names ...string) (string, any) {
	for _, n := range names {
		if v, ok := r.fields[n]; ok && v != nil {
			return n, v
		}
	}
	return "", nil
}

func (r record) clean() (Reading, error) {
	if r.bad != "" {
		return Reading{}, errors.New(r.bad)
	}
	var out Reading
	var err error
	if out.Device, err = r.device(); err != nil {
		return Reading{}, err
	}
	_, when := r.get("time", "ts", "timestamp", "datetime")
	if when == nil {
		return Reading{}, errors.New("time is missing")
	}
	t, err := ParseTime(when)
	if err != nil {
		return Reading{}, err
	}
	out.TS = t.Format(tsLayout)
	if out.TempC, err = r.temperature(); err != nil {
		return Reading{}, err
	}
	if _, h := r.get("humidity", "hum", "rh"); h != nil {
		v, unit, err := number(h)
		if err != nil || (unit != "" && unit != "%") {
			return Reading{}, fmt.Errorf("humidity %s is not a number", show(h))
		}
		if v < 0 || v > 100 {
			return Reading{}, fmt.Errorf("humidity %v is not between 0 and 100", v)
		}
		v = round2(v)
		out.Humidity = &v
	}
	return out, nil
}

func (r record) device() (string, error) {
	_, v := r.get("device", "deviceid", "sensor", "sensorid", "id")
	var id string
	switch v := v.(type) {
	case nil:
		return "", errors.New("device is missing")
	case string:
		id = v
	case json.Number:
		id = v.String()
	default:
		return "", fmt.Errorf("device %s is not a string", show(v))
	}
	id = strings.ToLower(strings.TrimSpace(id))
	if n := len([]rune(id)); n == 0 || n > 64 {
		return "", fmt.Errorf("device %q must be 1 to 64 characters", id)
	}
	return id, nil
}

// unitFields are the temperature fields whose name gives the unit.
var unitFields = map[string]string{"tempc": "C", "temperaturec": "C", "tempf": "F", "temperaturef": "F"}

func (r record) temperature() (float64, error) {
	name, v := r.get("temperature", "temp", "tempc", "temperaturec", "tempf", "temperaturef")
	if v == nil {
		return 0, errors.New("temperature is missing")
	}
	value, suffix, err := number(v)
	if err != nil {
		return 0, fmt.Errorf("temperature %s is not a number", show(v))
	}
	var units []string // what the suffix, the field name and unit say
	if suffix != "" {
		units = append(units, suffix)
	}
	if u, ok := unitFields[name]; ok {
		units = append(units, u)
	}
	if _, u := r.get("unit", "units"); u != nil {
		s, ok := u.(string)
		if !ok {
			return 0, fmt.Errorf("unit %s is not a string", show(u))
		}
		units = append(units, s)
	}
	unit := "C"
	for i, u := range units {
		n, ok := Unit(u)
		if !ok {
			return 0, fmt.Errorf("unit %q is not one of C, F, K", u)
		}
		if i > 0 && n != unit {
			return 0, fmt.Errorf("temperature %s is in °%s and °%s at once", show(v), unit, n)
		}
		unit = n
	}
	c := value
	switch unit {
	case "F":
		c = (value - 32) * 5 / 9
	case "K":
		c = value - 273.15
	}
	if c < -273.15 {
		return 0, fmt.Errorf("temperature %s is below absolute zero", show(v))
	}
	return round2(c), nil
}

// Unit normalises a temperature unit to C, F or K.
func Unit(u string) (string, bool) {
	u = strings.ToLower(strings.TrimSpace(u))
	u = strings.TrimLeft(u, "°º")
	u = strings.TrimPrefix(strings.TrimPrefix(u, "degrees"), "deg")
	switch strings.TrimSpace(u) {
	case "c", "celsius", "centigrade":
		return "C", true
	case "f", "fahrenheit":
		return "F", true
	case "k", "kelvin":
		return "K", true
	}
	return "", false
}

// numberText matches a number with an optional unit after it: "21,5",
// "-3.2 °C", "45%".
var numberText = regexp.MustCompile(`^([+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?)\s*(\S.*)?$`)

// number reads a JSON number, or a string holding one and maybe a unit,
// which it returns as written.
func number(v any) (float64, string, error) {
	switch v := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(v.String(), 64)
		return f, "", err
	case string:
		m := numberText.FindStringSubmatch(strings.TrimSpace(v))
		if m == nil {
			return 0, "", errors.New("not a number")
		}
		// A decimal comma, as many locales write it.
		f, err := strconv.ParseFloat(strings.Replace(m[1], ",", ".", 1), 64)
		if err != nil || math.IsInf(f, 0) {
			return 0, "", errors.New("not a number")
		}
		return f, strings.TrimSpace(m[2]), nil
	}
	return 0, "", errors.New("not a number")
}

// timeLayouts are the textual times ParseTime reads, tried in order;
// those without an offset are UTC. Go accepts fractional seconds after
// the seconds of any of them.
var timeLayouts = []string{
	time.RFC3339,
	"2006-01-02T15:04:05Z0700",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05Z0700",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05",
	"2006-01-02T15:04",
	"2006-01-02 15:04",
	"2006/01/02 15:04:05",
	"2006-01-02",
}

// ParseTime reads a record's time (see the package documentation).
func ParseTime(v any) (time.Time, error) {
	var t time.Time
	switch v := v.(type) {
	case json.Number:
		return unixTime(v.String())
	case string:
		s := strings.ToUpper(strings.TrimSpace(v)) // 't' and 'z' are allowed too
		if s != "" && strings.Trim(s, "0123456789.") == "" {
			return unixTime(s)
		}
		var err error
		for _, layout := range timeLayouts {
			if t, err = time.Parse(layout, s); err == nil {
				break
			}
		}
		if err != nil {
			return time.Time{}, fmt.Errorf("time %q is not RFC 3339, \"YYYY-MM-DD hh:mm:ss\" or Unix time", v)
		}
	default:
		return time.Time{}, fmt.Errorf("time %s is not a string or a number", show(v))
	}
	t = t.UTC()
	if t.Year() < 1970 || t.Year() > 9999 {
		return time.Time{}, fmt.Errorf("time %s is outside the years 1970 to 9999", t.Format(time.RFC3339))
	}
	return t, nil
}

// unixTime reads Unix seconds, or milliseconds from 10^11: as seconds
// that is the year 5138, as milliseconds 1973, so no current reading is
// ambiguous.
func unixTime(s string) (time.Time, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) {
		return time.Time{}, fmt.Errorf("time %s is not a Unix time", s)
	}
	ms := f * 1000
	if f >= 1e11 {
		ms = f
	}
	if ms > 253402300799999 { // 9999-12-31T23:59:59.999Z
		return time.Time{}, fmt.Errorf("time %s is outside the years 1970 to 9999", s)
	}
	return time.UnixMilli(int64(math.Round(ms))).UTC(), nil
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }

// show formats a decoded JSON value for a message.
func show(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// DeviceSummary is the per-device part of a query's answer.
type DeviceSummary struct {
	Device      string   `json:"device"`
	Count       int64    `json:"count"`
	AvgTempC    float64  `json:"avg_temp_c"`
	MinTempC    float64  `json:"min_temp_c"`
	MaxTempC    float64  `json:"max_temp_c"`
	AvgHumidity *float64 `json:"avg_humidity"`
	First       string   `json:"first"`
	Last        string   `json:"last"`
}

// QueryResult is the answer to GET /etl/query.
type QueryResult struct {
	Rows      []Reading       `json:"rows"`
	Truncated bool            `json:"truncated"`
	Devices   []DeviceSummary `json:"devices"`
}

func query(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var conds []string
	var args []any
	where := func(cond string, arg any) {
		args = append(args, arg)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	if d := strings.ToLower(strings.TrimSpace(q.Get("device"))); d != "" {
		where("device = ?%d", d)
	}
	for _, p := range []struct{ name, cond string }{{"since", "ts >= ?%d"}, {"until", "ts < ?%d"}} {
		if v := q.Get(p.name); v != "" {
			t, err := ParseTime(v)
			if err != nil {
				writeError(w, http.StatusBadRequest, p.name+": "+err.Error())
				return
			}
			where(p.cond, t.Format(tsLayout))
		}
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit must be 1 to %d", maxLimit))
			return
		}
		limit = n
	}
	filter := ""
	if len(conds) > 0 {
		filter = " WHERE " + strings.Join(conds, " AND ")
	}
	if err := ensureSchema(); err != nil {
		dbFailed(w, "creating the table", err)
		return
	}
	db := shanhai.Database("")
	// One row more than the limit says whether there are more.
	rows, err := db.Query(fmt.Sprintf("SELECT device, ts, temp_c, humidity FROM readings%s ORDER BY ts, device LIMIT %d", filter, limit+1), args...)
	if err != nil {
		dbFailed(w, "querying the readings", err)
		return
	}
	result := QueryResult{Rows: []Reading{}, Devices: []DeviceSummary{}}
	for i, row := range rows.Rows {
		if i == limit {
			result.Truncated = true
			break
		}
		result.Rows = append(result.Rows, Reading{
			Device: textCell(row[0]), TS: textCell(row[1]), TempC: realCell(row[2]), Humidity: optionalRealCell(row[3]),
		})
	}
	sums, err := db.Query("SELECT device, COUNT(*), AVG(temp_c), MIN(temp_c), MAX(temp_c), AVG(humidity), MIN(ts), MAX(ts) FROM readings"+filter+" GROUP BY device ORDER BY device", args...)
	if err != nil {
		dbFailed(w, "summarising the readings", err)
		return
	}
	for _, row := range sums.Rows {
		count, _ := row[1].(int64)
		s := DeviceSummary{
			Device: textCell(row[0]), Count: count, AvgTempC: round2(realCell(row[2])),
			MinTempC: realCell(row[3]), MaxTempC: realCell(row[4]), AvgHumidity: optionalRealCell(row[5]),
			First: textCell(row[6]), Last: textCell(row[7]),
		}
		if s.AvgHumidity != nil {
			*s.AvgHumidity = round2(*s.AvgHumidity)
		}
		result.Devices = append(result.Devices, s)
	}
	writeJSON(w, http.StatusOK, result)
}

// textCell, realCell and optionalRealCell read the cells of a row. REAL
// cells arrive as float64; int64 is accepted too, for a row written by
// hand without REAL affinity.
func textCell(v any) string {
	s, _ := v.(string)
	return s
}

func realCell(v any) float64 {
	switch v := v.(type) {
	case float64:
		return v
	case int64:
		return float64(v)
	}
	return 0
}

func optionalRealCell(v any) *float64 {
	if v == nil {
		return nil
	}
	f := realCell(v)
	return &f
}

// dbFailed answers a failed SQL call: 503 when the database timed out,
// 500 otherwise (a missing grant is the deployment's mistake, and the
// host's message says which grant).
func dbFailed(w http.ResponseWriter, what string, err error) {
	slog.Error(what, "err", err)
	status := http.StatusInternalServerError
	if errors.Is(err, shanhai.ErrUnavailable) {
		status = http.StatusServiceUnavailable
	}
	writeError(w, status, what+": "+err.Error())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]string{"error": message})
}
