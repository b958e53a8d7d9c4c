//go:build !wasm

// The tests run natively, against shanhaitest's mock host.

package main

import (
	"bytes"
	"net/http/httptest"
	"testing"

	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

func TestEchoesTextAndBinary(t *testing.T) {
	c, err := shanhaitest.Connect(httptest.NewRequest("GET", "/ws-echo/ws", nil))
	if err != nil {
		t.Fatal(err)
	}
	reply, err := c.SendText("héllo")
	if err != nil || string(reply) != "héllo" {
		t.Fatalf("text: %q, %v", reply, err)
	}
	payload := []byte{0, 1, 2, 0xff}
	reply, err = c.SendBinary(payload)
	if err != nil || !bytes.Equal(reply, payload) {
		t.Fatalf("binary: %v, %v", reply, err)
	}
	got := c.Received()
	if len(got) != 2 || !got[0].Text || got[1].Text {
		t.Fatalf("the replies keep their types: %+v", got)
	}
}
