package shanhai_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
)

// A page-view counter in the module's own KV store (grant: kv = true).
func ExampleStore() {
	http.HandleFunc("GET /views", func(w http.ResponseWriter, r *http.Request) {
		n, err := shanhai.Store("").Increment("views", 1)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "%d views\n", n)
	})
}

// Sessions in a store shared with other modules (grant: kv_stores =
// ["sessions"]), expiring after half an hour.
func ExampleKV_Set() {
	sessions := shanhai.Store("sessions")
	if err := sessions.Set("session:42", []byte("alice"), 30*time.Minute); err != nil {
		slog.Error("saving the session", "err", err)
	}
}

// An update that never loses a concurrent one: read, compute, and write
// only if nobody wrote in between; otherwise try again.
func ExampleKV_CompareAndSwap() {
	kv := shanhai.Store("")
	for {
		old, err := kv.Get("stock")
		if err != nil && !errors.Is(err, shanhai.ErrNotFound) {
			slog.Error("reading the stock", "err", err)
			return
		}
		n, _ := strconv.Atoi(string(old))
		swapped, err := kv.CompareAndSwap("stock", old, []byte(strconv.Itoa(n+10)), 0)
		if err != nil || swapped {
			return
		}
	}
}

// Reading all keys with a prefix, a page at a time.
func ExampleKV_List() {
	for cursor := ""; ; {
		keys, next, err := shanhai.Store("").List("user:", cursor, 100)
		if err != nil {
			slog.Error("listing users", "err", err)
			return
		}
		for _, k := range keys {
			slog.Info("user", "key", k)
		}
		if next == "" {
			return
		}
		cursor = next
	}
}

// The module's own SQLite database (grant: sqlite = true).
func ExampleDatabase() {
	db := shanhai.Database("")
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)"); err != nil {
		slog.Error("creating the table", "err", err)
		return
	}
	res, err := db.Exec("INSERT INTO notes (body) VALUES (?1)", "buy tea")
	if err != nil {
		slog.Error("inserting", "err", err)
		return
	}
	rows, err := db.Query("SELECT id, body FROM notes WHERE id = ?1", res.LastInsertID)
	if err != nil {
		slog.Error("querying", "err", err)
		return
	}
	for _, row := range rows.Rows {
		id, _ := row[0].(int64)
		body, _ := row[1].(string)
		slog.Info("note", "id", id, "body", body)
	}
}

// An outbound request (grant: http = ["api.weather.example"]).
func ExampleHTTPClient() {
	resp, err := shanhai.HTTPClient.Get("https://api.weather.example/today")
	if err != nil {
		slog.Error("fetching the weather", "err", err, "denied", errors.Is(err, shanhai.ErrDenied))
		return
	}
	defer resp.Body.Close()
	forecast, _ := io.ReadAll(resp.Body)
	slog.Info("weather", "status", resp.StatusCode, "forecast", string(forecast))
}

// A button on pin 17 switches a relay on pin 18 (grants: gpio_in = [17],
// gpio_out = [18]).
func ExampleGPIOWrite() {
	pressed, err := shanhai.GPIORead(17)
	if err != nil {
		slog.Error("reading the button", "err", err)
		return
	}
	if err := shanhai.GPIOWrite(18, pressed); err != nil {
		slog.Error("switching the relay", "err", err)
	}
}
