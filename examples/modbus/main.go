// Command modbus is a Modbus/TCP server for a TCP listener with
// framing = "modbus": the gateway cuts the stream into ADUs (the 7-byte
// MBAP header — transaction id, protocol id 0, length, unit id — then the
// PDU), and the module answers each with a response ADU, from a bank of
// 1000 holding registers and 1000 input registers (addresses 0 to 999).
//
//   - Function 3 (read holding registers) and 4 (read input registers): a
//     start address and a quantity of 1 to 125; the response holds the byte
//     count and the values.
//   - Function 6 (write single register): an address and a value; the
//     response echoes the request.
//   - Function 16 (write multiple registers): a start address, a quantity
//     of 1 to 123, a byte count of twice that, and the values; the response
//     holds the start address and the quantity.
//   - Any other function is answered with exception 1 (ILLEGAL FUNCTION);
//     registers outside the bank with exception 2 (ILLEGAL DATA ADDRESS); a
//     bad quantity or byte count, or a PDU of the wrong length, with
//     exception 3 (ILLEGAL DATA VALUE). An exception response is the
//     function code with its high bit set, then the exception code.
//   - A response echoes the request's transaction id and unit id; the
//     module answers every unit id.
//   - A frame that is not a request ADU (shorter than a header and a
//     function code, or a header the gateway should have refused) closes
//     the connection.
//
// Every request is logged as one line ([DecodeRequest] decodes it into a
// [Request]):
//
//	modbus request transaction=1 unit=1 function=3 address=0 quantity=2
//	modbus request transaction=2 unit=1 function=16 address=10 quantity=2 values=7,8
//	modbus exception transaction=3 unit=1 function=5 exception=1
//
// When the config variable mqtt_topic is set, every request the server
// carries out (not the exceptions) is also published to that topic, as
// JSON, at QoS 0 and not retained, before the response goes back:
//
//	{"transaction":2,"unit":1,"function":16,"address":10,"quantity":2,"values":[7,8]}
//
// The module's mqtt_publish grant must cover the topic. A publication the
// gateway refuses (no grant, no MQTT client, a full queue) does not change
// the Modbus response: the module logs a warning and answers as usual.
//
// The registers start from two config variables, holding and input, each a
// comma-separated list of address=value pairs in decimal, such as
// "0=100,1=200,7=42"; a register not listed reads 0. A bad list refuses
// every connection, with a message the gateway logs.
//
// The bank lives in the instance's memory. Writes (functions 6 and 16)
// change the bank of the instance that handled them only, and are lost with
// it: the gateway runs several instances of a module side by side and may
// discard any of them (after a trap or a timeout, or to recycle it), and
// the events of one connection may reach different instances. Registers
// shared by every instance, and kept, belong in the host's KV store (not
// there yet). Until then a deployment that wants reads to see earlier
// writes runs a single instance, max_instances = 1 in the gateway's
// config, and keeps max_requests_per_instance at its default, 0 (never
// recycle):
//
//	[tcp.plc]
//	listen = "0.0.0.0:502"
//	module = "modbus"
//	framing = "modbus"
//
//	[modules.modbus]
//	max_instances = 1
//	[modules.modbus.vars]
//	holding = "0=100,1=200,7=42"
//	input = "0=1,1=2"
//	mqtt_topic = "plc/requests"
//	[modules.modbus.grants]
//	mqtt_publish = ["plc/requests"]
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o modbus.wasm .
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
)

// bankSize is how many registers of each kind the bank holds, at addresses
// 0 to bankSize-1.
const bankSize = 1000

// Function codes the server answers.
const (
	readHoldingRegisters   = 3
	readInputRegisters     = 4
	writeSingleRegister    = 6
	writeMultipleRegisters = 16
)

// The largest quantities of registers one request may read or write, as
// the Modbus specification sets them: they fill a PDU of 253 bytes.
const (
	maxRead  = 125
	maxWrite = 123
)

// headerLen is the length of the MBAP header, which precedes the PDU.
const headerLen = 7

var be = binary.BigEndian

func init() {
	shanhai.HandleTCP(shanhai.TCPHandler{
		OnOpen:  open,
		OnFrame: serve,
	})
}

// main is empty: the gateway calls the module's exports, not main.
func main() {}

// open loads the register bank when a client connects, so that a bad
// config refuses the connection before the client sends anything.
func open(*shanhai.TCPConn) ([]byte, error) {
	_, err := loadBank()
	return nil, err
}

// serve answers one request ADU.
func serve(_ *shanhai.TCPConn, adu []byte) ([]byte, error) {
	b, err := loadBank()
	if err != nil {
		return nil, err
	}
	return b.serve(adu)
}

