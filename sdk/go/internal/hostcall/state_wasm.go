//go:build wasm

package hostcall

import "unsafe"

// The state imports (docs/abi.md, "Host imports": kv_*, sql_exec,
// http_fetch, gpio_*). Each clears what is staged and, when it fails, may
// stage a message that explains why.

//go:wasmimport shanhai kv_get
func rawKVGet(storePtr *byte, storeLen int32, keyPtr *byte, keyLen int32) int32

//go:wasmimport shanhai kv_set
func rawKVSet(storePtr *byte, storeLen int32, keyPtr *byte, keyLen int32, valuePtr *byte, valueLen int32, ttlMs int64) int32

//go:wasmimport shanhai kv_delete
func rawKVDelete(storePtr *byte, storeLen int32, keyPtr *byte, keyLen int32) int32

//go:wasmimport shanhai kv_list
func rawKVList(storePtr *byte, storeLen int32, prefixPtr *byte, prefixLen int32, cursorPtr *byte, cursorLen int32, limit int32) int32

//go:wasmimport shanhai kv_cas
func rawKVCAS(storePtr *byte, storeLen int32, keyPtr *byte, keyLen int32, expectedPtr *byte, expectedLen int32, newPtr *byte, newLen int32, ttlMs int64) int32

//go:wasmimport shanhai kv_incr
func rawKVIncr(storePtr *byte, storeLen int32, keyPtr *byte, keyLen int32, delta int64, result *int64) int32

//go:wasmimport shanhai sql_exec
func rawSQLExec(dbPtr *byte, dbLen int32, sqlPtr *byte, sqlLen int32, paramsPtr *byte, paramsLen int32) int32

//go:wasmimport shanhai http_fetch
func rawHTTPFetch(requestPtr *byte, requestLen int32) int32

//go:wasmimport shanhai gpio_read
func rawGPIORead(pin int32) int32

//go:wasmimport shanhai gpio_write
func rawGPIOWrite(pin int32, value int32) int32

// KVGet stages the value of key in store ("" is the module's own) and
// returns its length.
func KVGet(store, key string) int32 {
	return rawKVGet(unsafe.StringData(store), int32(len(store)), unsafe.StringData(key), int32(len(key)))
}

// KVSet sets key in store to value, expiring after ttlMs (0: never).
func KVSet(store, key string, value []byte, ttlMs int64) int32 {
	return rawKVSet(unsafe.StringData(store), int32(len(store)), unsafe.StringData(key), int32(len(key)),
		unsafe.SliceData(value), int32(len(value)), ttlMs)
}

// KVDelete deletes key from store.
func KVDelete(store, key string) int32 {
	return rawKVDelete(unsafe.StringData(store), int32(len(store)), unsafe.StringData(key), int32(len(key)))
}

// KVList stages a KeyPage of at most limit keys of store that start with
// prefix, after cursor, and returns its length.
func KVList(store, prefix, cursor string, limit int32) int32 {
	return rawKVList(unsafe.StringData(store), int32(len(store)), unsafe.StringData(prefix), int32(len(prefix)),
		unsafe.StringData(cursor), int32(len(cursor)), limit)
}

// KVCAS sets key in store to value if its current value is expected, or,
// with absent, if it has none; 0 or StatusConflict.
func KVCAS(store, key string, expected []byte, absent bool, value []byte, ttlMs int64) int32 {
	expectedLen := int32(len(expected))
	if absent {
		expectedLen = -1
	}
	return rawKVCAS(unsafe.StringData(store), int32(len(store)), unsafe.StringData(key), int32(len(key)),
		unsafe.SliceData(expected), expectedLen, unsafe.SliceData(value), int32(len(value)), ttlMs)
}

// KVIncr adds delta to the integer at key in store and stores the new
// value in *result.
func KVIncr(store, key string, delta int64, result *int64) int32 {
	return rawKVIncr(unsafe.StringData(store), int32(len(store)), unsafe.StringData(key), int32(len(key)), delta, result)
}

// SQLExec runs one statement with encoded params in database db ("" is
// the module's own), stages a SqlResult and returns its length.
func SQLExec(db, query string, params []byte) int32 {
	return rawSQLExec(unsafe.StringData(db), int32(len(db)), unsafe.StringData(query), int32(len(query)),
		unsafe.SliceData(params), int32(len(params)))
}

// HTTPFetch sends the HttpRequest envelope request, stages the
// HttpResponse and returns its length.
func HTTPFetch(request []byte) int32 {
	return rawHTTPFetch(unsafe.SliceData(request), int32(len(request)))
}

// GPIORead returns the value of pin, 0 or 1.
func GPIORead(pin int32) int32 {
	return rawGPIORead(pin)
}

// GPIOWrite drives output pin low (0) or high (1).
func GPIOWrite(pin int32, value int32) int32 {
	return rawGPIOWrite(pin, value)
}
