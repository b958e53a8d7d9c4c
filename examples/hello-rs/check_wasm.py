#!/usr/bin/env python3
"""Checks a Shanhai SDK reactor's wasm interface against docs/abi.md.

usage: check_wasm.py [path/to/module.wasm]   (default: hello_rs.wasm of a
release wasm32-wasip1 build)

Prints the module's imports and exports, then exits non-zero unless it
exports `memory`, `shanhai_abi_version () -> i32`, `shanhai_alloc (i32) ->
i32` and `shanhai_event (i32, i32, i32) -> i32`, and imports only from
`shanhai` and `wasi_snapshot_preview1`. Standard library only.
"""

import os
import sys

VALTYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128"}
KINDS = {0: "func", 1: "table", 2: "memory", 3: "global", 4: "tag"}
REQUIRED = {
    "memory": ("memory", None),
    "shanhai_abi_version": ("func", "() -> (i32)"),
    "shanhai_alloc": ("func", "(i32) -> (i32)"),
    "shanhai_event": ("func", "(i32, i32, i32) -> (i32)"),
}
ALLOWED_IMPORT_MODULES = {"shanhai", "wasi_snapshot_preview1"}


class Reader:
    def __init__(self, data, pos=0):
        self.data, self.pos = data, pos

    def byte(self):
        self.pos += 1
        return self.data[self.pos - 1]

    def uleb(self):
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return result

    def name(self):
        n = self.uleb()
        self.pos += n
        return self.data[self.pos - n : self.pos].decode()

    def limits(self):
        flags = self.byte()
        self.uleb()
        if flags & 1:
            self.uleb()


def parse(data):
    if data[:4] != b"\0asm":
        raise SystemExit("not a wasm module")
    types, imports, exports, funcs = [], [], [], []
    r = Reader(data, 8)
    while r.pos < len(data):
        section, size = r.byte(), r.uleb()
        end, s = r.pos + size, Reader(data, r.pos)
        if section == 1:
            for _ in range(s.uleb()):
                s.byte()  # 0x60, func type
                params = [VALTYPES.get(s.byte(), "?") for _ in range(s.uleb())]
                results = [VALTYPES.get(s.byte(), "?") for _ in range(s.uleb())]
                types.append("(%s) -> (%s)" % (", ".join(params), ", ".join(results)))
        elif section == 2:
            for _ in range(s.uleb()):
                module, field, kind = s.name(), s.name(), s.byte()
                sig = None
                if kind == 0:
                    sig = types[s.uleb()]
                elif kind == 1:
                    s.byte()
                    s.limits()
                elif kind == 2:
                    s.limits()
                else:
                    s.pos += 2
                imports.append((module, field, KINDS.get(kind, kind), sig))
        elif section == 3:
            funcs = [s.uleb() for _ in range(s.uleb())]
        elif section == 7:
            for _ in range(s.uleb()):
                field, kind, index = s.name(), s.byte(), s.uleb()
                exports.append((field, KINDS.get(kind, kind), index))
        r.pos = end
    imported_funcs = sum(1 for i in imports if i[2] == "func")
    resolved = []
    for field, kind, index in exports:
        sig = types[funcs[index - imported_funcs]] if kind == "func" and index >= imported_funcs else None
        resolved.append((field, kind, sig))
    return imports, resolved


def main():
    default = os.path.join(
        os.path.dirname(os.path.abspath(__file__)),
        "../../target/wasm32-wasip1/release/hello_rs.wasm",
    )
    path = sys.argv[1] if len(sys.argv) > 1 else default
    with open(path, "rb") as f:
        data = f.read()
    imports, exports = parse(data)
    print("%s: %d bytes" % (os.path.normpath(path), len(data)))
    for module, field, kind, sig in imports:
        print("  import %s.%s %s %s" % (module, field, kind, sig or ""))
    for field, kind, sig in exports:
        print("  export %s %s %s" % (field, kind, sig or ""))

    problems = []
    found = {field: (kind, sig) for field, kind, sig in exports}
    for field, want in REQUIRED.items():
        if found.get(field) != want:
            problems.append("export %s: want %s, found %s" % (field, want, found.get(field)))
    if "_initialize" in found and found["_initialize"] != ("func", "() -> ()"):
        problems.append("_initialize must be () -> ()")
    for module, field, _, _ in imports:
        if module not in ALLOWED_IMPORT_MODULES:
            problems.append("import %s.%s is outside shanhai/wasi_snapshot_preview1" % (module, field))
    print("  _initialize: %s" % ("exported" if "_initialize" in found else "not exported"))
    for p in problems:
        print("PROBLEM:", p)
    print("OK" if not problems else "FAILED")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
