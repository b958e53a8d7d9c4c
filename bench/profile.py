"""Splits the CPU time a request costs each server into the code that spent
it, from the perf samples scripts/bench-profile.sh took, and prints the
tables of docs/benchmarks.md's "Where the time goes" as Markdown.

A part's share of a run's samples, times the server's CPU time per request
in that run (its user + system time over the requests wrk counted), is the
part's CPU time per request. Guest code is named by the wasm function names
that Go keeps in its modules (`net_http.__ServeMux_.ServeHTTP`); native Go
names the same functions `net/http.(*ServeMux).ServeHTTP`, and both fall in
the same part.

    python3 bench/profile.py --results target/bench-profile --started T --commit C
"""

import argparse
import collections
import gzip
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import parse_wrk, wrk_options  # noqa: E402 (found beside this file)

# The runs, in the order of the tables' columns: (label, column heading).
RUNS = [
    ("gw-add", "add, gateway"),
    ("ref-add", "add, bare hyper"),
    ("gw-text", "text, gateway"),
    ("native-text", "text, native Go"),
    ("gw-json2k", "json2k, gateway"),
    ("native-json2k", "json2k, native Go"),
    ("gw-readings", "readings, gateway"),
    ("native-readings", "readings, native Go"),
]

GO_ALLOCATION = re.compile(
    r"malloc|[gG][cC]|sweep|[sS]pan|heapBits|HeapBits|mheap|mcache|mcentral|scanobject"
    r"|scanblock|greyobject|markBits|wbBuf|[bB]arrier|memclr|findObject|mark"
)

# Go parts, first match wins, on a name with `/`, `-` and `.` as `_` (so a
# wasm name and a native one read alike).
GO_PARTS = [
    ("Go: the handler (examples/json2k/doc)", ("github_com_shanhai_edge_shanhai_examples",)),
    ("Go: Shanhai's SDK (envelope, http.Request, ResponseWriter)", ("github_com_shanhai_edge_shanhai_sdk",)),
    ("Go: encoding/json, reflect, strconv, unicode", ("encoding_", "reflect_", "strconv_", "internal_strconv", "unicode_", "math_")),
    (
        "Go: net/http, net/url, textproto, bufio, I/O",
        ("net_", "bufio_", "mime_", "vendor_", "internal_poll", "syscall_", "io_", "os_"),
    ),
]
GO_RUNTIME = ("runtime_", "internal_", "sync_", "mem", "gogo", "wasm_pc_f_loop", "_rt0")

# Rust parts by crate: the first crate a symbol names that is one of these
# (`<shanhai_gateway::listener::CountedStream as tokio::io::AsyncWrite>`
# is Shanhai's; `core::ptr::drop_in_place<hyper::...>` is hyper's).
RUST_PARTS = [
    ("Rust: hyper, http, httparse (HTTP/1)", ("hyper", "hyper_util", "httparse", "http", "http_body", "http_body_util", "h2")),
    ("Rust: tokio, mio (tasks, I/O, timers)", ("tokio", "mio")),
    ("Rust: wasmtime (calls, fibers, stores)", ("wasmtime", "wasmtime_", "cranelift")),
    ("Rust: Shanhai (routing, envelopes, pool, metrics)", ("shanhai_", "metrics", "metrics_util", "tracing")),
]
RUST_CRATE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)::")

PART_ORDER = (
    [name for name, _ in GO_PARTS]
    + [
        "Go runtime: allocation and GC",
        "Go runtime: maps, strings, scheduler",
        "Go: other packages (strings, bytes, context, path, ...)",
        "host ↔ wasm trampolines",
    ]
    + [name for name, _ in RUST_PARTS]
    + [
        "Rust: other (std, bytes, serde_json, ...)",
        "C library (malloc, free, memcpy, clock)",
        "kernel (TCP over loopback, syscalls, scheduling)",
        "unresolved",
    ]
)

WASM_PREFIX = re.compile(r"^wasm\[\d+\]::function\[\d+\]::")
SAMPLE = re.compile(r"^\s*[0-9a-f]+\s+(?P<sym>.*?)\s+\((?P<dso>[^()]*)\)\s*$")


def is_go(dso):
    return dso.endswith(".cwasm") or Path(dso).name == "json2k-native"


def go_part(sym):
    if "trampoline" in sym:
        return "host ↔ wasm trampolines"
    name = re.sub(r"[/.\-]", "_", WASM_PREFIX.sub("", sym))
    for part, prefixes in GO_PARTS:
        if any(name.startswith(p) for p in prefixes):
            return part
    if name.startswith(GO_RUNTIME):
        if name.startswith(("runtime_", "internal_runtime")) and GO_ALLOCATION.search(name):
            return "Go runtime: allocation and GC"
        return "Go runtime: maps, strings, scheduler"
    return "Go: other packages (strings, bytes, context, path, ...)"


