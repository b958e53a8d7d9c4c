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
