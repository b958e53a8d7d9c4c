// Package shanhai is the Go guest SDK for Shanhai, an edge-function gateway
// that runs WebAssembly modules built with the standard Go toolchain.
//
// A module is a WASI reactor: a main package that registers its handlers
// in init and has an empty main, built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o hello.wasm .
//
// For example:
//
//	package main
//
//	import (
//		"bytes"
//		"fmt"
//		"log/slog"
//		"net/http"
//
//		shanhai "github.com/shanhai-edge/shanhai/sdk/go"
//	)
//
//	func init() {
//		mux := http.NewServeMux()
//		mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
//			slog.Info("greeting", "request_id", shanhai.RequestID(r))
//			fmt.Fprintf(w, "Hello, %s\n", r.URL.Query().Get("name"))
//		})
//		shanhai.HandleHTTP(mux)
//		shanhai.Export("upper", func(in []byte) ([]byte, error) {
//			return bytes.ToUpper(in), nil
//		})
//	}
//
//	func main() {}
//
// Importing the package gives the module the exports the gateway looks for
// (shanhai_abi_version, shanhai_alloc, shanhai_event; //go:wasmexport works
// from any package since Go 1.24) and makes the SDK's [Logger] slog's
// default. The gateway calls _initialize once per instance, which runs the
// init functions, and then hands the instance one event at a time: an HTTP
// request for the handler given to [HandleHTTP], a call of a byte function
// registered with [Export], a WebSocket event (an upgrade request, a
// message, a closed connection) for the [WebSocketHandler] given to
// [HandleWebSocket], a run of a timer for the function given to
// [HandleTimer], a TCP connection's event (a client connected, a frame,
// the connection closed) for the [TCPHandler] given to [HandleTCP], or an
// MQTT message for the function given to [HandleMQTT]. Host capabilities
// are plain functions returning errors, such as [Config], [WSSend],
// [Broadcast] and [PublishMQTT]; a failed host call is a *[HostError] that
// matches [ErrNotFound] and its siblings under errors.Is.
//
// # WebSocket
//
// The gateway holds WebSocket connections; a module only sees their
// events. OnOpen may refuse an upgrade, OnMessage answers a message (its
// reply goes back to the connection), OnClose learns that a connection
// ended. During any event the module may act on any of its connections,
// by [WSConn] or by id: send to one ([WSConn.SendText], [WSSend]), close
// one, put it in rooms ([WSConn.Join]) and [Broadcast] to a room. The
// events of one connection may reach different instances, so keep
// per-connection state keyed by [WSConn.ID], and in the host's stores when
// it must survive an instance.
//
// # Timers
//
// The gateway's config defines timers ([timers.NAME]: a schedule, a target
// module and a payload); each run of a timer that targets the module calls
// the handler given to [HandleTimer] with a [Timer]: its name, when the run
// was due, its run number, how many runs were skipped because the previous
// one was still going, and the payload. An error (or a panic) fails the
// run, which the gateway logs and counts; a run has no other output.
//
// # TCP
//
// A listener in the gateway's config ([tcp.NAME]) accepts TCP connections
// and cuts each byte stream into frames (by a length prefix, a delimiter,
// or Modbus/TCP's MBAP header); each frame is an event for the module,
// one at a time per connection, in order. OnOpen may refuse a connection
// or greet it, OnFrame answers a frame (its reply, if not empty, is
// written back as one frame), OnClose learns that a connection ended. An
// error (or a panic) in OnOpen or OnFrame closes the connection. As with
// WebSocket, one connection's events may reach different instances: keep
// per-connection state keyed by [TCPConn.ID].
//
// # MQTT
//
// A trigger in the gateway's config ([mqtt.triggers.NAME]) subscribes to
// a topic filter and delivers each message to the handler given to
// [HandleMQTT] as an [MQTTMessage]. The handler returns the messages to
// publish ([MQTTPublish]; an empty Topic means the trigger's
// output_topic); an error (or a panic) fails the event, and the gateway
// retries a QoS 1 message, then sends it to a dead-letter topic. Messages
// may arrive more than once, so handlers should be idempotent. During any
// event, [PublishMQTT] publishes to the topics the module's mqtt_publish
// grant allows.
//
// # State and devices
//
// The host's stores and devices are capabilities that the module's
// [modules.NAME.grants] must grant; without a grant a call fails with
// [ErrDenied], and the error's text says which grant is missing. A KV
// store ([Store]: "" the module's own with kv = true, a name a shared
// store in kv_stores) gets, sets with a TTL, deletes, lists by prefix,
// compares-and-swaps and increments keys. A SQLite database ([Database]:
// "" the module's own with sqlite = true, a name in sqlite_databases)
// runs one statement at a time with arguments ([DB.Exec], [DB.Query]).
// [HTTPClient] (over [Transport]) sends requests to the hosts of the http
// grant ("host" for ports 80 and 443, "host:port", "host:*",
// "*.domain"), and [GPIORead] and [GPIOWrite]
// use the pins of gpio_in and gpio_out:
//
//	n, err := shanhai.Store("").Increment("visits", 1)
//	rows, err := shanhai.Database("").Query("SELECT body FROM notes WHERE id = ?1", id)
//	resp, err := shanhai.HTTPClient.Get("https://api.example.com/today")
//	err = shanhai.GPIOWrite(18, true)
//
// docs/abi.md in the Shanhai repository specifies the ABI underneath.
//
// # Concurrency
//
// A Go wasm module runs on a single thread. Goroutines exist, but they only
// make progress while an export is running and blocked (in time.Sleep, a
// channel receive, ...); nothing runs between events. So:
//
//   - do an event's work inside its handler: a goroutine started to finish
//     it later may never run, or run during some later, unrelated event;
//   - global variables persist across the events an instance handles (the
//     gateway reuses instances), but several instances of a module run side
//     by side and any of them may be discarded at any time (after a trap or
//     a timeout): keep durable or shared state in the host's stores, not in
//     globals;
//   - init functions run once per instance, so do expensive set-up there.
//
// Because events never overlap within an instance, the SDK reuses its
// buffers from one event to the next; that is why a request's body, a
// byte function's input, a WebSocket message's data, a timer's payload
// and a TCP frame are only valid until the handler returns.
//
// # Testing
//
// In a native build (`go test`) the host imports are replaced by an
// in-memory mock; package [github.com/shanhai-edge/shanhai/sdk/go/shanhaitest]
// drives a module's handlers through it.
package shanhai
