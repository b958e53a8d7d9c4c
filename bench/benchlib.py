"""What the footprint benchmarks share: free ports, /proc figures, a
gateway process started on a config and waited for, and their runs written
as JSON."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def on_free_ports(text):
    """The quick-start config with its fixed MQTT and Modbus ports (1883,
    5020) replaced by ports the system picks, so that a broker or another
    gateway on this machine does not make the run fail."""
    fixed = {
        "[mqtt]\n": '[mqtt]\nlisten = "127.0.0.1:0"\n',
        'listen = "127.0.0.1:5020"': 'listen = "127.0.0.1:0"',
    }
    for old, new in fixed.items():
        if text.count(old) != 1:
            sys.exit(f"benchlib.py: the quick-start config no longer has one {old.strip()!r}")
        text = text.replace(old, new)
    return text


def status(pid):
    """VmRSS, VmHWM, RssAnon and RssFile of a process, in MiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) / 1024
    return fields


def write_json(name, data):
    """Writes `data` to NAME.json in $FOOTPRINT_JSON_DIR, if that is set:
    every run's figures, for bench/report.py."""
    folder = os.environ.get("FOOTPRINT_JSON_DIR")
    if folder:
        with open(os.path.join(folder, f"{name}.json"), "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")


def ready(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def gateway(shanhai, config_text, modules, cache, work):
    """A `shanhai serve` on a free port with `config_text`, once /readyz is
    200; yields (process, base URL) and stops it afterwards."""
    config = os.path.join(work, "shanhai.toml")
    with open(config, "w") as f:
        f.write(config_text)
    port = free_port()
    proc = subprocess.Popen(
        [shanhai, "serve", "--config", config, "--modules", modules,
         "--listen", f"127.0.0.1:{port}", "--cache-dir", cache],
        cwd=work, env=dict(os.environ, SHANHAI_LOG="warn"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while not ready(base + "/readyz"):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"the gateway did not start on:\n{config_text}")
            time.sleep(0.02)
        yield proc, base
    finally:
        proc.terminate()
        proc.wait()
