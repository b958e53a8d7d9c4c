#!/usr/bin/env python3
"""The allocator comparison: the headline figures of each bench-all section,
the gateway on the C library's allocator beside the same gateway on
mimalloc, from one scripts/bench-allocator.sh sitting.

Reads RESULTS/glibc/ and RESULTS/mimalloc/ (two bench-all result folders,
each section run once per build, back to back) with bench/report.py's
parsers, and prints a Markdown table per section: each figure's median with
its spread for both builds, and mimalloc's median over glibc's. The
mimalloc runs' own settings (MIMALLOC_NAME=VALUE lines in
RESULTS/mimalloc/settings, none by default) are named in the heading.

  allocator.py --results DIR --started TIME --sections http ws ...
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402 (found beside this file)
from report import Stat, show, table  # noqa: E402

ALLOCATORS = ("glibc", "mimalloc")


def http_figures(folder):
    """(figure, better, [values per run]) of the HTTP section."""
    labels = [(what, gw) for what, gw, *_ in report.HTTP_PAIRS] + list(report.HTTP_CONTEXT)
    runs = report.wrk_runs(folder / "wrk", [label for _, label in labels])
    figures = []
    for what, label in labels:
        figures.append((f"{what}: requests/s", "higher", [r["rps"] for r in runs[label]]))
        figures.append((f"{what}: server CPU µs per request", "lower", [r["cpu_us"] for r in runs[label]]))
        figures.append((f"{what}: p99 ms", "lower", [r["latency"].get(99) for r in runs[label]]))
    samples = report.read_rss(folder / "rss.csv")
    gateway = [s["vmrss_mb"] for s in samples]
    # One sampled series per run of the section: the first, peak and last.
    figures += [("gateway VmRSS MB, before the load (ready, one request per path)", "lower", [gateway[0]]),
                ("gateway VmRSS MB, peak under load", "lower", [max(gateway)]),
                ("gateway VmRSS MB, last sample", "lower", [gateway[-1]])]
    return figures


def ws_figures(folder):
    """(figure, better, [values per run]) of the WebSocket section."""
    raw = folder / "raw"
    files = report.runs_by_label(raw, r"(.+)\.(\d+)\.json")
    rates = report.echo_rates(files)
    labels = ["idle-gw", "fanout-gw"] + [f"echo-{rate}-gw" for rate in rates]
    if "idle-gw-pool" in files:
        labels.append("idle-gw-pool")
    data = report.json_runs(raw, r"(.+)\.(\d+)\.json", labels)
    figures = [("idle connection, bytes of VmRSS each (pool fixed at one instance)", "lower",
                [r["bytes_per_connection"] for r in data["idle-gw"]])]
    if "idle-gw-pool" in data:
        figures.append(("idle connection, bytes of VmRSS each (default pool)", "lower",
                        [r["bytes_per_connection"] for r in data["idle-gw-pool"]]))
    for rate in rates:
        for p in ("p50", "p99"):
            figures.append((f"echo at {rate:,} msg/s, {p} µs", "lower",
                            [(r["latency_us"] or {}).get(p) for r in data[f"echo-{rate}-gw"]]))
    figures += [("fan-out to every connection, ms", "lower", [r["median_ms"] for r in data["fanout-gw"]]),
                ("fan-out, server CPU ms per broadcast", "lower",
                 [r.get("server_cpu_ms_per_round") for r in data["fanout-gw"]])]
    return figures


def mqtt_figures(folder):
    """(figure, better, [values per run]) of the MQTT section: the gateway's
    rows (the pass-through does not run the gateway)."""
    raw = folder / "raw"
    labels = [f"{broker}-gw-q{qos}" for broker, _ in report.MQTT_BROKERS for qos in (0, 1)] + ["modbus"]
    data = report.json_runs(raw, r"(.+)-(\d+)\.json", labels)
    figures = []
    for broker, shown in report.MQTT_BROKERS:
        for qos in (0, 1):
            runs = data[f"{broker}-gw-q{qos}"]
            figures.append((f"{shown}, QoS {qos}: msg/s through the module", "higher",
                            [r["msgs_per_s"] for r in runs]))
            if all("gateway_cpu_s" in r for r in runs):
                figures.append((f"{shown}, QoS {qos}: gateway CPU µs per message", "lower",
                                [report.cpu_us_per_message(r, "gateway") for r in runs]))
    figures.append(("Modbus/TCP frames/s", "higher", [r["frames_per_s"] for r in data["modbus"]]))
    return figures


def state_figures(folder):
    """(figure, better, [values per run]) of the state section: the
    gateway's rows."""
    labels = sorted({row[1] for row in report.STATE_ROWS})
    runs = report.wrk_runs(folder / "wrk", labels)
    seen, figures = set(), []
    for what, label, *_ in report.STATE_ROWS:
        if label in seen:
            continue
        seen.add(label)
        figures.append((f"{what.split(' (')[0]}: requests/s", "higher", [r["rps"] for r in runs[label]]))
    return figures


FIGURES = {"http": http_figures, "ws": ws_figures, "mqtt": mqtt_figures, "state": state_figures}


def mimalloc_settings(results):
    """The MIMALLOC_* settings the mimalloc runs had in their environment."""
    path = results / "mimalloc" / "settings"
    return path.read_text().split() if path.is_file() else []


def section_table(name, results, settings):
    """One section's Markdown: its figures for both builds side by side,
    the mimalloc column naming `settings` (already formatted)."""
    found = {allocator: FIGURES[name](results / allocator / name) for allocator in ALLOCATORS}
    rows = []
    for (what, better, glibc), (_, _, mimalloc) in zip(found["glibc"], found["mimalloc"]):
        g, m = Stat.of(glibc), Stat.of(mimalloc)
        digits = 0 if not g or g.median >= 100 else 1 if g.median >= 10 else 2
        change = f"{m.median / g.median:.2f}×" if g and m and g.median else "–"
        rows.append([what, show(g, digits), show(m, digits), change, better])
    return table(["figure", "glibc (default)", f"mimalloc{settings}", "mimalloc ÷ glibc", "better"], rows)


def commands(results, sections):
    """Each build's section commands, as bench-all recorded them."""
    lines = []
    for allocator in ALLOCATORS:
        run = json.loads((results / allocator / "run.json").read_text())
        for name in sections:
            section = run["sections"][name]
            if section.get("status") != "ok":
                sys.exit(f"allocator.py: {name} on {allocator} did not finish (status {section.get('status')})")
            lines.append(f"- {allocator}, {name} at `{section['commit']}`: `{section['command']}`, "
                         f"{section['seconds'] // 60}m{section['seconds'] % 60:02d}s")
    return lines


def main():
    """Prints the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--started", required=True)
    parser.add_argument("--sections", nargs="+", required=True, choices=sorted(FIGURES))
    args = parser.parse_args()
    run = json.loads((args.results / "glibc" / "run.json").read_text())
    settings = mimalloc_settings(args.results)
    named = "".join(f", `{setting}`" for setting in settings)
    out = [f"Started {args.started.replace('T', ' ').removesuffix('Z')} UTC (scripts/bench-allocator.sh). "
           f"{report.machine_line(run)} Each section ran on the glibc build, then on the mimalloc build "
           f"(`--features shanhai-cli/mimalloc`{named}{' in its environment' * bool(settings)}"
           "); medians of each section's runs, the lowest and highest in brackets.", ""]
    out += commands(args.results, args.sections)
    for name in args.sections:
        out += ["", f"#### {report.SECTION_TITLES[name]}", "", section_table(name, args.results, named)]
    print("\n".join(out))


if __name__ == "__main__":
    main()
