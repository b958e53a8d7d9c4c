package shanhai_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
)

// A reactor module registers its handlers in init (the body of this
// example) and has an empty func main().
func Example() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		slog.Info("greeting", "request_id", shanhai.RequestID(r))
		fmt.Fprintf(w, "Hello, %s\n", r.URL.Query().Get("name"))
	})
	shanhai.HandleHTTP(mux)
	shanhai.Export("upper", func(in []byte) ([]byte, error) {
		return bytes.ToUpper(in), nil
	})
}

func ExampleConfig() {
	greeting, err := shanhai.Config("greeting")
	if errors.Is(err, shanhai.ErrNotFound) {
		greeting = "Hello"
	} else if err != nil {
		slog.Error("reading config", "err", err)
	}
	_ = greeting
}

func ExampleExport() {
	shanhai.Export("length", func(in []byte) ([]byte, error) {
		if len(in) == 0 {
			return nil, errors.New("empty input")
		}
		return fmt.Appendf(nil, "%d", len(in)), nil
	})
}
