// Command wasmcheck prints the imports, exports and initial memory of
// WebAssembly modules and checks them against the Shanhai ABI's rules for
// a module kind, without a wasm toolchain:
//
//	go run ./internal/cmd/wasmcheck -kind reactor hello.wasm
//
// It exits with status 1 if any module breaks the rules.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/shanhai-edge/shanhai/sdk/go/internal/wasmfile"
)

func main() {
	kind := flag.String("kind", "reactor", "module kind: reactor, plain or command")
	quiet := flag.Bool("q", false, "print only problems")
	flag.Parse()
	failed := false
	for _, path := range flag.Args() {
		if err := check(path, *kind, *quiet); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

func check(path, kind string, quiet bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	m, err := wasmfile.Parse(b)
	if err != nil {
		return err
	}
	if !quiet {
		fmt.Printf("%s: %d bytes, initial memory %d pages (%d KiB)\n", path, len(b), m.MemoryMinPages, m.MemoryMinPages*64)
		for _, imp := range m.Imports {
			fmt.Printf("  import %s.%s %v\n", imp.Module, imp.Name, imp.Type)
		}
		for _, e := range m.Exports {
			if e.Kind == wasmfile.KindFunc {
				fmt.Printf("  export %s %v\n", e.Name, e.Type)
			} else {
				fmt.Printf("  export %s (kind %d)\n", e.Name, e.Kind)
			}
		}
	}
	return m.Check(kind)
}
