#!/usr/bin/env python3
"""Start-up time and memory of the gateway with the quick-start config.

Run by scripts/bench-footprint.sh, which builds everything first; see there
for what is measured. Each figure is the median of the runs, with the
spread (min-max). Prints a Markdown table on stdout and the raw runs on
stderr, and writes them to footprint.json in $FOOTPRINT_JSON_DIR if set.

  footprint.py SHANHAI MODULES_DIR CONFIG REFERENCE GO_JSON2K RUNS LOAD_SECONDS IDLE_TIMEOUT_MS
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from benchlib import free_port, on_free_ports, status, write_json

(shanhai, modules, config, reference, go_json2k, runs, load_seconds,
 idle_timeout_ms) = sys.argv[1:9]
runs, load_seconds, idle_timeout_ms = int(runs), int(load_seconds), int(idle_timeout_ms)


def get(url, timeout=2.0, data=None):
    try:
        with urllib.request.urlopen(url, data=data, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:
        return None, b""


def wait_listening(port, deadline):
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.05).close()
            return time.monotonic()
        except OSError:
            time.sleep(0.001)
    raise SystemExit(f"nothing listened on {port}")


def wait_until(check, deadline, pause=0.002):
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(pause)
    raise SystemExit("timed out")


def wrk(url, seconds, script=None):
    args = ["wrk", "-t2", "-c16", f"-d{seconds}s", url]
    if script:
        args[1:1] = ["-s", script]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def children(pid):
    """The gateway's child processes: its compile workers."""
    kids = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(kid) for kid in f.read().split()]
        except OSError:
            pass
    return kids


class WorkerSampler(threading.Thread):
    """Samples the compile workers every 10 ms until stopped: the highest
    VmHWM of one worker, and the highest sum of the gateway's and its
    workers' VmRSS (an over-count: both map the same executable, whose
    pages the box holds once)."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.stopped = pid, threading.Event()
        self.worker_peak, self.total_peak = 0.0, 0.0

    def run(self):
        while not self.stopped.wait(0.01):
            try:
                total = status(self.pid)["VmRSS"]
                for kid in children(self.pid):
                    try:
                        worker = status(kid)
                    except OSError:
                        continue
                    self.worker_peak = max(self.worker_peak, worker.get("VmHWM", 0))
                    total += worker.get("VmRSS", 0)
            except OSError:
                return
            self.total_peak = max(self.total_peak, total)

    def stop(self):
        self.stopped.set()
        self.join()


def gateway_run(cache, work, measure_load):
    """One start of the gateway; returns its figures."""
    port = free_port()
    conf = os.path.join(work, "shanhai.toml")
    with open(config) as src, open(conf, "w") as dst:
        dst.write(on_free_ports(src.read()))
        dst.write(f"\n[defaults]\nidle_timeout_ms = {idle_timeout_ms}\n")
        dst.write(f'\n[admin]\nlisten = "127.0.0.1:0"\nsocket = "{work}/admin.sock"\ntoken_file = "{work}/admin.token"\n')
    env = dict(os.environ, SHANHAI_LOG="warn")
    started = time.monotonic()
    proc = subprocess.Popen(
        [shanhai, "serve", "--config", conf, "--modules", modules,
         "--listen", f"127.0.0.1:{port}", "--cache-dir", cache],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sampler = WorkerSampler(proc.pid)
    sampler.start()
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = started + 300
        listening = wait_listening(port, deadline)
        first_hello = wait_until(lambda: get(base + "/hello")[0] == 200, deadline)
        ready = wait_until(lambda: get(base + "/readyz")[0] == 200, deadline, 0.02)
        peak = status(proc.pid)["VmHWM"]
        sampler.stop()
        time.sleep(3)
        idle = status(proc.pid)
        figures = {
            "listen_ms": (listening - started) * 1e3,
            "first_hello_ms": (first_hello - started) * 1e3,
            "ready_ms": (ready - started) * 1e3,
            "peak_mb": peak,
            "worker_peak_mb": sampler.worker_peak,
            "box_peak_mb": max(sampler.total_peak, peak),
            "idle_rss_mb": idle["VmRSS"],
            "idle_anon_mb": idle["RssAnon"],
            "idle_file_mb": idle["RssFile"],
        }
        if measure_load:
            post = os.path.join(work, "add.lua")
            with open(post, "w") as f:
                f.write('wrk.method = "POST"\nwrk.body = "[2.5, 3.7]"\n')
            for path, script in (("/json2k", None), ("/api/exec/add/add", post),
                                 ("/hello", None), ("/cgi-echo", post)):
                wrk(base + path, load_seconds, script)
            loaded = status(proc.pid)
            figures["loaded_rss_mb"] = loaded["VmRSS"]
            figures["loaded_peak_mb"] = loaded["VmHWM"]
            # Past idle_timeout_ms and a reaper pass.
            time.sleep(idle_timeout_ms / 1000 * 1.5 + 1)
            after = status(proc.pid)
            figures["after_idle_rss_mb"] = after["VmRSS"]
            figures["after_idle_anon_mb"] = after["RssAnon"]
        return figures
    finally:
        sampler.stop()
        proc.terminate()
        proc.wait()


def reference_rss(command, url, script=None):
    """Idle and loaded VmRSS of a reference server under the same load."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: get(url, data=b"[2.5, 3.7]" if script else None)[0] == 200,
                   time.monotonic() + 30, 0.01)
        time.sleep(1)
        idle = status(proc.pid)["VmRSS"]
        wrk(url, load_seconds, script)
        return idle, status(proc.pid)["VmRSS"]
    finally:
        proc.terminate()
        proc.wait()


