#!/usr/bin/env python3
"""What one module costs in RSS: idle, and with a live instance.

Run by scripts/bench-footprint.sh. Starts the gateway (warm cache, no
config, idle_timeout_ms as given) on
  - no modules;
  - only `hello` (Go), then only `hello-rs` (Rust): VmRSS after load (the
    validation instance is dropped and the code paged out at once), with
    one live instance (after one request), and after it is reaped as idle;
  - the first N example modules (N = 1, 4, 8, all), after their instances
    are reaped: how the process grows with the number of modules.
Prints Markdown tables (medians of the rounds, with the spread); writes
every round to per_module.json in $FOOTPRINT_JSON_DIR if set.

  per_module.py SHANHAI MODULES_DIR CACHE_DIR ROUNDS IDLE_TIMEOUT_MS
"""

import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request

from benchlib import gateway, status, write_json

shanhai, modules, cache, rounds, idle_ms = sys.argv[1:6]
rounds, idle_ms = int(rounds), int(idle_ms)


def measure(names, work, path=None):
    """VmRSS after load, with one live instance after a request to `path`
    (None: no request), and once idle."""
    folder = os.path.join(work, "modules")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for name in names:
        shutil.copy(os.path.join(modules, f"{name}.wasm"), folder)
    config = f"[defaults]\nidle_timeout_ms = {idle_ms}\n[admin]\nenabled = false\n"
    with gateway(shanhai, config, folder, cache, work) as (proc, base):
        time.sleep(0.5)
        loaded = status(proc.pid)["VmRSS"]
        live = None
        if path:
            with urllib.request.urlopen(base + path, timeout=10) as reply:
                assert reply.status == 200, reply.status
            live = status(proc.pid)["VmRSS"]
        # Past idle_timeout_ms and a reaper pass (every idle_timeout/2).
        time.sleep(idle_ms / 1000 * 2 + 1)
        return loaded, live, status(proc.pid)["VmRSS"]


examples = sorted(f[:-5] for f in os.listdir(modules) if f.endswith(".wasm"))
sets = {"none": [], "hello (Go)": ["hello"], "hello-rs (Rust)": ["hello-rs"]}
requests = {"hello (Go)": "/hello", "hello-rs (Rust)": "/hello-rs"}
for n in (1, 4, 8, len(examples)):
    sets[f"{n} examples"] = examples[:n]
results = {label: [] for label in sets}
with tempfile.TemporaryDirectory() as work:
    for label, names in sets.items():
        measure(names, work)  # untimed: fills the cache for these modules
    for _ in range(rounds):
        for label, names in sets.items():
            results[label].append(measure(names, work, requests.get(label)))
            print(label, results[label][-1], file=sys.stderr)


write_json("per_module", {
    "rounds": rounds, "idle_timeout_ms": idle_ms,
    "sets": {label: {"modules": names,
                     "runs": [{"loaded_mb": r[0], "live_mb": r[1], "idle_mb": r[2]}
                              for r in results[label]]}
             for label, names in sets.items()},
})


def med(values):
    return f"{statistics.median(values):.1f} MB ({min(values):.1f}–{max(values):.1f})"


base_idle = statistics.median(r[2] for r in results["none"])
print("| modules | VmRSS after load | VmRSS with one live instance | VmRSS after idle reaping | idle cost over no modules |")
print("| --- | --- | --- | --- | --- |")
for label in sets:
    loaded = [r[0] for r in results[label]]
    live = [r[1] for r in results[label] if r[1] is not None]
    idle = [r[2] for r in results[label]]
    extra = statistics.median(idle) - base_idle
    print(f"| {label} | {med(loaded)} | {med(live) if live else '–'} | {med(idle)} | {extra:+.1f} MB |")
for label in ("hello (Go)", "hello-rs (Rust)"):
    instance = statistics.median(r[1] - r[2] for r in results[label])
    print(f"\nOne live {label} instance: {instance:.1f} MB (live minus reaped, median).")
