#!/usr/bin/env python3
"""The "At HEAD" report: tables and SVG charts from one scripts/bench-all.sh run.

Reads RESULTS (default target/bench-all): run.json (commit, machine, the
sections run and their commands) and each section's raw results, which every
figure is computed from:

  http/      wrk/LABEL.N.txt (wrk --latency output, opening with its command
             line), startup-{warm,cold}.txt, rss.csv   (scripts/bench.sh)
  footprint/ footprint.json, strategies.json, per_module.json
                                                   (scripts/bench-footprint.sh)
  ws/        raw/{idle,echo-RATE,fanout}-TARGET.N.json, .cmd beside each
                                                   (scripts/bench-ws.sh)
  mqtt/      raw/*-N.json, .cmd beside each        (scripts/bench-mqtt.sh)
  state/     wrk/LABEL.N.txt, redis-benchmark-{get,set}.N.csv, criterion.txt,
             fsync.N.txt and commits.N.txt if there (scripts/bench-state.sh)

Every figure is the median of its runs with the spread (lowest-highest); a
ratio is the gateway's median over its reference's median from the same run,
its spread the lowest and highest ratio of run N over run N.

Writes the charts (SVG, reproducible: the same data gives the same bytes)
into CHARTS (default docs/benchmarks/), and one Markdown block, stating the
commit, date, machine and commands, with a table per section and the charts
embedded, into RESULTS/report.md and, unless --no-doc, into DOC (default
docs/benchmarks.md) between `<!-- bench-all:begin -->` and
`<!-- bench-all:end -->`; those markers and a heading are added after the
file's intro paragraph when missing. Nothing outside them is touched.

  report.py [--results DIR] [--charts DIR] [--doc FILE | --no-doc]

Exits with a message when run.json or a section's data is missing; a
section that was not selected (BENCH_SECTIONS) is skipped with a note.
"""

import argparse
import csv
import dataclasses
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402 (the backend comes first)

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- bench-all:begin -->", "<!-- bench-all:end -->"
HEADING = "## At HEAD: every figure from one run"
SECTIONS = ("http", "footprint", "ws", "mqtt", "state", "reload", "pulley", "profile")
SECTION_TITLES = {"http": "HTTP", "footprint": "Footprint", "ws": "WebSocket",
                  "mqtt": "MQTT and Modbus", "state": "State", "reload": "Hot swap",
                  "pulley": "Pulley against Cranelift", "profile": "Where a request's CPU time goes"}
CHART_FILES = ("throughput-ratios.svg", "http-latency.svg", "http-rss.svg", "ws-idle-memory.svg")
SECTION_CHARTS = {"http": ["http-latency.svg", "http-rss.svg"], "ws": ["ws-idle-memory.svg"]}
GATEWAY_COLOUR, REFERENCE_COLOUR, TARGET_COLOUR = "#1f77b4", "#ff7f0e", "#d62728"
WS_TARGET_BYTES = 1536
RATIO_AXIS_MAX = 2.0

# (what, gateway label, reference, reference label, issue target for the ratio)
HTTP_PAIRS = (
    ("POST /api/exec/add/add (Go add.wasm)", "gw-add", "bare hyper (`bench-reference`)", "ref-add", 0.8),
    ("GET /json2k (Go json2k.wasm, 2 KB JSON)", "gw-json2k", "native Go net/http", "native-json2k", 0.5),
    ("GET /json2k/text (Go json2k.wasm, \"ok\\n\")", "gw-text", "native Go net/http", "native-text", 0.6),
    ("POST /json2k/readings (Go json2k.wasm, JSON batch)", "gw-readings", "native Go net/http", "native-readings", 0.6),
)
HTTP_CONTEXT = (
    ("GET /hello-rs (Rust guest)", "gw-hello-rs"),
    ("GET /hello (Go guest)", "gw-hello"),
    ("POST /cgi-echo (CGI, a fresh instance per request)", "gw-cgi"),
    ("POST /cgi-echo (CGI, one connection)", "gw-cgi-c1"),
)
PERCENTILES = (50, 75, 90, 99)
MQTT_BROKERS = (("mosquitto", "mosquitto"),
                ("mosquitto-1t", "mosquitto, gateway on 1 thread"),
                ("embedded", "embedded, durable log"), ("memory", "embedded, memory only"))
MQTT_TARGET = 0.5
# (what, label, reference, reference label, target)
STATE_ROWS = (
    ("baseline: HTTP → Go guest → one host call (404 by design)", "baseline", None, None, None),
    ("KV get, embedded, cache hit", "embedded-get-hit", "baseline", "baseline", None),
    ("KV get, embedded, no cache (redb read)", "embedded-get-miss", "cached get, embedded", "embedded-get-hit", None),
    ("KV set, embedded (durable, group commit)", "embedded-set", "cached get, embedded", "embedded-get-hit", 0.5),
    ("KV set, embedded (durable, group commit)", "embedded-set", "fdatasync of 4 KiB, same disk", "fsync", None),
    ("KV set, embedded, redb page cache 1 GiB (redb's default)", "embedded-set-large-page-cache",
     "KV set, embedded (16 MiB page cache)", "embedded-set", None),
    ("KV get, Redis, cache hit", "redis-get-hit", "baseline", "baseline", None),
    ("KV get, Redis, no cache", "redis-get-miss", "cached get, Redis", "redis-get-hit", None),
    ("KV set, Redis", "redis-set", "cached get, Redis", "redis-get-hit", None),
    ("KV get, Redis, no cache", "redis-get-miss", "redis-benchmark GET, same Redis", "redis-benchmark-get", None),
    ("KV set, Redis", "redis-set", "redis-benchmark SET, same Redis", "redis-benchmark-set", None),
    ("SQLite INSERT from the guest", "sqlite-insert", None, None, None),
    ("SQLite SELECT by key from the guest", "sqlite-select", None, None, None),
)
# Rows an older sitting did not measure: left out when their logs are
# missing (the sets with redb's default page cache: since the bound).
STATE_OPTIONAL = {"embedded-set-large-page-cache"}
# The SQLite rows' references: {gateway label: criterion benchmark}.
CRITERION = {"sqlite-insert": "sql/insert_raw_rusqlite", "sqlite-select": "sql/select_raw_rusqlite"}


class MissingData(Exception):
    """A section that ran lacks the results the report needs."""