def summary(values, unit, digits=0):
    med = statistics.median(values)
    return f"{med:.{digits}f} {unit} ({min(values):.{digits}f}–{max(values):.{digits}f})"


cold, warm, refs = [], [], []
with tempfile.TemporaryDirectory() as tmp:
    warm_cache = os.path.join(tmp, "warm-cache")
    # One untimed start fills the warm cache.
    fill = os.path.join(tmp, "fill")
    os.makedirs(fill)
    gateway_run(warm_cache, fill, False)
    for run in range(runs):
        for kind in ("cold", "warm"):
            work = os.path.join(tmp, f"{kind}-{run}")
            os.makedirs(work)
            cache = os.path.join(work, "cache") if kind == "cold" else warm_cache
            figures = gateway_run(cache, work, kind == "warm")
            print(kind, json.dumps(figures), file=sys.stderr)
            (cold if kind == "cold" else warm).append(figures)
            shutil.rmtree(work, ignore_errors=True)
        post = os.path.join(tmp, "add.lua")
        with open(post, "w") as f:
            f.write('wrk.method = "POST"\nwrk.body = "[2.5, 3.7]"\n')
        port = free_port()
        hyper = reference_rss([reference, "--listen", f"127.0.0.1:{port}"],
                              f"http://127.0.0.1:{port}/api/exec/add/add", post)
        port = free_port()
        gojson = reference_rss([go_json2k, "-listen", f"127.0.0.1:{port}"],
                               f"http://127.0.0.1:{port}/json2k")
        refs.append((hyper, gojson))
        print("references", json.dumps(refs[-1]), file=sys.stderr)


write_json("footprint", {
    "runs": runs, "load_seconds": load_seconds, "idle_timeout_ms": idle_timeout_ms,
    "cold": cold, "warm": warm,
    "references": [{"hyper": {"idle_mb": hyper[0], "loaded_mb": hyper[1]},
                    "go_json2k": {"idle_mb": gojson[0], "loaded_mb": gojson[1]}}
                   for hyper, gojson in refs],
})


def col(rows, key):
    return [row[key] for row in rows]


print("| figure | cold cache | warm cache |")
print("| --- | --- | --- |")
print(f"| process start → HTTP listener accepting | {summary(col(cold, 'listen_ms'), 'ms', 1)} | {summary(col(warm, 'listen_ms'), 'ms', 1)} |")
print(f"| process start → first 200 from `/hello` | {summary(col(cold, 'first_hello_ms'), 'ms')} | {summary(col(warm, 'first_hello_ms'), 'ms')} |")
print(f"| process start → `/readyz` 200 (every module loaded) | {summary(col(cold, 'ready_ms'), 'ms')} | {summary(col(warm, 'ready_ms'), 'ms')} |")
print(f"| peak VmHWM at ready | {summary(col(cold, 'peak_mb'), 'MB')} | {summary(col(warm, 'peak_mb'), 'MB')} |")
print(f"| peak VmHWM of one compile worker | {summary(col(cold, 'worker_peak_mb'), 'MB')} | – |")
print(f"| peak gateway + compile worker (sum of VmRSS, sampled every 10 ms) | {summary(col(cold, 'box_peak_mb'), 'MB')} | {summary(col(warm, 'box_peak_mb'), 'MB')} |")
print(f"| idle VmRSS 3 s after ready | {summary(col(cold, 'idle_rss_mb'), 'MB')} | {summary(col(warm, 'idle_rss_mb'), 'MB')} |")
print(f"| of which RssAnon | {summary(col(cold, 'idle_anon_mb'), 'MB')} | {summary(col(warm, 'idle_anon_mb'), 'MB')} |")
print(f"| of which RssFile | {summary(col(cold, 'idle_file_mb'), 'MB')} | {summary(col(warm, 'idle_file_mb'), 'MB')} |")
print()
print("| after load (warm start) | gateway | bare hyper | native Go json2k |")
print("| --- | --- | --- | --- |")
print(f"| VmRSS idle before load | {summary(col(warm, 'idle_rss_mb'), 'MB')} | {summary([r[0][0] for r in refs], 'MB', 1)} | {summary([r[1][0] for r in refs], 'MB', 1)} |")
print(f"| VmRSS right after the load | {summary(col(warm, 'loaded_rss_mb'), 'MB')} | {summary([r[0][1] for r in refs], 'MB', 1)} | {summary([r[1][1] for r in refs], 'MB', 1)} |")
print(f"| VmHWM during the load | {summary(col(warm, 'loaded_peak_mb'), 'MB')} | | |")
print(f"| VmRSS after `idle_timeout_ms` ({idle_timeout_ms} ms) | {summary(col(warm, 'after_idle_rss_mb'), 'MB')} | | |")
print(f"| of which RssAnon | {summary(col(warm, 'after_idle_anon_mb'), 'MB')} | | |")
