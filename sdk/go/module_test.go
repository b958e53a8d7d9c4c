//go:build !wasm

package shanhai_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/shanhai-edge/shanhai/sdk/go/internal/wasmfile"
)

// TestReactorModuleShape builds a reactor with the real toolchain and
// checks what the host will check at load time: the exports and their
// types, and imports only from shanhai and WASI. It is what proves that
// //go:wasmexport works from this (non-main) package.
func TestReactorModuleShape(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a wasm module")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	out := filepath.Join(t.TempDir(), "guest.wasm")
	cmd := exec.Command(goTool, "build", "-buildmode=c-shared", "-o", out, "./testdata/guest")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("wasip1 build failed: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	m, err := wasmfile.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Check("reactor"); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, imp := range m.Imports {
		if imp.Module == "shanhai" {
			seen[imp.Name] = true
			want := map[string]string{
				"log":          "(i32, i32, i32) -> ()",
				"output_write": "(i32, i32) -> (i32)",
				"config_get":   "(i32, i32) -> (i32)",
				"staged_read":  "(i32, i32) -> (i32)",
				"ws_send":      "(i64, i32, i32, i32) -> (i32)",
				"ws_close":     "(i64, i32, i32, i32) -> (i32)",
				"ws_join":      "(i64, i32, i32) -> (i32)",
				"ws_leave":     "(i64, i32, i32) -> (i32)",
				"ws_broadcast": "(i32, i32, i32, i32, i32, i64) -> (i32)",
				"mqtt_publish": "(i32, i32, i32, i32, i32, i32) -> (i32)",
				"kv_get":       "(i32, i32, i32, i32) -> (i32)",
				"kv_set":       "(i32, i32, i32, i32, i32, i32, i64) -> (i32)",
				"kv_delete":    "(i32, i32, i32, i32) -> (i32)",
				"kv_list":      "(i32, i32, i32, i32, i32, i32, i32) -> (i32)",
				"kv_cas":       "(i32, i32, i32, i32, i32, i32, i32, i32, i64) -> (i32)",
				"kv_incr":      "(i32, i32, i32, i32, i64, i32) -> (i32)",
				"sql_exec":     "(i32, i32, i32, i32, i32, i32) -> (i32)",
				"http_fetch":   "(i32, i32) -> (i32)",
				"gpio_read":    "(i32) -> (i32)",
				"gpio_write":   "(i32, i32) -> (i32)",
			}[imp.Name]
			if got := imp.Type.String(); got != want {
				t.Errorf("import shanhai.%s has type %s, want %s", imp.Name, got, want)
			}
		}
	}
	// The guest calls every host function (testdata/guest/main.go).
	for _, name := range []string{"log", "output_write", "config_get", "staged_read", "ws_send", "ws_close", "ws_join", "ws_leave", "ws_broadcast", "mqtt_publish",
		"kv_get", "kv_set", "kv_delete", "kv_list", "kv_cas", "kv_incr", "sql_exec", "http_fetch", "gpio_read", "gpio_write"} {
		if !seen[name] {
			t.Errorf("the guest does not import shanhai.%s", name)
		}
	}
	t.Logf("%d bytes, initial memory %d pages", len(b), m.MemoryMinPages)
}
