// Package shanhaitest runs a Shanhai guest natively, against an in-memory
// mock of the gateway, so that a module's handlers can be tested with a
// plain `go test` — no wasm build, no gateway.
//
// Events go through the same decoding, dispatch and encoding as in the
// wasm module; only the host side is simulated. The mock host is global
// (a module is one instance with global state) and events are serialised,
// as on a real instance:
//
//	func TestHello(t *testing.T) {
//		shanhaitest.Reset()
//		shanhaitest.SetConfig("greeting", "Hi")
//		resp, err := shanhaitest.Do(httptest.NewRequest("GET", "/hello?name=edge", nil))
//		...
//	}
//
// The package is empty in a wasm build.
package shanhaitest
