//go:build wasm

package hostcall

import "unsafe"

//go:wasmimport shanhai mqtt_publish
func rawMQTTPublish(topicPtr *byte, topicLen int32, payloadPtr *byte, payloadLen int32, qos int32, retain int32) int32

// MQTTPublish queues an MQTT message on topic. It clears what is staged
// and, when it fails, may stage a message that explains why.
func MQTTPublish(topic string, payload []byte, qos int32, retain bool) int32 {
	var r int32
	if retain {
		r = 1
	}
	return rawMQTTPublish(unsafe.StringData(topic), int32(len(topic)), unsafe.SliceData(payload), int32(len(payload)), qos, r)
}
