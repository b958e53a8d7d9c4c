// Package hostcall is the thin layer over the `shanhai` host imports
// (docs/abi.md, "Host imports"). In a wasm build each function is the raw
// //go:wasmimport; in a native build it is an in-memory mock host, so that
// the SDK's dispatch and encoding logic can be tested with `go test`.
//
// Every function returns the raw ABI result: a non-negative value on
// success or a negative host status; package shanhai turns statuses into
// errors.
package hostcall

// Host statuses (docs/abi.md, "Host statuses").
const (
	StatusNotFound        int32 = -1
	StatusDenied          int32 = -2
	StatusInvalidArgument int32 = -3
	StatusTooLarge        int32 = -4
	StatusUnavailable     int32 = -5
	StatusInternal        int32 = -6
	StatusNothingStaged   int32 = -7
	StatusConflict        int32 = -8
)

// WebSocket message types of ws_send and ws_broadcast (docs/abi.md, "Host
// imports"): the values of the WsEvent types text and binary.
const (
	WSText   int32 = 2
	WSBinary int32 = 3
)
