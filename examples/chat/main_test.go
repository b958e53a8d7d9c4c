//go:build !wasm

// The tests run natively, against shanhaitest's mock host.

package main

import (
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

// connect opens a connection to room as name and fails the test if the
// module refuses it.
func connect(t *testing.T, room, name string) *shanhaitest.WSClient {
	t.Helper()
	c, err := shanhaitest.Connect(httptest.NewRequest("GET", "/chat/ws?room="+room+"&name="+name, nil))
	if err != nil {
		t.Fatalf("%s joining %s: %v", name, room, err)
	}
	return c
}

// received decodes the text messages c has been sent.
func received(t *testing.T, c *shanhaitest.WSClient) []map[string]string {
	t.Helper()
	var out []map[string]string
	for _, m := range c.Received() {
		if !m.Text {
			t.Fatalf("%v was sent a binary message: %q", c, m.Data)
		}
		var v map[string]string
		if err := json.Unmarshal(m.Data, &v); err != nil {
			t.Fatalf("%v was sent %q: %v", c, m.Data, err)
		}
		out = append(out, v)
	}
	return out
}

// last returns the last message c was sent.
func last(t *testing.T, c *shanhaitest.WSClient) map[string]string {
	t.Helper()
	got := received(t, c)
	if len(got) == 0 {
		t.Fatalf("%v was sent nothing", c)
	}
	return got[len(got)-1]
}

func TestPageIsServed(t *testing.T) {
	shanhaitest.Reset()
	for _, target := range []string{"/chat", "/chat/", "/chat?room=x&name=y"} {
		resp, err := shanhaitest.Do(httptest.NewRequest("GET", target, nil))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Errorf("GET %s: %d %q", target, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if !strings.Contains(string(body), `id="log"`) || !strings.Contains(string(body), "new WebSocket(") {
			t.Errorf("GET %s: not the chat page:\n%s", target, body)
		}
	}
	resp, err := shanhaitest.Do(httptest.NewRequest("GET", "/chat/ws", nil))
	if err != nil || resp.StatusCode != 426 {
		t.Errorf("GET /chat/ws without an upgrade: %v %v", resp, err)
	}
}

func TestJoinIsBroadcast(t *testing.T) {
	shanhaitest.Reset()
	alice := connect(t, "lobby", "alice")
	if got := alice.Rooms(); !slices.Equal(got, []string{"lobby"}) {
		t.Errorf("alice's rooms: %q", got)
	}
	bob := connect(t, "lobby", "bob")
	joined := func(name string) map[string]string {
		return map[string]string{"room": "lobby", "name": name, "event": "joined"}
	}
	// Each newcomer hears its own arrival, members hear every later one.
	want := []map[string]string{joined("alice"), joined("bob")}
	if got := received(t, alice); !equalMessages(got, want) {
		t.Errorf("alice got %v, want %v", got, want)
	}
	if got := received(t, bob); !equalMessages(got, want[1:]) {
		t.Errorf("bob got %v, want %v", got, want[1:])
	}
	if err := bob.Close(1001, ""); err != nil {
		t.Fatal(err)
	}
	left := map[string]string{"room": "lobby", "name": "bob", "event": "left"}
	if got := last(t, alice); !maps.Equal(got, left) {
		t.Errorf("after bob left, alice got %v, want %v", got, left)
	}
}

func TestMessagesReachTheWholeRoom(t *testing.T) {
	shanhaitest.Reset()
	alice := connect(t, "r1", "alice")
	bob := connect(t, "r1", "bob")
	carol := connect(t, "elsewhere", "carol")
	before := len(received(t, carol))
	reply, err := alice.SendText("hi <b>bob</b> & 山海")
	if err != nil || reply != nil {
		t.Fatalf("reply %q, %v", reply, err)
	}
	b := shanhaitest.Broadcasts()
	got := b[len(b)-1]
	wantData := `{"room":"r1","name":"alice","text":"hi \u003cb\u003ebob\u003c/b\u003e \u0026 山海"}`
	if got.Room != "r1" || got.Except != 0 || got.Count != 2 || !got.Message.Text || string(got.Message.Data) != wantData {
		t.Errorf("broadcast %+v, data %s", got, got.Message.Data)
	}
	want := map[string]string{"room": "r1", "name": "alice", "text": "hi <b>bob</b> & 山海"}
	for _, c := range []*shanhaitest.WSClient{alice, bob} {
		if got := last(t, c); !maps.Equal(got, want) {
			t.Errorf("%v got %v", c, got)
		}
	}
	if n := len(received(t, carol)); n != before {
		t.Errorf("carol, in another room, got %d more messages", n-before)
	}
}

func TestInvalidRoomOrNameIsRefused(t *testing.T) {
	shanhaitest.Reset()
	for _, query := range []string{
		"",
		"room=lobby",
		"name=alice",
		"room=lobby&name=",
		"room=lobby&name=" + strings.Repeat("a", 33),
		"room=lobby&name=al%20ice",
		"room=lobby&name=%3Cscript%3E",
		"room=lobby&name=%E5%B1%B1",
		"room=a/b&name=alice",
	} {
		_, err := shanhaitest.Connect(httptest.NewRequest("GET", "/chat/ws?"+query, nil))
		var ee *shanhaitest.EventError
		if !errors.As(err, &ee) || ee.Status != shanhaitest.StatusError || !strings.Contains(ee.Message, "must be 1 to 32") {
			t.Errorf("?%s: %v, want a refusal", query, err)
		}
	}
	if got := shanhaitest.RoomMembers("lobby"); len(got) != 0 {
		t.Errorf("refused connections are in the room: %v", got)
	}
	if c := connect(t, "Room_1-b", strings.Repeat("z", 32)); c == nil {
		t.Error("a valid room and name were refused")
	}
}

func TestBadMessagesEarnTheSenderAnError(t *testing.T) {
	shanhaitest.Reset()
	alice := connect(t, "r2", "alice")
	bob := connect(t, "r2", "bob")
	broadcasts := len(shanhaitest.Broadcasts())
	bobHad := len(bob.Received())
	for _, tc := range []struct {
		name string
		send func() ([]byte, error)
		want string
	}{
		{"oversized", func() ([]byte, error) { return alice.SendText(strings.Repeat("x", maxText+1)) }, "1001 bytes"},
		{"empty", func() ([]byte, error) { return alice.SendText("") }, "empty"},
		{"blank", func() ([]byte, error) { return alice.SendText(" \n") }, "empty"},
		{"binary", func() ([]byte, error) { return alice.SendBinary([]byte{1, 2}) }, "binary"},
	} {
		if reply, err := tc.send(); err != nil || reply != nil {
			t.Errorf("%s: reply %q, %v", tc.name, reply, err)
		}
		got := last(t, alice)
		if got["error"] != "bad_message" || !strings.Contains(got["message"], tc.want) {
			t.Errorf("%s: alice got %v, want an error about %q", tc.name, got, tc.want)
		}
	}
	if n := len(shanhaitest.Broadcasts()); n != broadcasts {
		t.Errorf("%d bad messages were broadcast", n-broadcasts)
	}
	if n := len(bob.Received()); n != bobHad {
		t.Errorf("bob was sent %d messages about alice's mistakes", n-bobHad)
	}
	// The limit itself is allowed.
	if _, err := alice.SendText(strings.Repeat("x", maxText)); err != nil {
		t.Fatal(err)
	}
	if got := last(t, bob); len(got["text"]) != maxText {
		t.Errorf("a %d-byte message did not reach bob: %v", maxText, got)
	}
}

func equalMessages(a, b []map[string]string) bool {
	return slices.EqualFunc(a, b, maps.Equal[map[string]string])
}
