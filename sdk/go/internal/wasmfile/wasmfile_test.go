package wasmfile

import (
	"strings"
	"testing"
)

// module assembles a binary from sections given as (id, payload).
func module(sections ...[]byte) []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	for _, s := range sections {
		b = append(b, s[0], byte(len(s)-1))
		b = append(b, s[1:]...)
	}
	return b
}

func name(s string) []byte { return append([]byte{byte(len(s))}, s...) }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// A module importing importModule.importName (i32) -> (i32), defining one
// function of type () -> (), a 2-page memory, and exporting both functions.
func testModule(importModule, importName, export string) []byte {
	return module(
		cat([]byte{1, 2, 0x60, 1, 0x7f, 1, 0x7f, 0x60, 0, 0}),
		cat([]byte{2, 1}, name(importModule), name(importName), []byte{KindFunc, 0}),
		[]byte{3, 1, 1},
		[]byte{5, 1, 0, 2},
		cat([]byte{7, 3}, name("memory"), []byte{KindMemory, 0}, name("imported"), []byte{KindFunc, 0},
			name(export), []byte{KindFunc, 1}),
	)
}

func TestParse(t *testing.T) {
	m, err := Parse(testModule("shanhai", "log", "_initialize"))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Imports) != 1 || m.Imports[0].Module != "shanhai" || m.Imports[0].Name != "log" ||
		m.Imports[0].Type.String() != "(i32) -> (i32)" {
		t.Errorf("imports %+v", m.Imports)
	}
	if m.MemoryMinPages != 2 {
		t.Errorf("memory %d pages", m.MemoryMinPages)
	}
	if typ, ok := m.Func("_initialize"); !ok || typ.String() != "() -> ()" {
		t.Errorf("_initialize: %v %v", typ, ok)
	}
	if typ, ok := m.Func("imported"); !ok || typ.String() != "(i32) -> (i32)" {
		t.Errorf("re-exported import: %v %v", typ, ok)
	}
	if err := m.Check("plain"); err != nil {
		t.Errorf("plain: %v", err)
	}
	if err := m.Check("reactor"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("reactor: %v", err)
	}
}

func TestCheckRefusesForeignImports(t *testing.T) {
	for _, imp := range [][2]string{{"env", "foo"}, {"shanhai", "not_in_the_abi"}} {
		m, err := Parse(testModule(imp[0], imp[1], "_initialize"))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Check("plain"); err == nil || !strings.Contains(err.Error(), imp[0]+"."+imp[1]) {
			t.Errorf("import %s.%s: %v", imp[0], imp[1], err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	if _, err := Parse([]byte("not wasm")); err == nil {
		t.Error("accepted a non-wasm file")
	}
	b := testModule("shanhai", "log", "_initialize")
	// Every cut must parse or fail cleanly, never panic (a cut between
	// sections is a valid, shorter module).
	for cut := range len(b) {
		Parse(b[:cut])
	}
	if _, err := Parse(b[:len(b)-3]); err == nil {
		t.Error("accepted a truncated export section")
	}
}