def part_of(sym, dso):
    if dso == "[kernel.kallsyms]":
        return "kernel (TCP over loopback, syscalls, scheduling)"
    base = Path(dso).name
    if base.startswith(("libc.", "libm.", "ld-linux")) or base == "[vdso]":
        return "C library (malloc, free, memcpy, clock)"
    if is_go(dso):
        return go_part(sym)
    if base in ("shanhai", "bench-reference"):
        for crate in RUST_CRATE.findall(sym):
            for part, crates in RUST_PARTS:
                if crate in crates or crate.startswith(tuple(c for c in crates if c.endswith("_"))):
                    return part
        return "Rust: other (std, bytes, serde_json, ...)"
    return "unresolved"


def read_samples(path):
    """(symbol, dso) of each sample in a `perf script -F ip,sym,dso` dump."""
    samples = []
    with gzip.open(path, "rt", errors="replace") as f:
        for line in f:
            m = SAMPLE.match(line)
            if m:
                samples.append((m["sym"], m["dso"]))
    return samples


def thread_switches(wrk_log, requests):
    """Context switches per request of each thread name during a run, from
    the snapshots beside its wrk log (LABEL.threads-before and -after,
    lines `TID NAME VOLUNTARY INVOLUNTARY`): {(name, "waited" or
    "preempted"): per request}. A thread that started during the run counts
    from zero; one that ended is missing from the second snapshot and not
    counted. None where the snapshots are missing."""
    before_path = wrk_log.with_suffix(".threads-before")
    after_path = wrk_log.with_suffix(".threads-after")
    if not (before_path.is_file() and after_path.is_file() and requests):
        return None

    def snapshot(path):
        threads = {}
        for line in path.read_text().splitlines():
            tid, name, voluntary, involuntary = line.split()
            threads[tid] = (name, int(voluntary), int(involuntary))
        return threads

    before = snapshot(before_path)
    totals = collections.Counter()
    for tid, (name, voluntary, involuntary) in snapshot(after_path).items():
        _, voluntary_before, involuntary_before = before.get(tid, (name, 0, 0))
        totals[(name, "waited")] += voluntary - voluntary_before
        totals[(name, "preempted")] += involuntary - involuntary_before
    return {key: count / requests for key, count in totals.items()}


def syscalls(path, wrk_log):
    """System calls per request by name during the short run after a
    sampled one, from `perf stat -x, -e 'syscalls:sys_enter_*'`
    (LABEL.syscalls, lines `COUNT,UNIT,EVENT,...`) and that run's wrk log:
    {name: per request}. None where either is missing or nothing was
    counted (a kernel without the tracepoints)."""
    if not (path.is_file() and wrk_log.is_file()):
        return None
    requests = parse_wrk(wrk_log)["requests"]
    if not requests:
        return None
    counts = {}
    for line in path.read_text().splitlines():
        fields = line.split(",")
        if len(fields) < 3 or not fields[0].isdigit() or not fields[2].startswith("syscalls:sys_enter_"):
            continue
        counts[fields[2].removeprefix("syscalls:sys_enter_")] = int(fields[0]) / requests
    return counts if any(counts.values()) else None