// Exception is a Modbus exception code: the answer to a request the server
// refuses.
type Exception uint8

// The exception codes the server answers with.
const (
	IllegalFunction    Exception = 1
	IllegalDataAddress Exception = 2
	IllegalDataValue   Exception = 3
)

func (e Exception) Error() string {
	switch e {
	case IllegalFunction:
		return "modbus exception 1: illegal function"
	case IllegalDataAddress:
		return "modbus exception 2: illegal data address"
	case IllegalDataValue:
		return "modbus exception 3: illegal data value"
	default:
		return "modbus exception " + strconv.Itoa(int(e))
	}
}

// Request is one decoded request: what the module logs, and what it
// publishes to MQTT. It marshals to JSON as, for example,
// {"transaction":1,"unit":1,"function":3,"address":0,"quantity":2}; a
// write adds "values".
type Request struct {
	// Transaction is the MBAP transaction id, echoed in the response.
	Transaction uint16 `json:"transaction"`
	// Unit is the MBAP unit id, echoed in the response.
	Unit uint8 `json:"unit"`
	// Function is the function code.
	Function uint8 `json:"function"`
	// Address is the first register the request reads or writes.
	Address uint16 `json:"address"`
	// Quantity is how many registers it reads or writes: 1 for function 6.
	Quantity uint16 `json:"quantity"`
	// Values are the values a write (function 6 or 16) stores, from
	// Address on; nil for a read.
	Values []uint16 `json:"values,omitempty"`
}

// DecodeRequest decodes the request ADU adu, checking what the server
// checks before it touches the bank.
//
// An error of type [Exception] is a request to answer with that exception;
// the Request then holds the transaction id, the unit id, the function and
// whatever else could be decoded. Any other error means adu is not a
// request ADU at all, which has no answer: the header is cut short, its
// protocol id is not 0 (Modbus), or its length does not count the bytes
// that follow it.
func DecodeRequest(adu []byte) (Request, error) {
	if len(adu) < headerLen+1 {
		return Request{}, fmt.Errorf("a frame of %d bytes is not a Modbus/TCP request", len(adu))
	}
	if protocol := be.Uint16(adu[2:]); protocol != 0 {
		return Request{}, fmt.Errorf("MBAP protocol id %d is not Modbus (0)", protocol)
	}
	if length := int(be.Uint16(adu[4:])); length != len(adu)-6 {
		return Request{}, fmt.Errorf("MBAP length %d, but %d bytes follow it", length, len(adu)-6)
	}
	r := Request{Transaction: be.Uint16(adu), Unit: adu[6], Function: adu[7]}
	data := adu[headerLen+1:]
	switch r.Function {
	case readHoldingRegisters, readInputRegisters:
		if len(data) != 4 {
			return r, IllegalDataValue
		}
		r.Address, r.Quantity = be.Uint16(data), be.Uint16(data[2:])
		if r.Quantity < 1 || r.Quantity > maxRead {
			return r, IllegalDataValue
		}
	case writeSingleRegister:
		if len(data) != 4 {
			return r, IllegalDataValue
		}
		r.Address, r.Quantity = be.Uint16(data), 1
		r.Values = []uint16{be.Uint16(data[2:])}
	case writeMultipleRegisters:
		if len(data) < 5 {
			return r, IllegalDataValue
		}
		r.Address, r.Quantity = be.Uint16(data), be.Uint16(data[2:])
		count, values := int(data[4]), data[5:]
		if r.Quantity < 1 || r.Quantity > maxWrite || count != 2*int(r.Quantity) || len(values) != count {
			return r, IllegalDataValue
		}
		r.Values = make([]uint16, r.Quantity)
		for i := range r.Values {
			r.Values[i] = be.Uint16(values[2*i:])
		}
	default:
		return r, IllegalFunction
	}
	// The quantity is checked first, as the specification orders it.
	if int(r.Address)+int(r.Quantity) > bankSize {
		return r, IllegalDataAddress
	}
	return r, nil
}

// bank is the register bank of one instance.
type bank struct {
	holding [bankSize]uint16
	input   [bankSize]uint16
	// mqttTopic is the config variable mqtt_topic, the topic requests are
	// published to; empty for none.
	mqttTopic string
}

// registers is this instance's bank, nil until the first event loads it.
// It is loaded then rather than in init so that a bad config fails events
// with a message, which the gateway logs, instead of the instance's start.
var registers *bank