@dataclasses.dataclass(frozen=True)
class Stat:
    """The median of a figure's runs, with the lowest and highest."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values):
        """The Stat of `values`, or None when there are none."""
        values = [v for v in values if v is not None]
        if not values:
            return None
        return cls(statistics.median(values), min(values), max(values), len(values))


@dataclasses.dataclass(frozen=True)
class Ratio:
    """What a chart of ratios draws: one bar with its spread and target."""

    group: str
    what: str
    stat: Stat
    target: float | None


def ratio(values, refs):
    """Gateway over reference: the ratio of the medians, and as its spread
    the lowest and highest ratio of run N to run N (when the runs pair up;
    otherwise the extremes: lowest over highest, highest over lowest)."""
    values = [v for v in values if v is not None]
    refs = [r for r in refs if r is not None]
    if not values or not refs or min(refs) <= 0:
        return None
    if len(values) == len(refs):
        per_run = [v / r for v, r in zip(values, refs)]
    else:
        per_run = [min(values) / max(refs), max(values) / min(refs)]
    return Stat(statistics.median(values) / statistics.median(refs), min(per_run), max(per_run), len(per_run))


def number(value, digits=0):
    """`value` with thousands separators, or – when there is none."""
    return "–" if value is None else f"{value:,.{digits}f}"


def show(stat, digits=0, suffix=""):
    """A median with its spread in brackets (none for a single run)."""
    if stat is None:
        return "–"
    text = f"{number(stat.median, digits)}{suffix}"
    if stat.runs > 1:
        text += f" ({number(stat.low, digits)}–{number(stat.high, digits)})"
    return text


def show_ratio(stat, target=None):
    """A ratio as `0.73× (0.70–0.76)`, in bold when it misses `target`."""
    if stat is None:
        return "–"
    text = show(stat, 2, "×")
    return f"**{text}**" if target is not None and stat.median < target else text


def table(header, rows):
    """A Markdown table; a column of numbers is right-aligned."""
    def numeric(column):
        """Whether every cell of the column is a figure (or empty)."""
        cells = [str(row[column]).strip("*") for row in rows]
        figure = r"[+-]?\d[\d,.]*(×|[a-z]+)?( \([\d,.×–]+\))?( / [\d,.]+)?"
        return (any(c for c in cells if c not in ("–", "—"))
                and all(c in ("", "–", "—") or re.fullmatch(figure, c) for c in cells))
    lines = ["| " + " | ".join(header) + " |",
             "| " + " | ".join("---:" if numeric(i) else "---" for i in range(len(header))) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def normalise_command(line):
    """A recorded command line without what differs between runs: the
    leading `$ `, temporary folders, ports and process ids."""
    line = line.strip().removeprefix("$ ")
    line = re.sub(r"/tmp/shanhai-[\w.-]+/", "", line)
    line = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line)
    return re.sub(r"--pid \d+", "--pid PID", line)


def runs_by_label(folder, pattern):
    """Files in `folder` whose names match `pattern` (groups: label, run
    number), as {label: [path, ...]} in run order."""
    found = {}
    if folder.is_dir():
        for path in folder.iterdir():
            match = re.fullmatch(pattern, path.name)
            if match:
                found.setdefault(match.group(1), []).append((int(match.group(2)), path))
    return {label: [path for _, path in sorted(paths)] for label, paths in found.items()}


def milliseconds(text):
    """A wrk duration (`508.00us`, `1.06ms`, `2.10s`, `1.50m`) in ms."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"not a wrk duration: {text}")
    return float(match.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[match.group(2)]


def parse_wrk(path):
    """One wrk --latency log: its command, requests counted, requests/s,
    latency percentiles (ms), non-2xx responses and socket errors; the
    server's CPU µs per request where LABEL.cpu lies beside it."""
    text = path.read_text()
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if not rps:
        raise MissingData(f"{path} has no Requests/sec line (wrk failed?)")
    latency = {int(p): milliseconds(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    counted = re.search(r"^\s+(\d+) requests in", text, re.M)
    requests = int(counted.group(1)) if counted else 0
    cpu_path = path.with_suffix(".cpu")
    cpu_us = None
    if cpu_path.is_file() and requests > 0:
        ticks, per_second = (int(n) for n in cpu_path.read_text().split())
        cpu_us = ticks / per_second * 1e6 / requests
    return {
        "requests": requests,
        "cpu_us": cpu_us,
        "command": normalise_command(text.splitlines()[0]) if text.startswith("$ ") else None,
        "rps": float(rps.group(1)),
        "latency": latency,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(n) for n in sockets.groups()) if sockets else 0,
    }


def wrk_runs(folder, labels, optional=frozenset()):
    """{label: [parsed run, ...]} for every label, from LABEL.N.txt files;
    labels in `optional` only where their files exist."""
    files = runs_by_label(folder, r"(.+)\.(\d+)\.txt")
    missing = [label for label in labels if label not in files and label not in optional]
    if missing:
        raise MissingData(f"no wrk logs for {', '.join(missing)} in {folder}")
    return {label: [parse_wrk(path) for path in files[label]] for label in labels if label in files}


def wrk_options(runs):
    """The options of the first run's wrk command: `wrk -t2 -c64 -d10s --latency`."""
    command = runs[0]["command"] or "wrk"
    return " ".join(word for word in command.split() if word == "wrk" or word.startswith("-") and word != "-s")


def rel(path):
    """`path` relative to the repository, where it is inside it."""
    try:
        return str(Path(os.path.abspath(path)).relative_to(ROOT))
    except ValueError:
        return str(path)


def load_json(path):
    """A JSON file, or MissingData when it is not there."""
    if not path.is_file():
        raise MissingData(f"{path} is missing")
    return json.loads(path.read_text())


def json_runs(folder, pattern, labels):
    """{label: [JSON of run 1, run 2, ...]} from raw files named by `pattern`."""
    files = runs_by_label(folder, pattern)
    missing = [label for label in labels if label not in files]
    if missing:
        raise MissingData(f"no raw results for {', '.join(missing)} in {folder}")
    runs = {label: [json.loads(path.read_text()) for path in files[label]] for label in labels}
    for label, found in runs.items():
        failed = [run.get("failed") for run in found if run.get("failed")]
        if failed:
            raise MissingData(f"{label}: {failed[0]} connections failed in a run "
                              f"({found[0].get('first_error')}): it measured something else")
    return runs


def first_command(folder, name):
    """The command line recorded beside the raw file `name` (NAME.cmd)."""
    path = folder / f"{name}.cmd"
    if not path.is_file():
        raise MissingData(f"{path} is missing")
    return normalise_command(path.read_text().splitlines()[0])


# HTTP


def http_section(folder, charts, commit):
    """The HTTP tables (throughput, latency, start-up, memory) and the
    latency and RSS charts; returns (Markdown, ratios for the chart)."""
    labels = [p[1] for p in HTTP_PAIRS] + [p[3] for p in HTTP_PAIRS] + [c[1] for c in HTTP_CONTEXT]
    runs = wrk_runs(folder / "wrk", labels)

    def rps(label):
        """Requests/s of each run of `label`."""
        return [r["rps"] for r in runs[label]]

    def errors(label):
        """Non-2xx responses and socket errors over every run of `label`."""
        return sum(r["non2xx"] + r["socket_errors"] for r in runs[label])

    def cpu(label):
        """The server's CPU µs per request over `label`'s runs, or "–"
        where the runs did not record it."""
        values = [r["cpu_us"] for r in runs[label]]
        return show(Stat.of(values), 1) if all(v is not None for v in values) else "–"

    ratios, rows = [], []
    for what, gw, ref_name, ref, target in HTTP_PAIRS:
        r = ratio(rps(gw), rps(ref))
        ratios.append(Ratio("HTTP", what.split(" (")[0], r, target))
        rows.append([what, show(Stat.of(rps(gw))), ref_name, show(Stat.of(rps(ref))),
                     show_ratio(r, target), f"{target:.1f}×", f"{cpu(gw)} / {cpu(ref)}",
                     f"{errors(gw):,} / {errors(ref):,}"])
    for what, label in HTTP_CONTEXT:
        rows.append([what, show(Stat.of(rps(label))), "—", "", "", "", cpu(label), f"{errors(label):,}"])
    options = wrk_options(runs["gw-add"])
    c1 = wrk_options(runs["gw-cgi-c1"])
    parts = [f"`{options}`, {len(runs['gw-add'])} run(s) of each, the gateway and its reference "
             f"alternating (the one-connection CGI row: `{c1}`). Raw: `{rel(folder)}/wrk/LABEL.N.txt`, "
             "each opening with its wrk command line.",
             "The CPU column is the server's user + system time during the run (`/proc/PID/stat`) "
             "over the requests wrk counted: what one request costs each server, whatever wrk "
             "took of the shared cores.",
             table(["requests/s", "gateway", "reference", "reference req/s", "ratio", "target",
                    "server CPU µs per request (gw / ref)", "errors (gw / ref)"], rows)]

    def percentiles(label):
        """The percentiles of `label`'s runs, one cell each."""
        return [show(Stat.of([r["latency"].get(p) for r in runs[label]]), 2) for p in PERCENTILES]

    latency_rows = []
    for what, gw, ref_name, ref, _ in HTTP_PAIRS:
        latency_rows.append([f"{what.split(' (')[0]}, gateway"] + percentiles(gw))
        latency_rows.append([f"{what.split(' (')[0]}, {ref_name}"] + percentiles(ref))
    latency_rows += [[what] + percentiles(label) for what, label in HTTP_CONTEXT]
    parts.append(table(["latency, ms"] + [f"p{p}" for p in PERCENTILES], latency_rows))
    latency_chart(runs, charts / "http-latency.svg", commit, options)
    parts.append(f"![Latency percentiles of the gateway and its reference per HTTP pair, "
                 f"commit {commit}](CHARTS/http-latency.svg)")

    startup_rows = []
    for kind, what in (("warm", "warm compile cache"), ("cold", "cold, empty cache")):
        path = folder / f"startup-{kind}.txt"
        if not path.is_file():
            raise MissingData(f"{path} is missing")
        times = [float(t) for t in path.read_text().split("\n", 1)[0].split()]
        startup_rows.append([what, show(Stat.of(times), 1), str(len(times))])
    parts.append(table(["process start → first 200 from GET /json2k", "ms", "starts"], startup_rows))

    samples = read_rss(folder / "rss.csv")
    parts.append(rss_table(samples))
    rss_chart(samples, charts / "http-rss.svg", commit)
    parts.append(f"![The gateway's RSS over the HTTP run, each measurement's phase shaded, "
                 f"commit {commit}](CHARTS/http-rss.svg)")
    return "\n\n".join(parts), ratios


def read_rss(path):
    """rss.csv rows with numbers as numbers (MB) and empty cells as None."""
    if not path.is_file():
        raise MissingData(f"{path} is missing")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise MissingData(f"{path} holds no samples")
    samples = []
    for row in rows:
        sample = {"seconds": float(row["seconds"]), "label": row["label"]}
        for key, value in row.items():
            if key.endswith("_kb"):
                sample[key[:-3] + "_mb"] = int(value) / 1024 if value else None
        samples.append(sample)
    return samples


def sample_interval(samples):
    """The median time between two samples, in seconds."""
    if len(samples) < 2:
        return 0.0
    return statistics.median(b["seconds"] - a["seconds"] for a, b in zip(samples, samples[1:]))


def rss_table(samples):
    """Markdown: the gateway's RSS at the first and last sample and at its
    peak, and each reference's peak while it was under load."""
    gateway = [s["vmrss_mb"] for s in samples]
    anon = [s["rssanon_mb"] for s in samples if s["rssanon_mb"] is not None]
    rows = [["gateway VmRSS", number(gateway[0], 1), number(max(gateway), 1), number(gateway[-1], 1)],
            ["gateway RssAnon", number(anon[0], 1), number(max(anon), 1), number(anon[-1], 1)]]
    for column, prefix, name in (("bench_reference_vmrss_mb", "ref-", "bench-reference (bare hyper) VmRSS"),
                                 ("native_go_vmrss_mb", "native-", "native Go json2k VmRSS")):
        loaded = [s[column] for s in samples if s["label"].startswith(prefix) and s.get(column) is not None]
        rows.append([name, "", number(max(loaded), 1) if loaded else "–", ""])
    return (f"Memory during the load, sampled every {sample_interval(samples):.2f} s from /proc/PID/status "
            f"(`bench/rss_sampler.py`; `rss.csv`): {len(samples)} samples over "
            f"{samples[-1]['seconds'] - samples[0]['seconds']:.0f} s.\n\n"
            + table(["MB", "first sample", "peak (references: under their load)", "last sample"], rows))


# Footprint


def footprint_section(folder):
    """The footprint tables from footprint.json, strategies.json and
    per_module.json."""
    fp = load_json(folder / "footprint.json")
    layouts = load_json(folder / "strategies.json")
    per_module = load_json(folder / "per_module.json")

    def col(kind, key):
        """The Stat of one figure over the runs of one kind (cold or warm)."""
        return Stat.of([run.get(key) for run in fp[kind]])

    startup = (("process start → HTTP listener accepting, ms", "listen_ms", 1),
               ("process start → first 200 from `/hello`, ms", "first_hello_ms", 0),
               ("process start → `/readyz` 200 (every module loaded), ms", "ready_ms", 0),
               ("peak VmHWM of the gateway at ready, MB", "peak_mb", 0),
               ("peak VmHWM of one compile worker, MB", "worker_peak_mb", 0),
               ("peak gateway + compile worker (sum of VmRSS, every 10 ms), MB", "box_peak_mb", 0),
               ("idle VmRSS 3 s after ready, MB", "idle_rss_mb", 0),
               ("of which RssAnon, MB", "idle_anon_mb", 0),
               ("of which RssFile, MB", "idle_file_mb", 0))
    rows = [[what, show(col("cold", key), digits), "–" if key == "worker_peak_mb" else show(col("warm", key), digits)]
            for what, key, digits in startup]
    parts = [f"{fp['runs']} round(s), each a start with an empty and one with a warm compile cache, the "
             f"quick-start config with every example; wrk -t2 -c16 for {fp['load_seconds']} s per path; "
             f"`idle_timeout_ms` = {fp['idle_timeout_ms']}. Raw: `{rel(folder)}/footprint.json`.",
             table(["footprint", "cold cache", "warm cache"], rows)]

    hyper = {key: [r["hyper"][key] for r in fp["references"]] for key in ("idle_mb", "loaded_mb")}
    go = {key: [r["go_json2k"][key] for r in fp["references"]] for key in ("idle_mb", "loaded_mb")}
    gw_idle = [run["idle_rss_mb"] for run in fp["warm"]]
    gw_loaded = [run["loaded_rss_mb"] for run in fp["warm"]]
    rows = [["VmRSS idle before load", show(Stat.of(gw_idle)), show(Stat.of(hyper["idle_mb"]), 1),
             show(Stat.of(go["idle_mb"]), 1), show_ratio(ratio(gw_idle, hyper["idle_mb"])),
             show_ratio(ratio(gw_idle, go["idle_mb"]))],
            ["VmRSS right after the load", show(Stat.of(gw_loaded)), show(Stat.of(hyper["loaded_mb"]), 1),
             show(Stat.of(go["loaded_mb"]), 1), show_ratio(ratio(gw_loaded, hyper["loaded_mb"])),
             show_ratio(ratio(gw_loaded, go["loaded_mb"]))],
            ["VmHWM during the load", show(col("warm", "loaded_peak_mb")), "", "", "", ""],
            [f"VmRSS after `idle_timeout_ms` ({fp['idle_timeout_ms']} ms)",
             show(col("warm", "after_idle_rss_mb")), "", "", "", ""],
            ["of which RssAnon", show(col("warm", "after_idle_anon_mb")), "", "", "", ""]]
    parts.append(table(["MB, warm start", "gateway", "bare hyper", "native Go json2k",
                        "gateway ÷ hyper", "gateway ÷ Go"], rows))

    names = layouts["layouts"]
    rates = layouts["requests_per_s"]
    rows = []
    for path in rates[names[0]]:
        cells = [path]
        for layout in names:
            cell = show(Stat.of(rates[layout][path]))
            if layout != names[0]:
                cell += f", {show_ratio(ratio(rates[layout][path], rates[names[0]][path]))}"
            cells.append(cell)
        rows.append(cells)
    parts.append(f"Memory layouts (`runtime.memory_strategy`), requests/s with wrk -t2 -c16 for "
                 f"{layouts['seconds']} s, {layouts['rounds']} round(s), ratio to `{names[0]}`. "
                 f"Raw: `{rel(folder)}/strategies.json`.\n\n"
                 + table(["requests/s"] + names, rows))

    sets = per_module["sets"]
    none_idle = statistics.median(run["idle_mb"] for run in sets["none"]["runs"])
    rows = []
    # From no module up, whatever order the JSON keeps.
    for label, entry in sorted(sets.items(), key=lambda item: (len(item[1]["modules"]), item[0])):
        idle = Stat.of([run["idle_mb"] for run in entry["runs"]])
        rows.append([label, show(Stat.of([run["loaded_mb"] for run in entry["runs"]]), 1),
                     show(Stat.of([run["live_mb"] for run in entry["runs"]]), 1),
                     show(idle, 1), f"{idle.median - none_idle:+.1f}"])
    parts.append(f"What a module costs, VmRSS in MB, no config, warm cache, `idle_timeout_ms` = "
                 f"{per_module['idle_timeout_ms']}, {per_module['rounds']} round(s). "
                 f"Raw: `{rel(folder)}/per_module.json`.\n\n"
                 + table(["modules", "after load", "one live instance", "after idle reaping",
                          "idle cost over none"], rows))
    return "\n\n".join(parts)


# WebSocket


def echo_rates(files):
    """The echo rates a WebSocket run measured, from its raw files'
    labels (echo-RATE-gw), in increasing order."""
    return sorted({int(m.group(1)) for name in files for m in [re.fullmatch(r"echo-(\d+)-gw", name)] if m})


def ws_section(folder, charts, commit, command):
    """The WebSocket tables (idle memory, echo latency, fan-out) and the
    idle-memory chart; `command` is the section's, for the reference's
    read buffer."""
    raw = folder / "raw"
    files = runs_by_label(raw, r"(.+)\.(\d+)\.json")
    # The 128 KiB reference and the default-pool gateway row are optional
    # (BENCH_WS_REF_DEFAULT=0, BENCH_WS_IDLE_DEFAULT_POOL=0 leave them out).
    idle_targets = ["gw", "ref"] + [t for t in ("ref-default", "gw-pool") if f"idle-{t}" in files]
    rates = echo_rates(files)
    if not rates:
        raise MissingData(f"no echo results (echo-RATE-gw.N.json) in {raw}")
    need = [f"idle-{t}" for t in idle_targets] + ["fanout-gw", "fanout-ref-fanout"]
    need += [f"echo-{rate}-{t}" for rate in rates for t in ("gw", "ref")]
    data = json_runs(raw, r"(.+)\.(\d+)\.json", need)

    read_buffer = re.search(r"BENCH_WS_REF_READ_BUFFER=(\d+)", command)
    names = {"gw": "gateway, Go ws-echo, pool fixed at one instance",
             "gw-pool": "gateway, Go ws-echo, default pool (grows during the opens)",
             "ref": f"reference, tungstenite, {int(read_buffer.group(1)) if read_buffer else 4096:,} B read buffer",
             "ref-default": "reference, tungstenite, default 128 KiB read buffer"}

    def per_connection(target, key):
        """One per-connection figure of each idle run of `target`."""
        return [r[key] for r in data[f"idle-{target}"] if r[key] is not None]

    per_conn = {t: per_connection(t, "bytes_per_connection") for t in idle_targets}
    anon = {t: per_connection(t, "anon_bytes_per_connection") for t in idle_targets}
    if not per_conn["gw"]:
        raise MissingData(f"the gateway's idle runs in {raw} have no bytes_per_connection (no /proc access?)")
    rows = []
    for t in idle_targets:
        rows.append([names[t], number(Stat.of([r["opened"] for r in data[f"idle-{t}"]]).median),
                     show(Stat.of(per_conn[t])), show(Stat.of(anon[t])),
                     "" if t == "gw" else show_ratio(ratio(per_conn["gw"], per_conn[t]))])
    idle_cmd = first_command(raw, "idle-gw.1.json")
    gw_bytes = Stat.of(per_conn["gw"])
    parts = [f"`{idle_cmd}` (and the same against each reference), each on a fresh server. "
             f"Raw: `{rel(raw)}/`, a `.cmd` beside each run. Target: at most {WS_TARGET_BYTES:,} B per idle "
             f"connection, {'met' if gw_bytes.median <= WS_TARGET_BYTES else '**missed**'} "
             f"({number(gw_bytes.median)} B).",
             table(["idle connections", "held", "bytes per connection (VmRSS growth)",
                    "RssAnon growth per connection", "gateway ÷ this"], rows)]
    ws_chart(per_conn, anon, names, charts / "ws-idle-memory.svg", commit)
    parts.append(f"![WebSocket memory per idle connection, gateway and references, "
                 f"commit {commit}](CHARTS/ws-idle-memory.svg)")

    rows = []
    for rate in rates:
        gw, ref = data[f"echo-{rate}-gw"], data[f"echo-{rate}-ref"]
        cells = [f"{rate:,} msg/s over {gw[0]['connections']:,} connections"]
        for p in ("p50", "p99"):
            g = [(r["latency_us"] or {}).get(p) for r in gw]
            f = [(r["latency_us"] or {}).get(p) for r in ref]
            cells += [show(Stat.of(g)), show(Stat.of(f)), show_ratio(ratio(g, f))]
        cells.append(f"{sum(r['missing'] + r['errors'] for r in gw)} / {sum(r['missing'] + r['errors'] for r in ref)}")
        rows.append(cells)
    parts.append(f"Echo, open loop (latency from each message's due time; lower is better): "
                 f"`{first_command(raw, f'echo-{rates[0]}-gw.1.json')}`.\n\n"
                 + table(["echo", "gateway p50 µs", "reference p50 µs", "p50 ratio", "gateway p99 µs",
                          "reference p99 µs", "p99 ratio", "missing + errors (gw / ref)"], rows))

    gw, ref = data["fanout-gw"], data["fanout-ref-fanout"]
    g, f = [r["median_ms"] for r in gw], [r["median_ms"] for r in ref]
    rows = [["gateway, Go bench/ws-fanout", show(Stat.of(g), 1),
             show(Stat.of([r.get("server_cpu_ms_per_round") for r in gw])), sum(sum(r["missing"]) for r in gw)],
            ["reference, tungstenite --fanout", show(Stat.of(f), 1),
             show(Stat.of([r.get("server_cpu_ms_per_round") for r in ref])), sum(sum(r["missing"]) for r in ref)]]
    parts.append(f"Fan-out: one broadcast to every connection, time until the last has it (median per run; lower "
                 f"is better): `{first_command(raw, 'fanout-gw.1.json')}`. Gateway ÷ reference: "
                 f"{show_ratio(ratio(g, f))}.\n\n"
                 + table([f"fan-out to {gw[0]['connections']:,} connections", "ms", "server CPU ms per broadcast",
                          "missing"], rows))
    return "\n\n".join(parts)


# MQTT


def per_message(run, field, scale=1.0):
    """`field` of one bench-mqttload run (the CPU seconds or context
    switches a process spent during it) per message, warm-up included,
    times `scale`."""
    return run[field] * scale / (run["messages"] + run["warmup"])


def cpu_us_per_message(run, process):
    """The CPU µs per message (warm-up included) that `process` (gateway,
    mosquitto) spent in one bench-mqttload run."""
    return per_message(run, f"{process}_cpu_s", 1e6)


def mqtt_section(folder):
    """The MQTT tables (gateway against a broker pass-through, Modbus,
    order per topic); returns (Markdown, ratios for the chart)."""
    raw = folder / "raw"
    pattern = r"(.+)-(\d+)\.json"
    labels = [f"{b}-{path}-q{q}" for b, _ in MQTT_BROKERS for path in ("gw", "pass") for q in (0, 1)]
    order = [f"order-{prefix}-t{topics}" for topics in (1, 16, 0) for prefix in ("sensors", "unordered")]
    data = json_runs(raw, pattern, labels + ["modbus"] + order)

    def col(label, key):
        """One figure of each run of `label`."""
        return [r[key] for r in data[label]]

    def median_per_message(label, field, scale, digits):
        """Median of `field` per message over the runs of `label` (see
        `per_message`); "—" for runs recorded without it."""
        runs = data[label]
        if not all(field in r for r in runs):
            return "—"
        return number(Stat.of([per_message(r, field, scale) for r in runs]).median, digits)

    def cpu_us(label, process):
        """Median CPU µs per message that `process` spent."""
        return median_per_message(label, f"{process}_cpu_s", 1e6, 0)

    def switches(label, process):
        """Median context switches per message of `process`'s threads."""
        return median_per_message(label, f"{process}_switches", 1.0, 2)

    ratios, rows = [], []
    for broker, shown in MQTT_BROKERS:
        for qos in (0, 1):
            gw, ref = f"{broker}-gw-q{qos}", f"{broker}-pass-q{qos}"
            r = ratio(col(gw, "msgs_per_s"), col(ref, "msgs_per_s"))
            ratios.append(Ratio("MQTT", f"{shown}, QoS {qos}", r, MQTT_TARGET))
            on_mosquitto = broker.startswith("mosquitto")
            mosquitto = f"{cpu_us(gw, 'mosquitto')} / {cpu_us(ref, 'mosquitto')}" if on_mosquitto else "—"
            rows.append([shown, qos, show(Stat.of(col(gw, "msgs_per_s"))), show(Stat.of(col(ref, "msgs_per_s"))),
                         show_ratio(r, MQTT_TARGET),
                         f"{number(Stat.of(col(gw, 'p50_us')).median)} / {number(Stat.of(col(gw, 'p99_us')).median)}",
                         f"{number(Stat.of(col(ref, 'p50_us')).median)} / {number(Stat.of(col(ref, 'p99_us')).median)}",
                         f"{cpu_us(gw, 'gateway')} / {cpu_us(ref, 'gateway')}", mosquitto,
                         f"{switches(gw, 'gateway')} / {switches(ref, 'gateway')}",
                         f"{sum(col(gw, 'lost'))} / {sum(col(ref, 'lost'))}"])
    parts = [f"Gateway (`sensors/{{seq}}/raw` → mqtt-transform → `sensors/{{seq}}/json`) against the "
             f"broker's pass-through (no module) on the same broker, {len(data[labels[0]])} run(s): "
             f"`{first_command(raw, 'mosquitto-gw-q1-1.json')}`. Target: {MQTT_TARGET}× the pass-through. "
             f"Raw: `{rel(raw)}/`, a `.cmd` beside each run. CPU: µs per message, warm-up included, of the "
             f"gateway process (the embedded broker runs inside it) and of mosquitto, during the gateway's "
             f"runs / the pass-through's; context switches: the gateway process's threads', per message, "
             f"the same way. \"gateway on 1 thread\": `[runtime] worker_threads = 1` (the default: one per core).",
             table(["broker", "QoS", "gateway msg/s", "pass-through msg/s", "ratio", "gateway p50 / p99 µs",
                    "pass-through p50 / p99 µs", "gateway process CPU µs/msg (gw / pass)",
                    "mosquitto CPU µs/msg (gw / pass)", "gateway context switches per msg (gw / pass)",
                    "lost (gw / pass)"], rows)]
    modbus = data["modbus"]
    parts.append(table(["Modbus/TCP, function-3 reads, Go `examples/modbus`", "connections", "frames/s",
                        "p50 µs", "p99 µs"],
                       [["through the TCP trigger", modbus[0]["connections"],
                         show(Stat.of([r["frames_per_s"] for r in modbus])),
                         number(Stat.of([r["p50_us"] for r in modbus]).median),
                         number(Stat.of([r["p99_us"] for r in modbus]).median)]]))
    rows = []
    for topics, shown in ((1, "1 (hot)"), (16, "16"), (0, "one per message")):
        for prefix, what in (("sensors", 'per topic (`order_by = "topic"`)'),
                             ("unordered", 'none (`order_by = "none"`)')):
            label = f"order-{prefix}-t{topics}"
            rows.append([what, shown, show(Stat.of(col(label, "msgs_per_s"))),
                         number(Stat.of(col(label, "p50_us")).median), number(Stat.of(col(label, "p99_us")).median),
                         sum(col(label, "lost"))])
    parts.append(f"Order per topic, embedded broker, QoS 1: `{first_command(raw, 'order-sensors-t1-1.json')}`.\n\n"
                 + table(["order", "topics", "msg/s", "p50 µs", "p99 µs", "lost"], rows))
    return "\n\n".join(parts), ratios


# State


def redis_benchmark_runs(folder, test):
    """Requests/s and p50/p99 (ms) of each redis-benchmark-TEST.N.csv."""
    files = runs_by_label(folder, r"(redis-benchmark-\w+)\.(\d+)\.csv").get(f"redis-benchmark-{test}")
    if not files:
        raise MissingData(f"no redis-benchmark-{test}.N.csv in {folder}")
    runs = []
    for path in files:
        with path.open(newline="") as f:
            row = next(csv.DictReader(f))
        runs.append({"rps": float(row["rps"]),
                     "latency": {50: float(row["p50_latency_ms"]), 99: float(row["p99_latency_ms"])},
                     "non2xx": 0, "socket_errors": 0, "command": None})
    return runs


def criterion_rates(path):
    """{bench name: Stat of statements per second} from criterion's
    `time: [low mid high]` lines."""
    rates = {}
    if not path.is_file():
        return rates
    units = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    pattern = r"^(\S+)\s+time:\s+\[([\d.]+) (\S+) ([\d.]+) (\S+) ([\d.]+) (\S+)\]"
    for match in re.finditer(pattern, path.read_text(), re.M):
        low, mid, high = (float(match.group(i)) * units[match.group(i + 1)] for i in (2, 4, 6))
        # Criterion's estimate and its confidence interval stand for three runs.
        rates[match.group(1)] = Stat(1 / mid, 1 / high, 1 / low, 3)
    return rates


def space_separated_runs(folder, name):
    """The numbers of NAME.N.txt, one list per run in run order (none when
    there are no such files)."""
    files = runs_by_label(folder, rf"({name})\.(\d+)\.txt").get(name, [])
    return [[float(v) for v in path.read_text().split()] for path in files]


def state_section(folder):
    """The state table (KV and SQLite through the gateway against their
    references); returns (Markdown, ratios for the chart)."""
    labels = sorted({row[1] for row in STATE_ROWS})
    runs = wrk_runs(folder / "wrk", labels, optional=STATE_OPTIONAL)
    runs["redis-benchmark-get"] = redis_benchmark_runs(folder, "get")
    runs["redis-benchmark-set"] = redis_benchmark_runs(folder, "set")
    # Since e7a0f74: the disk's fdatasync rate and the group commits of
    # the embedded sets, one line per run each.
    fsync = space_separated_runs(folder, "fsync")
    commits = space_separated_runs(folder, "commits")
    if fsync:
        runs["fsync"] = [{"rps": row[0], "latency": {50: row[1], 99: row[2]}, "non2xx": 0, "socket_errors": 0}
                         for row in fsync]

    def rps(label):
        """Requests/s of each run of `label`."""
        return [r["rps"] for r in runs[label]]

    def latency(label, p):
        """The median of one latency percentile of `label`, in ms."""
        return number(Stat.of([r["latency"].get(p) for r in runs[label]]).median, 2)

    native = criterion_rates(folder / "criterion.txt")
    notes = [f"`{bench}` is missing from criterion.txt: no native SQLite reference for {label}."
             for label, bench in CRITERION.items() if bench not in native]
    ratios, rows = [], []
    for what, label, ref_name, ref, target in STATE_ROWS:
        # A row a sitting did not measure (older results) is left out.
        if not runs.get(label) or (ref and not runs.get(ref)):
            continue
        gw = Stat.of(rps(label))
        if ref:
            ref_stat, r = Stat.of(rps(ref)), ratio(rps(label), rps(ref))
        elif CRITERION.get(label) in native:
            ref_name, ref_stat = "native rusqlite, one thread (criterion)", native[CRITERION[label]]
            r = Stat(gw.median / ref_stat.median, gw.low / ref_stat.median, gw.high / ref_stat.median, gw.runs)
        else:
            ref_stat = r = None
        if r and ref != "baseline":
            ratios.append(Ratio("State", f"{what.split(' (')[0]} ÷ {ref_name.split(' (')[0]}", r, target))
        rows.append([what, show(gw), latency(label, 50), latency(label, 99), ref_name or "—", show(ref_stat),
                     show_ratio(r, target), f"{target:.1f}×" if target else "",
                     f"{sum(x['non2xx'] + x['socket_errors'] for x in runs[label]):,}"])
    for label, what in (("redis-benchmark-get", "redis-benchmark GET (no gateway)"),
                        ("redis-benchmark-set", "redis-benchmark SET (no gateway)"),
                        ("fsync", "fdatasync of a 4 KiB write beside the store (per second)")):
        if label in runs:
            rows.append([what, show(Stat.of(rps(label))), latency(label, 50), latency(label, 99),
                         "", "", "", "", ""])
    if commits:
        # (heading, field of the commits line, digits); field 3 is the
        # runs format's error count.
        columns = [("writes per commit", 0, 1), ("mean commit ms", 1, 3), ("commits", 2, 0)]
        # A fifth field in newer results: the KiB the gateway sent to the
        # disk per write (/proc/PID/io write_bytes).
        if all(len(c) > 4 for c in commits):
            columns.append(("KiB written to disk per write", 4, 1))
        notes.append(table(["group commits during the embedded sets"] + [heading for heading, _, _ in columns],
                           [["from `shanhai_kv_commit_*`, per run"]
                            + [show(Stat.of([c[field] for c in commits]), digits) for _, field, digits in columns]]))
    options = wrk_options(runs["baseline"])
    text = (f"Every request through the HTTP trigger into the Go `stateprobe` fixture (one host call each); "
            f"`{options}`, {len(runs['baseline'])} run(s); redis-benchmark `-n 200000 -d 64` against the same "
            f"Redis in each run; native rusqlite from criterion (its interval as the spread), run after the load. "
            f"Raw: `{rel(folder)}/wrk/LABEL.N.txt`, `redis-benchmark-*.N.csv`, `criterion.txt`"
            f"{', `fsync.N.txt`, `commits.N.txt`' if fsync else ''}.\n\n"
            + table(["measurement", "requests/s", "p50 ms", "p99 ms", "reference", "reference req/s", "ratio",
                     "target", "non-2xx + socket errors"], rows))
    return "\n\n".join([text] + notes), ratios


# Charts


def new_figure(width, height):
    """A figure whose layout leaves room for its labels."""
    return plt.figure(figsize=(width, height), layout="constrained")


def save(fig, path):
    """Writes `fig` as SVG without a date or random ids: the same data gives
    the same file."""
    fig.savefig(path, format="svg", metadata={"Date": None, "Creator": "bench/report.py"})
    plt.close(fig)


def error_bars(stats):
    """Matplotlib's [below, above] error lengths for `stats` (never
    negative, when a median lies outside the runs' ratios)."""
    return [[max(0.0, s.median - s.low) for s in stats], [max(0.0, s.high - s.median) for s in stats]]


def bar_end(r):
    """Where the drawing of a Ratio's bar ends: its spread or its target."""
    return max(r.stat.high, r.stat.median, r.target or 0)


def ratio_chart(ratios, path, commit):
    """Horizontal bars: each pair's throughput ratio, gateway ÷ reference,
    with its spread and a red line at its issue target."""
    ratios = [r for r in ratios if r.stat is not None]
    fig = new_figure(10, 0.42 * len(ratios) + 1.6)
    ax = fig.add_subplot()
    y = list(range(len(ratios)))[::-1]
    groups = sorted({r.group for r in ratios}, key=[r.group for r in ratios].index)
    colours = {g: plt.get_cmap("tab10")(i) for i, g in enumerate(groups)}
    ax.barh(y, [r.stat.median for r in ratios], xerr=error_bars([r.stat for r in ratios]),
            color=[colours[r.group] for r in ratios], capsize=3, height=0.6)
    # A far-off ratio (a reference much slower than the gateway) would squeeze
    # the rest: past RATIO_AXIS_MAX its bar is cut and its label says so.
    xmax = max([1.1] + [bar_end(r) + 0.25 for r in ratios if r.stat.median <= RATIO_AXIS_MAX])
    for yi, r in zip(y, ratios):
        if r.stat.median > xmax:
            ax.text(xmax - 0.02, yi, f"{r.stat.median:.2f}× →", va="center", ha="right", fontsize=8,
                    color="white", fontweight="bold")
        else:
            ax.text(bar_end(r) + 0.02, yi, f"{r.stat.median:.2f}×", va="center", fontsize=8)
        if r.target is not None:
            ax.plot([r.target, r.target], [yi - 0.4, yi + 0.4], color=TARGET_COLOUR, linewidth=2)
    ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_yticks(y, [f"{r.group}: {r.what}" for r in ratios], fontsize=8)
    ax.set_xlabel("throughput, gateway ÷ reference of the same run (1.0 = parity)")
    ax.set_xlim(0, xmax)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[g]) for g in groups]
    handles.append(plt.Line2D([0], [0], color=TARGET_COLOUR, linewidth=2))
    ax.legend(handles, groups + ["issue target"], loc="upper right", fontsize=8)
    ax.set_title(f"Throughput against the references, median of the runs, bars: lowest–highest run\n"
                 f"commit {commit}", fontsize=10)
    save(fig, path)


