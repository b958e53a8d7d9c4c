// Package wasmfile reads the imports, exports and memory limits of a
// WebAssembly binary: just enough of the format to check, in tests, that a
// Go-built module has the shape the Shanhai host expects, without a wasm
// toolchain.
package wasmfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Kinds of imports and exports.
const (
	KindFunc   = 0
	KindTable  = 1
	KindMemory = 2
	KindGlobal = 3
)

// FuncType is a function signature, e.g. "(i32, i32) -> (i32)".
type FuncType struct {
	Params, Results []byte // value types: 0x7f i32, 0x7e i64, 0x7d f32, 0x7c f64
}

func (t FuncType) String() string {
	return "(" + valTypes(t.Params) + ") -> (" + valTypes(t.Results) + ")"
}

func valTypes(ts []byte) string {
	names := make([]string, len(ts))
	for i, t := range ts {
		switch t {
		case 0x7f:
			names[i] = "i32"
		case 0x7e:
			names[i] = "i64"
		case 0x7d:
			names[i] = "f32"
		case 0x7c:
			names[i] = "f64"
		default:
			names[i] = fmt.Sprintf("0x%02x", t)
		}
	}
	return strings.Join(names, ", ")
}

// Import is one import; Type is set for functions.
type Import struct {
	Module, Name string
	Kind         byte
	Type         FuncType
}

// Export is one export; Type is set for functions.
type Export struct {
	Name string
	Kind byte
	Type FuncType
}

// Module is what Parse extracts.
type Module struct {
	Imports []Import
	Exports []Export
	// MemoryMinPages is the initial size of the module's own memory in
	// 64 KiB pages, or -1 when it defines none.
	MemoryMinPages int64
}

// Parse reads a WebAssembly binary.
func Parse(b []byte) (*Module, error) {
	if len(b) < 8 || !bytes.Equal(b[:4], []byte("\x00asm")) {
		return nil, errors.New("not a WebAssembly binary")
	}
	var (
		m         = &Module{MemoryMinPages: -1}
		types     []FuncType
		funcTypes []uint32 // type index of each function, imported ones first
	)
	r := &reader{b: b[8:]}
	// Counts come from the file; every loop also stops at the first read
	// past the end, so a malformed file cannot make it spin.
	for r.err == nil && len(r.b) > 0 {
		id := r.byte()
		sec := &reader{b: r.bytes(int(r.uleb()))}
		switch id {
		case 1:
			for n := sec.uleb(); n > 0 && sec.err == nil; n-- {
				if sec.byte() != 0x60 {
					return nil, errors.New("unexpected type form")
				}
				params := sec.bytes(int(sec.uleb()))
				results := sec.bytes(int(sec.uleb()))
				types = append(types, FuncType{Params: params, Results: results})
			}
		case 2:
			for n := sec.uleb(); n > 0 && sec.err == nil; n-- {
				imp := Import{Module: sec.name(), Name: sec.name(), Kind: sec.byte()}
				switch imp.Kind {
				case KindFunc:
					funcTypes = append(funcTypes, uint32(sec.uleb()))
				case KindTable:
					sec.byte()
					sec.limits()
				case KindMemory:
					sec.limits()
				case KindGlobal:
					sec.bytes(2)
				}
				m.Imports = append(m.Imports, imp)
			}
		case 3:
			for n := sec.uleb(); n > 0 && sec.err == nil; n-- {
				funcTypes = append(funcTypes, uint32(sec.uleb()))
			}
		case 5:
			if sec.uleb() > 0 {
				m.MemoryMinPages = int64(sec.limits())
			}
		case 7:
			for n := sec.uleb(); n > 0 && sec.err == nil; n-- {
				m.Exports = append(m.Exports, Export{Name: sec.name(), Kind: sec.byte()})
				idx := sec.uleb()
				if e := &m.Exports[len(m.Exports)-1]; e.Kind == KindFunc && idx < uint64(len(funcTypes)) {
					e.Type = typeAt(types, funcTypes[idx])
				}
			}
		}
		if sec.err != nil {
			return nil, fmt.Errorf("section %d: %w", id, sec.err)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	// Imported function types: resolved after the type section was read.
	fi := 0
	for i := range m.Imports {
		if m.Imports[i].Kind == KindFunc {
			m.Imports[i].Type = typeAt(types, funcTypes[fi])
			fi++
		}
	}
	return m, nil
}

func typeAt(types []FuncType, i uint32) FuncType {
	if int(i) < len(types) {
		return types[i]
	}
	return FuncType{}
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errors.New("truncated")
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || len(r.b) < n {
		r.fail()
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) uleb() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) name() string { return string(r.bytes(int(r.uleb()))) }

// limits reads a limits entry and returns its minimum.
func (r *reader) limits() uint64 {
	flags := r.byte()
	min := r.uleb()
	if flags&1 != 0 {
		r.uleb()
	}
	return min
}

// allowedImports lists what a Shanhai module may import (docs/abi.md,
// "Module kinds").
var allowedImports = map[string]map[string]bool{
	"shanhai": {
		"log": true, "output_write": true, "config_get": true, "staged_read": true,
		"ws_send": true, "ws_close": true, "ws_join": true, "ws_leave": true, "ws_broadcast": true,
		"mqtt_publish": true, "http_fetch": true, "sql_exec": true, "gpio_read": true, "gpio_write": true,
		"kv_get": true, "kv_set": true, "kv_delete": true, "kv_list": true, "kv_cas": true, "kv_incr": true,
	},
	"wasi_snapshot_preview1": nil, // any WASI preview-1 function
}

// Func returns the exported function name, if there is one.
func (m *Module) Func(name string) (FuncType, bool) {
	for _, e := range m.Exports {
		if e.Name == name && e.Kind == KindFunc {
			return e.Type, true
		}
	}
	return FuncType{}, false
}

// Check reports the first way m breaks the ABI's rules for a module of
// the given kind: "reactor" (SDK reactor), "plain" (reactor with numeric
// exports only) or "command".
func (m *Module) Check(kind string) error {
	for _, imp := range m.Imports {
		names, ok := allowedImports[imp.Module]
		if !ok || (names != nil && !names[imp.Name]) {
			return fmt.Errorf("import %s.%s is not part of the ABI", imp.Module, imp.Name)
		}
	}
	hasMemory := false
	for _, e := range m.Exports {
		hasMemory = hasMemory || (e.Name == "memory" && e.Kind == KindMemory)
	}
	if !hasMemory {
		return errors.New("no exported memory")
	}
	want := map[string]string{}
	var unwanted []string
	switch kind {
	case "reactor":
		want = map[string]string{
			"_initialize":         "() -> ()",
			"shanhai_abi_version": "() -> (i32)",
			"shanhai_alloc":       "(i32) -> (i32)",
			"shanhai_event":       "(i32, i32, i32) -> (i32)",
		}
		unwanted = []string{"_start"}
	case "plain":
		want = map[string]string{"_initialize": "() -> ()"}
		unwanted = []string{"_start", "shanhai_event"}
	case "command":
		want = map[string]string{"_start": "() -> ()"}
	default:
		return fmt.Errorf("unknown module kind %q", kind)
	}
	for name, sig := range want {
		t, ok := m.Func(name)
		if !ok {
			return fmt.Errorf("export %s is missing", name)
		}
		if t.String() != sig {
			return fmt.Errorf("export %s has type %v, want %s", name, t, sig)
		}
	}
	for _, name := range unwanted {
		if _, ok := m.Func(name); ok {
			return fmt.Errorf("a %s module must not export %s", kind, name)
		}
	}
	return nil
}
