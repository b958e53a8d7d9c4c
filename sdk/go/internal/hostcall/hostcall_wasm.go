//go:build wasm

package hostcall

import "unsafe"

// Pointers cross the boundary as *byte, which wasmimport lowers to an i32
// offset into linear memory; lengths are int32 to match the ABI's i32.

//go:wasmimport shanhai log
func rawLog(level int32, ptr *byte, n int32)

//go:wasmimport shanhai output_write
func rawOutputWrite(ptr *byte, n int32) int32

//go:wasmimport shanhai config_get
func rawConfigGet(keyPtr *byte, keyLen int32) int32

//go:wasmimport shanhai staged_read
func rawStagedRead(ptr *byte, n int32) int32

//go:wasmimport shanhai ws_send
func rawWSSend(conn uint64, typ int32, ptr *byte, n int32) int32

//go:wasmimport shanhai ws_close
func rawWSClose(conn uint64, code int32, reasonPtr *byte, reasonLen int32) int32

//go:wasmimport shanhai ws_join
func rawWSJoin(conn uint64, roomPtr *byte, roomLen int32) int32

//go:wasmimport shanhai ws_leave
func rawWSLeave(conn uint64, roomPtr *byte, roomLen int32) int32

//go:wasmimport shanhai ws_broadcast
func rawWSBroadcast(roomPtr *byte, roomLen int32, typ int32, ptr *byte, n int32, except uint64) int32

// Log sends one log line at an ABI level (1 debug .. 4 error).
func Log(level int32, text []byte) {
	rawLog(level, unsafe.SliceData(text), int32(len(text)))
}

// OutputWrite appends b to the current event's output.
func OutputWrite(b []byte) int32 {
	return rawOutputWrite(unsafe.SliceData(b), int32(len(b)))
}

// ConfigGet stages the value of config variable key and returns its length.
func ConfigGet(key string) int32 {
	return rawConfigGet(unsafe.StringData(key), int32(len(key)))
}

// StagedRead copies up to len(dst) bytes of the staged value into dst and
// returns how many it copied.
func StagedRead(dst []byte) int32 {
	return rawStagedRead(unsafe.SliceData(dst), int32(len(dst)))
}

// WSSend queues a message of type typ (WSText or WSBinary) for connection
// conn.
func WSSend(conn uint64, typ int32, data []byte) int32 {
	return rawWSSend(conn, typ, unsafe.SliceData(data), int32(len(data)))
}

// WSClose starts closing connection conn with code and reason.
func WSClose(conn uint64, code int32, reason string) int32 {
	return rawWSClose(conn, code, unsafe.StringData(reason), int32(len(reason)))
}

// WSJoin adds connection conn to room.
func WSJoin(conn uint64, room string) int32 {
	return rawWSJoin(conn, unsafe.StringData(room), int32(len(room)))
}

// WSLeave removes connection conn from room.
func WSLeave(conn uint64, room string) int32 {
	return rawWSLeave(conn, unsafe.StringData(room), int32(len(room)))
}

// WSBroadcast queues a message for every connection in room but except
// (0 for none) and returns how many it was queued for.
func WSBroadcast(room string, typ int32, data []byte, except uint64) int32 {
	return rawWSBroadcast(unsafe.StringData(room), int32(len(room)), typ, unsafe.SliceData(data), int32(len(data)), except)
}