def latency_chart(runs, path, commit, options):
    """One panel per HTTP pair: p50/p75/p90/p99 of the gateway and its
    reference, median of the runs with the spread."""
    fig = new_figure(4 * len(HTTP_PAIRS), 4)
    axes = fig.subplots(1, len(HTTP_PAIRS))
    x = range(len(PERCENTILES))
    for ax, (what, gw, ref_name, ref, _) in zip(axes, HTTP_PAIRS):
        for offset, label, name, colour in ((-0.2, gw, "gateway", GATEWAY_COLOUR),
                                            (0.2, ref, ref_name.replace("`", ""), REFERENCE_COLOUR)):
            stats = [Stat.of([r["latency"].get(p) for r in runs[label]]) for p in PERCENTILES]
            ax.bar([i + offset for i in x], [s.median for s in stats], width=0.4, color=colour, label=name,
                   yerr=error_bars(stats), capsize=3)
        ax.set_xticks(list(x), [f"p{p}" for p in PERCENTILES])
        ax.set_ylabel("latency, ms")
        ax.set_title(what.split(" (")[0], fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(f"HTTP latency percentiles ({options}), median of the runs, bars: lowest–highest run; "
                 f"commit {commit}", fontsize=10)
    save(fig, path)


def rss_chart(samples, path, commit):
    """The gateway's VmRSS and RssAnon over the HTTP run, the references'
    VmRSS beside it, each measurement's phase shaded (warm-ups hatched)."""
    fig = new_figure(12, 5)
    ax = fig.add_subplot()
    spans = []
    for sample in samples:
        if spans and spans[-1][0] == sample["label"]:
            spans[-1][2] = sample["seconds"]
        else:
            spans.append([sample["label"], sample["seconds"], sample["seconds"]])
    # Each phase lasts until the next one's first sample.
    for span, following in zip(spans, spans[1:]):
        span[2] = following[1]
    targets = list(dict.fromkeys(label.split(":")[0] for label, _, _ in spans if label != "idle"))
    cmap = plt.get_cmap("tab20")
    colours = {target: cmap(i % 20) for i, target in enumerate(targets)}
    for label, start, end in spans:
        if label == "idle":
            continue
        target = label.split(":")[0]
        ax.axvspan(start, end, facecolor=colours[target], alpha=0.35, edgecolor="grey", linewidth=0,
                   hatch="///" if label.endswith(":warmup") else None)
    seconds = [s["seconds"] for s in samples]
    for key, name, style, colour in (("vmrss_mb", "gateway VmRSS", "-", "black"),
                                     ("rssanon_mb", "gateway RssAnon", "--", "black"),
                                     ("bench_reference_vmrss_mb", "bench-reference VmRSS", ":", "#8c2d04"),
                                     ("native_go_vmrss_mb", "native Go VmRSS", "-.", "#00441b")):
        ax.plot(seconds, [s.get(key) for s in samples], style, color=colour, linewidth=1.2, label=name)
    ax.set_xlabel("seconds since the gateway started")
    ax.set_ylabel("MB (MiB), from /proc/PID/status")
    ax.set_ylim(bottom=0)
    lines = ax.legend(loc="upper left", fontsize=8)
    ax.add_artist(lines)
    phases = [plt.Rectangle((0, 0), 1, 1, color=colours[t], alpha=0.35) for t in targets]
    ax.legend(phases, targets, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8,
              title="load running (hatched: warm-up)", title_fontsize=8)
    ax.set_title(f"The gateway's memory over the HTTP benchmark (scripts/bench.sh), sampled every "
                 f"{sample_interval(samples):.2f} s; commit {commit}", fontsize=10)
    save(fig, path)


def ws_chart(per_conn, anon, names, path, commit):
    """Bytes per idle WebSocket connection (VmRSS and RssAnon growth) of the
    gateway and each reference, with the target line."""
    targets = list(per_conn)
    colours = {"gw": GATEWAY_COLOUR, "ref": REFERENCE_COLOUR, "ref-default": "#a65628", "gw-pool": "#9ecae1"}
    fig = new_figure(9, 4.5)
    ax = fig.add_subplot()
    x = range(len(targets))
    tops = []
    for offset, values, hatch in ((-0.2, per_conn, None), (0.2, anon, "///")):
        stats = [Stat.of(values[t]) for t in targets]
        ax.bar([i + offset for i in x], [s.median for s in stats], width=0.4, hatch=hatch, edgecolor="white",
               color=[colours[t] for t in targets], yerr=error_bars(stats), capsize=3)
        for i, s in zip(x, stats):
            ax.text(i + offset, s.high * 1.03, f"{s.median:,.0f}", ha="center", va="bottom", fontsize=8)
        tops += [s.high for s in stats]
    ax.axhline(WS_TARGET_BYTES, color=TARGET_COLOUR, linestyle="--", linewidth=1.5)
    if min(tops) > 0 and max(tops) / min(tops) > 20:
        ax.set_yscale("log")
        ax.set_ylim(top=max(tops) * 3)
    else:
        ax.set_ylim(0, max(tops + [WS_TARGET_BYTES]) * 1.15)
    ax.set_xticks(list(x), [names[t].replace(", ", "\n") for t in targets], fontsize=8)
    ax.set_ylabel("bytes per idle connection")
    ax.legend([plt.Rectangle((0, 0), 1, 1, color="grey"),
               plt.Rectangle((0, 0), 1, 1, facecolor="grey", hatch="///", edgecolor="white"),
               plt.Line2D([0], [0], color=TARGET_COLOUR, linestyle="--")],
              ["VmRSS growth / connection", "RssAnon growth / connection", f"target: {WS_TARGET_BYTES:,} B"],
              fontsize=8, loc="upper left")
    ax.set_title(f"WebSocket memory per idle connection, median of the runs, bars: lowest–highest; "
                 f"commit {commit}", fontsize=10)
    save(fig, path)


# The document


def machine_line(run):
    """One sentence: the machine and tool versions recorded in run.json."""
    m = run["machine"]
    tools = ", ".join(f"`{version}`" for version in m["tools"].values())
    return (f"Machine: {m['cpu']}, {m['nproc']} cores (`nproc`), {m['mem_total_kb'] / 1024 / 1024:.1f} GiB, "
            f"{m['kernel']}{', ' + m['os'] if m.get('os') else ''}; {tools}.")


def section_body(name, run, results, charts, commit):
    """One section's Markdown (its charts written) and its throughput
    ratios; MissingData when it did not finish or its data is incomplete."""
    section = run["sections"].get(name, {})
    if section.get("status") != "ok":
        raise MissingData(f"it did not finish in this run (status: {section.get('status', 'not started')})")
    folder = results / name
    ratios = []
    # A section rerun on its own (BENCH_ALL_KEEP) names its own commit.
    commit = section.get("commit", commit)
    if name == "http":
        body, ratios = http_section(folder, charts, commit)
    elif name == "footprint":
        body = footprint_section(folder)
    elif name == "ws":
        body = ws_section(folder, charts, commit, section["command"])
    elif name == "mqtt":
        body, ratios = mqtt_section(folder)
    elif name == "state":
        body, ratios = state_section(folder)
    else:
        body = verbatim_section(folder)
    return f"Command: `{section['command']}`. {body}", ratios


def verbatim_section(folder):
    """A section whose script writes its own tables (results.md): those,
    one heading level down to sit under the section's."""
    path = folder / "results.md"
    if not path.is_file():
        raise MissingData(f"{path} is missing")
    text = re.sub(r"^(#+) ", r"#\1 ", path.read_text().strip(), flags=re.M)
    return f"Its tables, as the script wrote them; raw: `{rel(folder)}/`.\n\n{text}"


def steal_cell(section):
    """The host's steal during a section, as the sections table shows it;
    "–" for a run recorded before bench-all.sh measured it."""
    steal = section.get("steal_percent")
    return "–" if steal is None else f"{steal:.1f}%"


def build_block(run, results, charts, commit):
    """The Markdown block: header, sections' tables, charts (their folder
    written CHARTS/); returns (block, the chart files made)."""
    sections = run["sections"]
    dates = f"{run['started'].replace('T', ' ').removesuffix('Z')} – " \
            f"{(run['ended'] or '(unfinished)').replace('T', ' ').removesuffix('Z')} UTC"
    lines = [BEGIN,
             f"<!-- Generated by bench/report.py from {rel(results)}/ (scripts/bench-all.sh): "
             "edit the script, not this block. -->",
             "",
             f"Commit `{commit}`, {dates}. Command: `{run['command']}`. {machine_line(run)}",
             "",
             "Every figure is the median of its runs, the lowest and highest run in brackets; a ratio is the "
             "gateway's median over its reference's median from the same run (spread: the lowest and highest "
             "ratio of run N to run N); a bold ratio misses its target. "
             + ("CPU pinning as the command sets it." if re.search(r"BENCH_\w+_CPUS=\S", run["command"])
                else "Nothing was pinned: the load generators and the servers share the cores."),
             "",
             table(["section", "script (its command is under its heading)", "commit", "took",
                    "cores taken by the host (steal)"],
                   [[name, f"`{s['script']}`", f"`{s.get('commit', commit)}`",
                     f"{(s['seconds'] or 0) // 60}m{(s['seconds'] or 0) % 60:02d}s", steal_cell(s)]
                    for name, s in sections.items()]),
             "",
             "The last column is the share of the cores' time the virtual machine's host gave to others "
             "during the section (`steal` in /proc/stat; `scripts/bench-all.sh` warns at 5% or more): a "
             "section's figures lose that share unevenly, the gateway and its reference alike but not in step."]
    made, ratios, bodies = [], [], {}
    # The chart's caption names the charted sections' commit, or, when they
    # differ, the run's and each section's that differs from it.
    rerun, charted = [], set()
    for name in SECTIONS:
        if name not in run["selected"]:
            bodies[name] = "Not run in this run (`BENCH_SECTIONS` left it out): no figures."
            continue
        try:
            bodies[name], found = section_body(name, run, results, charts, commit)
        except MissingData as err:
            raise SystemExit(f"report.py: section {name}: {err}.\nRerun it: BENCH_ALL_KEEP=1 "
                             f"BENCH_SECTIONS={name} scripts/bench-all.sh keeps the other sections' results.")
        ratios += found
        made += SECTION_CHARTS.get(name, [])
        own = sections[name].get("commit", commit)
        if found:
            charted.add(own)
            if own != commit:
                rerun.append(f"{SECTION_TITLES[name]} at {own}")
    if ratios:
        # Sections charted at two commits: one of them is not the run's.
        commits = charted.pop() if len(charted) == 1 else f"{commit} ({'; '.join(rerun)})"
        ratio_chart(ratios, charts / "throughput-ratios.svg", commits)
        made.append("throughput-ratios.svg")
        lines += ["", f"![Throughput ratios, gateway ÷ reference, with the issue targets, commit {commits}]"
                      "(CHARTS/throughput-ratios.svg)"]
    for name in SECTIONS:
        lines += ["", f"### {SECTION_TITLES[name]}", "", bodies[name]]
    lines += ["", END]
    return "\n".join(lines), made


def with_links(block, charts, markdown_file):
    """`block` with CHARTS/ replaced by the charts' folder relative to the
    Markdown file that embeds them."""
    folder = os.path.relpath(charts.resolve(), markdown_file.resolve().parent)
    return block.replace("](CHARTS/", f"]({Path(folder).as_posix()}/")


def insert_block(doc, block):
    """`doc`'s text with `block` between the markers; adds the heading and
    the markers after the intro paragraph when the file has none."""
    text = doc.read_text()
    begin, end = text.count(BEGIN), text.count(END)
    if begin == end == 1 and text.index(BEGIN) < text.index(END):
        return text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    if begin or end:
        raise SystemExit(f"report.py: {doc} has {begin} '{BEGIN}' and {end} '{END}' markers, not one pair in order: "
                         "fix them by hand")
    lines = text.split("\n")
    # The intro: the first paragraph after the title.
    start = next(i for i, line in enumerate(lines) if line.startswith("# ")) + 1
    while start < len(lines) and not lines[start].strip():
        start += 1
    stop = start
    while stop < len(lines) and lines[stop].strip():
        stop += 1
    return "\n".join(lines[:stop] + ["", HEADING, "", block] + lines[stop:])


def main():
    """Reads the results, writes the charts, report.md and the document."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "target" / "bench-all")
    parser.add_argument("--charts", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-doc", action="store_true", help="write only RESULTS/report.md")
    args = parser.parse_args()

    run_file = args.results / "run.json"
    if not run_file.is_file():
        sys.exit(f"report.py: {run_file} is missing: run scripts/bench-all.sh first")
    run = json.loads(run_file.read_text())
    plt.rcParams.update({"svg.hashsalt": "shanhai-bench-report", "svg.fonttype": "none",
                         "font.family": "sans-serif", "font.size": 9})
    # Charts are drawn aside and moved in once every section is in order, so
    # that missing data leaves the old ones as they were.
    with tempfile.TemporaryDirectory() as drawn:
        block, made = build_block(run, args.results, Path(drawn), run["commit"])
        args.charts.mkdir(parents=True, exist_ok=True)
        for name in CHART_FILES:
            if name in made:
                shutil.copyfile(Path(drawn) / name, args.charts / name)
            elif (args.charts / name).exists():
                (args.charts / name).unlink()

    report = args.results / "report.md"
    report.write_text(with_links(block, args.charts, report) + "\n")
    print(f"report.py: {rel(report)}", file=sys.stderr)
    if not args.no_doc:
        args.doc.write_text(insert_block(args.doc, with_links(block, args.charts, args.doc)))
        print(f"report.py: {rel(args.doc)} (between the bench-all markers)", file=sys.stderr)
    for name in made:
        print(f"report.py: {rel(args.charts / name)}", file=sys.stderr)


if __name__ == "__main__":
    main()