def number(value, digits=1):
    return f"{value:,.{digits}f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--started", required=True)
    parser.add_argument("--commit", required=True)
    parser.add_argument("--frequency", required=True, help="perf's samples per second")
    args = parser.parse_args()

    runs = {}
    for label, heading in RUNS:
        run = parse_wrk(args.results / "wrk" / f"{label}.txt")
        samples = read_samples(args.results / "perf" / f"{label}.samples.gz")
        parts = collections.Counter(part_of(sym, dso) for sym, dso in samples)
        threads = thread_switches(args.results / "wrk" / f"{label}.txt", run["requests"])
        runs[label] = dict(heading=heading, rps=run["rps"], cpu=run["cpu_us"], threads=threads,
                           switches=sum(threads.values()) if threads is not None else None,
                           syscalls=syscalls(args.results / "perf" / f"{label}.syscalls",
                                            args.results / "perf" / f"{label}.syscalls-wrk.txt"),
                           samples=samples, parts=parts, wrk=run)

    # Every run has the same wrk options; only the script and the URL differ.
    options = wrk_options([runs[RUNS[0][0]]["wrk"]])
    out = []
    out.append(
        f"Commit `{args.commit}`, {args.started}. "
        f"Each column is one wrk run (`{options}`) with perf sampling the server "
        f"throughout (`perf record -F {args.frequency} -p PID`); a part's CPU time per request is its "
        "share of the samples times the server's CPU time per request in that run. "
        "`perf/LABEL.samples.gz` holds each run's samples (`perf script -F ip,sym,dso`)."
    )
    out.append("")
    labels = [label for label, _ in RUNS]
    out.append("| CPU µs per request | " + " | ".join(runs[l]["heading"] for l in labels) + " |")
    out.append("| --- |" + " ---: |" * len(labels))
    for part in PART_ORDER:
        values = []
        for label in labels:
            run = runs[label]
            share = run["parts"][part] / max(len(run["samples"]), 1)
            values.append(number(share * run["cpu"]) if run["parts"][part] else "")
        if any(values):
            out.append(f"| {part} | " + " | ".join(values) + " |")
    out.append("| **all, per request** | " + " | ".join(f"**{number(runs[l]['cpu'])}**" for l in labels) + " |")
    out.append("| requests/s in this run | " + " | ".join(number(runs[l]["rps"], 0) for l in labels) + " |")
    out.append("| perf samples | " + " | ".join(number(len(runs[l]["samples"]), 0) for l in labels) + " |")
    if all(runs[l]["switches"] is not None for l in labels):
        out.append("| the server's context switches per request | "
                   + " | ".join(number(runs[l]["switches"], 2) for l in labels) + " |")
    out.append("")

    def per_request_table(field, threshold, first_column, row_name, intro):
        """A table of `field` (per-request counts by key) for every run,
        with a row for each key counted at least `threshold` times per
        request in some run, the largest first; nothing where a run lacks
        the counts."""
        if not all(runs[l][field] is not None for l in labels):
            return
        most = collections.Counter()
        for label in labels:
            for key, per_request in runs[label][field].items():
                most[key] = max(most[key], per_request)
        out.append(intro)
        out.append("")
        out.append(f"| {first_column} | " + " | ".join(runs[l]["heading"] for l in labels) + " |")
        out.append("| --- |" + " ---: |" * len(labels))
        for key, largest in most.most_common():
            if largest >= threshold:
                values = [number(runs[l][field][key], 3) if key in runs[l][field] else "" for l in labels]
                out.append(f"| {row_name(key)} | " + " | ".join(values) + " |")
        out.append("")

    per_request_table(
        "threads", 0.001, "thread", lambda key: f"`{key[0]}`, {key[1]}",
        "Context switches per request by the server's threads (by name), in the same runs: "
        "\"waited\" counts a thread's voluntary switches (it blocked: no work, a lock, a sleep), "
        "\"preempted\" its involuntary ones (the kernel gave its core to another runnable thread, "
        "wrk's included). From each thread's `/proc/PID/task/TID/status` before and after the run "
        "(`wrk/LABEL.threads-before`, `-after`); threads that switched less than once per thousand "
        "requests are left out.")
    per_request_table(
        "syscalls", 0.01, "system call", lambda name: f"`{name}`",
        "System calls per request by the server, by name, each in a short wrk run of its own right after "
        "the sampled one (`perf stat -e 'syscalls:sys_enter_*' -p PID`, which would make the sampled "
        "run's context switches dearer; `perf/LABEL.syscalls` and `perf/LABEL.syscalls-wrk.txt`); calls "
        "made less than once per hundred requests are left out.")

    # The kernel's functions where the gateway's add requests spend the
    # most beyond bare hyper's, per request.
    kernel = {}
    for label in ("gw-add", "ref-add"):
        run = runs[label]
        counts = collections.Counter(sym for sym, dso in run["samples"] if dso == "[kernel.kallsyms]")
        kernel[label] = {sym: n / max(len(run["samples"]), 1) * run["cpu"] for sym, n in counts.items()}
    gap = sorted(kernel["gw-add"].keys() | kernel["ref-add"].keys(),
                 key=lambda sym: kernel["ref-add"].get(sym, 0) - kernel["gw-add"].get(sym, 0))
    out.append("The 10 kernel functions with the largest difference between the gateway's `add` requests "
               "and bare hyper's, CPU µs per request (the kernel's whole share: "
               f"{number(sum(kernel['gw-add'].values()))} against {number(sum(kernel['ref-add'].values()))}):")
    out.append("")
    out.append("| kernel function | add, gateway | add, bare hyper | difference |")
    out.append("| --- | ---: | ---: | ---: |")
    for sym in gap[:10]:
        ours, theirs = kernel["gw-add"].get(sym, 0), kernel["ref-add"].get(sym, 0)
        out.append(f"| `{sym}` | {number(ours, 2)} | {number(theirs, 2)} | {ours - theirs:+.2f} |")
    out.append("")

    for label, what, wanted in (
        ("gw-text", "the Go guest's functions, GET /json2k/text", is_go),
        ("gw-json2k", "the Go guest's functions, GET /json2k", is_go),
        ("gw-add", "the gateway's own functions and the C library's, POST /api/exec/add/add",
         lambda dso: Path(dso).name == "shanhai" or part_of("", dso).startswith("C library")),
    ):
        run = runs[label]
        functions = collections.Counter(WASM_PREFIX.sub("", sym) for sym, dso in run["samples"] if wanted(dso))
        top = functions.most_common(15)
        out.append(f"The 15 costliest of {what}, CPU µs per request:")
        out.append("")
        out.append("| function | µs | part |")
        out.append("| --- | ---: | --- |")
        dso_of = {WASM_PREFIX.sub("", sym): (sym, dso) for sym, dso in run["samples"]}
        for function, n in top:
            sym, dso = dso_of[function]
            shown = function if len(function) <= 90 else function[:87] + "..."
            out.append(f"| `{shown}` | {number(n / len(run['samples']) * run['cpu'], 2)} | {part_of(sym, dso)} |")
        out.append("")
    print("\n".join(out).rstrip())


if __name__ == "__main__":
    main()
