#!/usr/bin/env python3
"""What each memory layout (runtime.memory_strategy) costs in throughput.

Run by scripts/bench-footprint.sh. For each round, starts the gateway once
per layout (guarded, bounded, on-demand) on the same modules and cache and
measures, with wrk -t2 -c16, requests/s on GET /json2k, POST
/api/exec/add/add and POST /cgi-echo (a fresh instance per request). The
layouts alternate within a round so that machine noise hits each alike.
Prints a Markdown table: the median of the rounds with the spread, and the
ratio to the guarded layout; writes every round to strategies.json in
$FOOTPRINT_JSON_DIR if set.

  strategies.py SHANHAI MODULES_DIR CACHE_DIR ROUNDS SECONDS
"""

import os
import re
import statistics
import subprocess
import sys
import tempfile

from benchlib import gateway, write_json

shanhai, modules, cache, rounds, seconds = sys.argv[1:6]
rounds, seconds = int(rounds), int(seconds)
LAYOUTS = ("guarded", "bounded", "on-demand")
PATHS = (("GET /json2k", "/json2k", None),
         ("POST /api/exec/add/add", "/api/exec/add/add", "[2.5, 3.7]"),
         ("POST /cgi-echo (fresh instance)", "/cgi-echo", "hi"))


def rate(url, body, work):
    args = ["wrk", "-t2", "-c16", f"-d{seconds}s", url]
    if body is not None:
        script = os.path.join(work, "post.lua")
        with open(script, "w") as f:
            f.write(f'wrk.method = "POST"\nwrk.body = "{body}"\n')
        args[1:1] = ["-s", script]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"errors under load on {url}:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


results = {(layout, label): [] for layout in LAYOUTS for label, _, _ in PATHS}
with tempfile.TemporaryDirectory() as work:
    for _ in range(rounds):
        for layout in LAYOUTS:
            config = f'[runtime]\nmemory_strategy = "{layout}"\n[admin]\nenabled = false\n'
            with gateway(shanhai, config, modules, cache, work) as (_, base):
                for label, path, body in PATHS:
                    rate(base + path, body, work)  # warm-up, untimed
                    results[(layout, label)].append(rate(base + path, body, work))
                    print(layout, label, results[(layout, label)][-1], file=sys.stderr)

write_json("strategies", {
    "rounds": rounds, "seconds": seconds, "layouts": list(LAYOUTS),
    "requests_per_s": {layout: {label: results[(layout, label)] for label, _, _ in PATHS}
                       for layout in LAYOUTS},
})

print("| requests/s (wrk -c16) | " + " | ".join(LAYOUTS) + " |")
print("| --- |" + " --- |" * len(LAYOUTS))
for label, _, _ in PATHS:
    guarded = statistics.median(results[("guarded", label)])
    cells = []
    for layout in LAYOUTS:
        values = results[(layout, label)]
        med = statistics.median(values)
        cell = f"{med:,.0f} ({min(values):,.0f}–{max(values):,.0f})"
        if layout != "guarded":
            cell += f", {med / guarded:.2f}×"
        cells.append(cell)
    print(f"| {label} | " + " | ".join(cells) + " |")
