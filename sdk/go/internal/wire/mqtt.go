package wire

// This file holds the MQTT envelopes (docs/abi.md, "MqttMessage",
// "MqttOutput"); crates/abi/src/wire/mqtt.rs is their Rust twin.

// MQTTMessageSpans locates the parts of an MqttMessage envelope (event
// kind 5) without copying them. Reuse one value across events: Decode
// reuses the Properties array.
type MQTTMessageSpans struct {
	// Topic, Trigger and RequestID follow each other in the envelope.
	Topic, Trigger, RequestID Span
	QoS                       byte
	Retain                    bool
	Attempt                   uint32
	Properties                []HeaderSpan
	// Payload is the offset at which the payload starts; it runs to the
	// end of the envelope, and everything before it is the envelope's
	// head.
	Payload int
}

// Decode locates the parts of the MqttMessage envelope b. It checks what
// crates/abi checks: lengths, the property count against the remaining
// bytes, and that the three text fields are UTF-8.
func (m *MQTTMessageSpans) Decode(b []byte) error {
	d := decoder{b: b}
	var err error
	if m.Topic, err = d.text("topic"); err != nil {
		return err
	}
	if m.Trigger, err = d.text("trigger name"); err != nil {
		return err
	}
	if m.RequestID, err = d.text("request id"); err != nil {
		return err
	}
	if m.QoS, err = d.u8("qos"); err != nil {
		return err
	}
	retain, err := d.u8("retain flag")
	if err != nil {
		return err
	}
	m.Retain = retain != 0
	if m.Attempt, err = d.u32("attempt"); err != nil {
		return err
	}
	if m.Properties, err = d.headers(m.Properties[:0]); err != nil {
		return err
	}
	m.Payload = d.off
	return nil
}

// MQTTMessage is an MqttMessage envelope (event kind 5) as values.
type MQTTMessage struct {
	Topic      string
	Trigger    string
	RequestID  string
	QoS        byte
	Retain     bool
	Attempt    uint32
	Properties []Header
	Payload    []byte
}

// Append appends the encoded message to dst.
func (m *MQTTMessage) Append(dst []byte) []byte {
	dst = AppendFieldString(dst, m.Topic)
	dst = AppendFieldString(dst, m.Trigger)
	dst = AppendFieldString(dst, m.RequestID)
	dst = append(dst, m.QoS, boolByte(m.Retain))
	dst = AppendU32(dst, m.Attempt)
	dst = appendHeaders(dst, m.Properties)
	return append(dst, m.Payload...)
}

// DecodeMQTTMessage decodes an MqttMessage envelope into a copy.
func DecodeMQTTMessage(b []byte) (MQTTMessage, error) {
	var s MQTTMessageSpans
	if err := s.Decode(b); err != nil {
		return MQTTMessage{}, err
	}
	head := string(b[:s.Payload])
	m := MQTTMessage{
		Topic:     s.Topic.In(head),
		Trigger:   s.Trigger.In(head),
		RequestID: s.RequestID.In(head),
		QoS:       s.QoS,
		Retain:    s.Retain,
		Attempt:   s.Attempt,
		Payload:   append([]byte(nil), b[s.Payload:]...),
	}
	for _, p := range s.Properties {
		m.Properties = append(m.Properties, Header{Name: p.Name.In(head), Value: p.Value.In(head)})
	}
	return m, nil
}

// MQTTPublish is one message of an MqttOutput: a message to publish.
type MQTTPublish struct {
	// Topic is the topic; empty means the trigger's output_topic.
	Topic   string
	QoS     byte
	Retain  bool
	Payload []byte
}

// AppendMQTTPublish appends one message of an MqttOutput to dst; the
// output is a uint32 count (AppendU32) followed by that many messages.
func AppendMQTTPublish(dst []byte, topic string, qos byte, retain bool, payload []byte) []byte {
	dst = AppendFieldString(dst, topic)
	dst = append(dst, qos, boolByte(retain))
	return AppendField(dst, payload)
}

// MQTTOutput is an MqttOutput envelope (the output of event kind 5) as
// values.
type MQTTOutput struct {
	Messages []MQTTPublish
}

// Append appends the encoded output to dst.
func (o *MQTTOutput) Append(dst []byte) []byte {
	dst = AppendU32(dst, uint32(len(o.Messages)))
	for _, m := range o.Messages {
		dst = AppendMQTTPublish(dst, m.Topic, m.QoS, m.Retain, m.Payload)
	}
	return dst
}

// mqttPublishMin is the fewest bytes one message of an output takes: two
// length prefixes and the two flags.
const mqttPublishMin = 4 + 1 + 1 + 4

// DecodeMQTTOutput decodes an MqttOutput envelope into a copy, refusing
// what the host refuses: truncation, a count larger than the bytes that
// follow can hold, a topic that is not UTF-8, and bytes after the last
// message. Empty bytes are an empty output.
func DecodeMQTTOutput(b []byte) (MQTTOutput, error) {
	if len(b) == 0 {
		return MQTTOutput{}, nil
	}
	d := decoder{b: b}
	count, err := d.count(mqttPublishMin, "message count")
	if err != nil {
		return MQTTOutput{}, err
	}
	o := MQTTOutput{Messages: make([]MQTTPublish, 0, count)}
	for range count {
		topic, err := d.text("publish topic")
		if err != nil {
			return MQTTOutput{}, err
		}
		qos, err := d.u8("publish qos")
		if err != nil {
			return MQTTOutput{}, err
		}
		retain, err := d.u8("publish retain flag")
		if err != nil {
			return MQTTOutput{}, err
		}
		payload, err := d.field("publish payload")
		if err != nil {
			return MQTTOutput{}, err
		}
		o.Messages = append(o.Messages, MQTTPublish{
			Topic:   string(topic.Bytes(b)),
			QoS:     qos,
			Retain:  retain != 0,
			Payload: append([]byte(nil), payload.Bytes(b)...),
		})
	}
	return o, d.end("MQTT output")
}

func (d *decoder) u8(what string) (byte, error) {
	if len(d.b)-d.off < 1 {
		return 0, &DecodeError{kind: errTruncated, what: what}
	}
	v := d.b[d.off]
	d.off++
	return v, nil
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}