// loadBank returns the instance's bank, loading it from the config
// variables holding, input and mqtt_topic the first time.
func loadBank() (*bank, error) {
	if registers != nil {
		return registers, nil
	}
	b := new(bank)
	topic, err := shanhai.Config("mqtt_topic")
	if err != nil && !errors.Is(err, shanhai.ErrNotFound) {
		return nil, fmt.Errorf("reading config variable mqtt_topic: %w", err)
	}
	b.mqttTopic = topic
	for _, v := range []struct {
		key string
		dst *[bankSize]uint16
	}{{"holding", &b.holding}, {"input", &b.input}} {
		s, err := shanhai.Config(v.key)
		if errors.Is(err, shanhai.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading config variable %s: %w", v.key, err)
		}
		if err := parseRegisters(s, v.dst); err != nil {
			return nil, fmt.Errorf("config variable %s: %w", v.key, err)
		}
	}
	registers = b
	return b, nil
}

// parseRegisters stores the registers s lists in dst: comma-separated
// address=value pairs in decimal, such as "0=100,1=200,7=42", with
// optional spaces around each part. An address may appear once.
func parseRegisters(s string, dst *[bankSize]uint16) error {
	var seen [bankSize]bool
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		a, v, ok := strings.Cut(entry, "=")
		if !ok {
			return fmt.Errorf("%q is not address=value", entry)
		}
		addr, err := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
		if err != nil || addr >= bankSize {
			return fmt.Errorf("%q: the address is not a number from 0 to %d", entry, bankSize-1)
		}
		value, err := strconv.ParseUint(strings.TrimSpace(v), 10, 16)
		if err != nil {
			return fmt.Errorf("%q: the value is not a number from 0 to 65535", entry)
		}
		if seen[addr] {
			return fmt.Errorf("address %d is set twice", addr)
		}
		seen[addr] = true
		dst[addr] = uint16(value)
	}
	return nil
}

// serve answers the request ADU adu with a response ADU: the function's
// response, or an exception. An error means adu is not a request ADU.
func (b *bank) serve(adu []byte) ([]byte, error) {
	r, err := DecodeRequest(adu)
	var (
		pdu       []byte
		exception Exception
	)
	if errors.As(err, &exception) {
		slog.Warn("modbus exception", "transaction", r.Transaction, "unit", r.Unit,
			"function", r.Function, "exception", uint8(exception))
		pdu = []byte{r.Function | 0x80, byte(exception)}
	} else if err != nil {
		return nil, err
	} else {
		logRequest(r)
		pdu = b.apply(r)
		b.publish(r)
	}
	out := make([]byte, 0, headerLen+len(pdu))
	out = be.AppendUint16(out, r.Transaction)
	out = be.AppendUint16(out, 0)
	out = be.AppendUint16(out, uint16(1+len(pdu)))
	out = append(out, r.Unit)
	return append(out, pdu...), nil
}

// logRequest logs a valid request as one line.
func logRequest(r Request) {
	args := []any{
		"transaction", r.Transaction, "unit", r.Unit, "function", r.Function,
		"address", r.Address, "quantity", r.Quantity,
	}
	if len(r.Values) > 0 {
		values := make([]string, len(r.Values))
		for i, v := range r.Values {
			values[i] = strconv.Itoa(int(v))
		}
		args = append(args, "values", strings.Join(values, ","))
	}
	slog.Info("modbus request", args...)
}

// publish publishes r, a request the server carried out, as JSON to the
// topic of the config variable mqtt_topic, if it is set. A refusal is
// logged; it must not change the Modbus response.
func (b *bank) publish(r Request) {
	if b.mqttTopic == "" {
		return
	}
	payload, err := json.Marshal(r)
	if err == nil {
		err = shanhai.PublishMQTT(b.mqttTopic, payload, 0, false)
	}
	if err != nil {
		slog.Warn("modbus publish failed", "topic", b.mqttTopic, "transaction", r.Transaction, "error", err)
	}
}

// apply carries out r, a request DecodeRequest accepted, and returns the
// response PDU.
func (b *bank) apply(r Request) []byte {
	pdu := []byte{r.Function}
	switch r.Function {
	case readHoldingRegisters, readInputRegisters:
		regs := b.holding[:]
		if r.Function == readInputRegisters {
			regs = b.input[:]
		}
		pdu = append(pdu, byte(2*r.Quantity))
		for _, v := range regs[r.Address : r.Address+r.Quantity] {
			pdu = be.AppendUint16(pdu, v)
		}
	case writeSingleRegister:
		b.holding[r.Address] = r.Values[0]
		pdu = be.AppendUint16(be.AppendUint16(pdu, r.Address), r.Values[0])
	default: // writeMultipleRegisters
		copy(b.holding[r.Address:], r.Values)
		pdu = be.AppendUint16(be.AppendUint16(pdu, r.Address), r.Quantity)
	}
	return pdu
}
