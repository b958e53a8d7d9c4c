//go:build !wasm

package shanhai_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

// get serves GET path with the module's HTTP handler through the mock
// host and returns the status and body.
func get(path string) string {
	resp, err := shanhaitest.Do(httptest.NewRequest("GET", path, nil))
	if err != nil {
		return err.Error()
	}
	body, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
}

// printLogs prints what the module logged since the last Reset.
func printLogs() {
	for _, l := range shanhaitest.Logs() {
		fmt.Println("log:", l.Text)
	}
}

// A page-view counter in the module's own KV store (grant: kv = true).
func ExampleStore() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /views", func(w http.ResponseWriter, r *http.Request) {
		n, err := shanhai.Store("").Increment("views", 1)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "%d views\n", n)
	})
	shanhai.HandleHTTP(mux)

	shanhaitest.Reset()
	fmt.Println(get("/views"))
	shanhaitest.SetGrants(shanhaitest.Grants{KV: true})
	fmt.Println(get("/views"))
	fmt.Println(get("/views"))
	// Output:
	// 503 shanhai: kv_incr: denied: the module's own KV namespace is not granted (grants.kv = true)
	// 200 1 views
	// 200 2 views
}

// Sessions in a store shared with other modules (grant: kv_stores =
// ["sessions"]), expiring after half an hour.
func ExampleKV_Set() {
	save := func() {
		sessions := shanhai.Store("sessions")
		if err := sessions.Set("session:42", []byte("alice"), 30*time.Minute); err != nil {
			slog.Error("saving the session", "err", err)
		}
	}

	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{KVStores: []string{"sessions"}})
	save()
	value, ok := shanhaitest.KVValue("sessions", "session:42")
	fmt.Printf("%s %v\n", value, ok)
	shanhaitest.AdvanceClock(31 * time.Minute)
	_, ok = shanhaitest.KVValue("sessions", "session:42")
	fmt.Println("after 31 minutes:", ok)
	// Output:
	// alice true
	// after 31 minutes: false
}

// An update that never loses a concurrent one: read, compute, and write
// only if nobody wrote in between; otherwise try again.
func ExampleKV_CompareAndSwap() {
	restock := func() {
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

	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{KV: true})
	restock()
	shanhaitest.KVPut("", "stock", []byte("5"), 0)
	restock()
	value, _ := shanhaitest.KVValue("", "stock")
	fmt.Printf("stock: %s\n", value)
	// Output:
	// stock: 15
}

// Reading all keys with a prefix, a page at a time.
func ExampleKV_List() {
	list := func() {
		for cursor := ""; ; {
			keys, next, err := shanhai.Store("").List("user:", cursor, 2)
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

	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{KV: true})
	for _, key := range []string{"user:ana", "user:bo", "user:cy", "order:1"} {
		shanhaitest.KVPut("", key, []byte("x"), 0)
	}
	list()
	printLogs()
	// Output:
	// log: user key=user:ana
	// log: user key=user:bo
	// log: user key=user:cy
}

// The module's own SQLite database (grant: sqlite = true).
func ExampleDatabase() {
	note := func() {
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

	// The mock host answers in place of SQLite.
	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{SQLite: true})
	shanhaitest.HandleSQL(func(db, query string, args []any) (shanhaitest.SQLResponse, error) {
		fmt.Println("sql:", strings.Fields(query)[0], args)
		switch {
		case strings.HasPrefix(query, "INSERT"):
			return shanhaitest.SQLResponse{RowsAffected: 1, LastInsertID: 7}, nil
		case strings.HasPrefix(query, "SELECT"):
			return shanhaitest.SQLResponse{Columns: []string{"id", "body"}, Rows: [][]any{{args[0], "buy tea"}}}, nil
		}
		return shanhaitest.SQLResponse{}, nil
	})
	note()
	printLogs()
	// Output:
	// sql: CREATE []
	// sql: INSERT [buy tea]
	// sql: SELECT [7]
	// log: note id=7 body="buy tea"
}

// An outbound request (grant: http = ["api.weather.example"]).
func ExampleHTTPClient() {
	weather := func() {
		resp, err := shanhai.HTTPClient.Get("https://api.weather.example/today")
		if err != nil {
			slog.Error("fetching the weather", "err", err, "denied", errors.Is(err, shanhai.ErrDenied))
			return
		}
		defer resp.Body.Close()
		forecast, _ := io.ReadAll(resp.Body)
		slog.Info("weather", "status", resp.StatusCode, "forecast", string(forecast))
	}

	// The mock host answers in place of the network.
	shanhaitest.Reset()
	shanhaitest.HandleFetch(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "sunny")
	}))
	weather()
	shanhaitest.SetGrants(shanhaitest.Grants{HTTP: []string{"api.weather.example"}})
	weather()
	printLogs()
	// Output:
	// log: fetching the weather err="Get \"https://api.weather.example/today\": shanhai: http_fetch: denied: outbound HTTP to api.weather.example:443 is not granted (grants.http)" denied=true
	// log: weather status=200 forecast=sunny
}

// A button on pin 17 switches a relay on pin 18 (grants: gpio_in = [17],
// gpio_out = [18]).
func ExampleGPIOWrite() {
	follow := func() {
		pressed, err := shanhai.GPIORead(17)
		if err != nil {
			slog.Error("reading the button", "err", err)
			return
		}
		if err := shanhai.GPIOWrite(18, pressed); err != nil {
			slog.Error("switching the relay", "err", err)
		}
	}

	shanhaitest.Reset()
	shanhaitest.SetGrants(shanhaitest.Grants{GPIOIn: []int{17}, GPIOOut: []int{18}})
	shanhaitest.SetGPIO(17, true)
	shanhaitest.SetGPIO(18, false)
	follow()
	fmt.Println(shanhaitest.GPIOWrites())
	relay, _ := shanhaitest.GPIO(18)
	fmt.Println("relay on:", relay)
	// Output:
	// [{18 true}]
	// relay on: true
}
