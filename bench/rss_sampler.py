#!/usr/bin/env python3
"""Samples the resident memory of a server, and of others beside it, until
the server exits or the sampler is stopped (SIGTERM).

Run by scripts/bench.sh during the load. Every INTERVAL seconds it appends
one CSV row: the seconds since the first process started (from
/proc/PID/stat, so the time axis starts at the process's start, not the
sampler's), the label of the measurement running (the first line of
LABEL_FILE, "idle" when the file is missing or empty), the first process's
VmRSS and RssAnon, then each other process's VmRSS (empty once it is gone).
Rows are flushed one by one, so a killed sampler loses nothing.

  rss_sampler.py OUT.csv LABEL_FILE INTERVAL NAME=PID [NAME=PID ...]

The header names the columns: seconds,label,vmrss_kb,rssanon_kb, then
NAME_vmrss_kb for every process after the first (dashes become
underscores).
"""

import csv
import os
import signal
import sys
import time


def status_kb(pid):
    """VmRSS and RssAnon of `pid` in KiB, or None once it is gone."""
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon"):
                    fields[key] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        return None
    # A zombie has no memory lines left: it is gone too.
    return fields if "VmRSS" in fields else None


def started_at(pid):
    """When `pid` started, in seconds on the CLOCK_BOOTTIME clock that
    /proc/uptime counts."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces and parentheses: fields count
        # from after its last ')'; starttime is field 22 of the whole line.
        fields = f.read().rpartition(")")[2].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def uptime():
    """Seconds since boot, the clock of `started_at`."""
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def current_label(path):
    """The first line of `path`, or "idle" when there is none."""
    try:
        with open(path) as f:
            return f.readline().strip() or "idle"
    except FileNotFoundError:
        return "idle"


def main():
    """Parses the arguments and samples until the first process is gone."""
    out, label_file, interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
    procs = [arg.split("=", 1) for arg in sys.argv[4:]]
    if not procs:
        sys.exit(__doc__)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    t0 = started_at(procs[0][1])
    header = ["seconds", "label", "vmrss_kb", "rssanon_kb"]
    header += [f"{name.replace('-', '_')}_vmrss_kb" for name, _ in procs[1:]]
    with open(out, "w", newline="", buffering=1) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        tick = time.monotonic()
        while True:
            main_status = status_kb(procs[0][1])
            if main_status is None:
                return
            others = [status_kb(pid) for _, pid in procs[1:]]
            writer.writerow([f"{uptime() - t0:.2f}", current_label(label_file),
                             main_status["VmRSS"], main_status.get("RssAnon", "")]
                            + [s["VmRSS"] if s else "" for s in others])
            # On a fixed grid: the time a sample takes does not add up.
            tick += interval
            time.sleep(max(0.0, tick - time.monotonic()))


if __name__ == "__main__":
    main()
