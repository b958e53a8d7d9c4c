// Command add is a Shanhai module with plain numeric exports and no SDK:
// the seeds' first example. The gateway calls an export directly when its
// parameters and results are all numbers:
//
//	curl -X POST localhost:8080/api/exec/add/add -d '[2.5, 3.7]'   # 6.2
//	curl -X POST localhost:8080/api/exec/add/mul -d '[6, 7]'       # 42
//
// Build it as a reactor, so that the instance stays alive between calls:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o add.wasm .
//
// The exports cover the four numeric wasm types, which is also what the
// gateway's argument conversion is tested against.
package main

// add is exported as `add (f64, f64) -> f64`.
//
//go:wasmexport add
func add(a, b float64) float64 { return a + b }

// mul is exported as `mul (i64, i64) -> i64`; it wraps around on overflow,
// like any Go int64 multiplication.
//
//go:wasmexport mul
func mul(a, b int64) int64 { return a * b }

// sub32 is exported as `sub32 (i32, i32) -> i32`.
//
//go:wasmexport sub32
func sub32(a, b int32) int32 { return a - b }

// half is exported as `half (f32) -> f32`.
//
//go:wasmexport half
func half(x float32) float32 { return x / 2 }

// main is empty: a reactor's work happens in its exports. (The
// //go:wasmexport directives are ignored by native builds, so `go test`
// runs the same functions natively.)
func main() {}
