//go:build wasm

package shanhai

import "unsafe"

// These are the module's exports (docs/abi.md, "Guest exports"). Go 1.24+
// allows //go:wasmexport in any package, so a module gets them by
// importing this package; its main package stays an empty func main().

// abiVersion is the shanhai_abi_version export.
//
//go:wasmexport shanhai_abi_version
func abiVersion() int32 { return 1 }

// allocBuf is the buffer the host writes event envelopes into. Holding it
// in a package variable keeps the garbage collector from freeing it while
// the host holds the pointer; Go's collector does not move objects.
var allocBuf []byte

// minAlloc keeps the buffer from being reallocated for every slightly
// larger request.
const minAlloc = 4 << 10

// alloc is the shanhai_alloc export: a pointer to n writable bytes, valid
// until the next call into the guest. One buffer is grown and reused; a
// negative n gets 0.
//
//go:wasmexport shanhai_alloc
func alloc(n int32) *byte {
	if n < 0 {
		return nil
	}
	if int(n) > cap(allocBuf) {
		allocBuf = make([]byte, max(int(n), minAlloc))
	}
	// Even for n == 0 the buffer has room, so the pointer is never nil.
	return unsafe.SliceData(allocBuf[:cap(allocBuf)])
}

// event is the shanhai_event export: the host has written an envelope of n
// bytes at ptr (in allocBuf) and asks the guest to handle it.
//
//go:wasmexport shanhai_event
func event(kind int32, ptr *byte, n int32) int32 {
	if n < 0 {
		return statusError
	}
	status := handleEvent(kind, unsafe.Slice(ptr, n))
	// One large request should not pin its memory for the lifetime of a
	// pooled instance.
	if cap(allocBuf) > bigBuffer {
		allocBuf = nil
	}
	return status
}
