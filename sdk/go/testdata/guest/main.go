// Command guest is the smallest SDK reactor, built by the SDK's tests to
// check the shape of the module the Go toolchain produces. Its handlers
// call every host function, so that the build imports them all: the Go
// linker drops imports nothing calls.
package main

import (
	"io"
	"net/http"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
)

func init() {
	shanhai.HandleHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		greeting, err := shanhai.Config("greeting")
		if err != nil {
			greeting = "ok"
		}
		io.WriteString(w, greeting)
	}))
	shanhai.HandleWebSocket(shanhai.WebSocketHandler{
		OnOpen: func(c *shanhai.WSConn) ([]byte, error) {
			return nil, c.Join("all")
		},
		OnMessage: func(c *shanhai.WSConn, m shanhai.WSMessage) ([]byte, error) {
			if _, err := shanhai.Broadcast("all", m, c.ID); err != nil {
				return nil, err
			}
			if err := c.SendText("sent"); err != nil {
				return nil, err
			}
			if err := c.Leave("all"); err != nil {
				return nil, err
			}
			return nil, c.Close(1000, "done")
		},
	})
	shanhai.HandleTimer(func(t shanhai.Timer) error {
		_, err := shanhai.Broadcast("all", shanhai.WSMessage{Text: true, Data: []byte(t.Name)}, 0)
		return err
	})
	shanhai.HandleTCP(shanhai.TCPHandler{
		OnFrame: func(_ *shanhai.TCPConn, frame []byte) ([]byte, error) {
			return frame, nil
		},
	})
	shanhai.HandleMQTT(func(m *shanhai.MQTTMessage) ([]shanhai.MQTTPublish, error) {
		err := shanhai.PublishMQTT("echo/"+m.Topic, m.Payload, m.QoS, false)
		return []shanhai.MQTTPublish{{Payload: m.Payload}}, err
	})
	shanhai.Export("state", func(in []byte) ([]byte, error) {
		kv := shanhai.Store("")
		if err := kv.Set("k", in, 0); err != nil {
			return nil, err
		}
		v, err := kv.Get("k")
		if err != nil {
			return nil, err
		}
		if _, _, err := kv.List("", "", 0); err != nil {
			return nil, err
		}
		if _, err := kv.CompareAndSwap("k", v, nil, 0); err != nil {
			return nil, err
		}
		if _, err := kv.Increment("n", 1); err != nil {
			return nil, err
		}
		if err := kv.Delete("k"); err != nil {
			return nil, err
		}
		if _, err := shanhai.Database("").Query("SELECT ?1", 1); err != nil {
			return nil, err
		}
		resp, err := shanhai.HTTPClient.Get("http://127.0.0.1:8081/")
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		high, err := shanhai.GPIORead(17)
		if err != nil {
			return nil, err
		}
		return v, shanhai.GPIOWrite(18, high)
	})
}

func main() {}
