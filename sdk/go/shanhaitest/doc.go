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
// WebSocket handlers are driven through a [WSClient], the client end of a
// connection the mock host holds; the mock also records what the guest
// did with its connections (messages, rooms, broadcasts, closes):
//
//	func TestChat(t *testing.T) {
//		shanhaitest.Reset()
//		alice, err := shanhaitest.Connect(httptest.NewRequest("GET", "/chat?room=lobby", nil))
//		...
//		reply, err := alice.SendText("hello")
//		...
//		got := alice.Received()            // everything alice was sent
//		rooms := alice.Rooms()             // rooms she joined
//		all := shanhaitest.Broadcasts()    // every broadcast
//		err = alice.Close(1000, "bye")     // her close event
//	}
//
// A timer handler gets runs from [FireTimer]:
//
//	func TestCleanup(t *testing.T) {
//		shanhaitest.Reset()
//		err := shanhaitest.FireTimer(shanhai.Timer{Name: "cleanup", Payload: []byte("7d")})
//		...
//	}
//
// A TCP handler gets a connection's events from a [TCPClient]: frames are
// passed whole, as the listener's framing cuts them from the stream:
//
//	func TestModbus(t *testing.T) {
//		shanhaitest.Reset()
//		c, err := shanhaitest.ConnectTCP("modbus", "192.0.2.7:50123") // open event
//		...
//		reply, err := c.Send(adu)           // a frame event; the handler's reply
//		frames := c.Received()              // the greeting, if any, and every reply
//		err = c.Close()                     // the close event
//	}
//
// The state capabilities (KV, SQL, outbound HTTP, GPIO) are denied until
// a test grants them with [SetGrants], as on the gateway; the KV stores
// are real (with TTLs on a clock [AdvanceClock] moves), SQL statements
// and outbound requests go to handlers the test installs ([HandleSQL],
// [HandleFetch]), and GPIO pins exist once [SetGPIO] sets them:
//
//	func TestVisits(t *testing.T) {
//		shanhaitest.Reset()
//		shanhaitest.SetGrants(shanhaitest.Grants{KV: true})
//		resp, err := shanhaitest.Do(httptest.NewRequest("GET", "/visits", nil))
//		...
//		v, ok := shanhaitest.KVValue("", "visits") // what the module stored
//	}
//
// An MQTT handler gets messages from [DeliverMQTT], which returns what
// the handler gave the gateway to publish; [shanhai.PublishMQTT] is
// denied every topic until [GrantMQTTPublish] grants it, and
// [MQTTPublished] lists what it published:
//
//	func TestTransform(t *testing.T) {
//		shanhaitest.Reset()
//		shanhaitest.GrantMQTTPublish("devices/+/cmd")
//		out, err := shanhaitest.DeliverMQTT(shanhai.MQTTMessage{Topic: "sensors/1/set", Payload: reading})
//		...
//		sent := shanhaitest.MQTTPublished()
//	}
//
// The package is empty in a wasm build.
package shanhaitest
