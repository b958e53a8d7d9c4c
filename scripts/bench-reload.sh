#!/usr/bin/env bash
# Hot-swap benchmarks (issue 3): how fast a changed module file is served,
# what a swap costs the requests in flight, and how the instance pool grows
# under a load step. The "Hot swap" figures in docs/benchmarks.md
# come from this script.
#
#   scripts/bench-reload.sh
#
# Measures:
#   1. atomic `mv` of a changed NAME.wasm into the modules folder -> first
#      response from the new version (polled every 2 ms; median of
#      RELOAD_SWAPS swaps), for the Go `version` fixture and the Rust
#      hello-rs example, each with a warm compile cache (the new bytes were
#      compiled before with `shanhai compile`) and cold (never compiled).
#      Includes the watcher's 300 ms debounce.
#   2. wrk on GET /version at rest, then while a loop swaps A/B every 500 ms.
#   3. pool scale-up (min 1, max 8) under a wrk load step, admin API polled
#      every 50 ms.
#
# Environment (defaults in brackets):
#   RELOAD_SWAPS [5]        swaps per case in 1
#   RELOAD_DURATION [10s]   wrk duration in 2
#   RELOAD_STEP [5s]        wrk duration of the load step in 3
#   RELOAD_RESULTS [BENCH_RESULTS, else target/bench-reload]  where logs and results.md go
# Builds the gateway the other bench scripts measure (scripts/lib/build.sh)
# and the Rust guest if missing; needs go, wrk and python3.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib/build.sh
. "$root/scripts/lib/build.sh"
# shellcheck source=lib/work.sh
. "$root/scripts/lib/work.sh"
swaps="${RELOAD_SWAPS:-5}"
duration="${RELOAD_DURATION:-10s}"
step="${RELOAD_STEP:-5s}"
results="${RELOAD_RESULTS:-${BENCH_RESULTS:-$root/target/bench-reload}}"
shanhai="$root/target/release/shanhai"

for tool in wrk go python3 cargo; do
  command -v "$tool" >/dev/null || { echo "bench-reload.sh: $tool is not installed" >&2; exit 1; }
done
build_for_bench
rust_wasm="$root/target/wasm32-wasip1/guest/hello_rs.wasm"
[ -f "$rust_wasm" ] || (cd "$root" && cargo build --profile guest --target wasm32-wasip1 -p hello-rs)

start_work reload
mkdir -p "$results"

run_id="$(date +%s)-$$"
fixture="$root/crates/cli/tests/fixtures/version"
build_go() { # build_go VERSION OUT
  (cd "$fixture" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared \
    -ldflags="-X=main.version=$1" -o "$2" .)
}

# ---- helper: python (swap timing, scale-up polling, custom sections) ----
cat >"$work/helper.py" <<'PY'
import http.client, json, os, shutil, statistics, subprocess, sys, threading, time, urllib.parse

def leb(n):
    out = bytearray()
    while True:
        b = n & 0x7f; n >>= 7
        if n: out.append(b | 0x80)
        else: out.append(b); return bytes(out)

def add_section(src, dst, payload):
    """Copy src to dst with a trailing custom section: new hash, same code."""
    name = b"shanhai-bench"
    body = leb(len(name)) + name + payload.encode()
    with open(src, "rb") as f: data = f.read()
    with open(dst, "wb") as f: f.write(data + b"\x00" + leb(len(body)) + body)

class Client:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url); self.host, self.port = u.hostname, u.port; self.c = None
    def get(self, path):
        for _ in range(2):
            try:
                if self.c is None: self.c = http.client.HTTPConnection(self.host, self.port, timeout=5)
                self.c.request("GET", path); r = self.c.getresponse(); body = r.read()
                return r, body
            except (OSError, http.client.HTTPException):
                if self.c: self.c.close()
                self.c = None
        return None, None

def probe_header(cli, expect):
    r, _ = cli.get("/version")
    return r is not None and r.status == 200 and r.getheader("X-Version") == expect

def admin_version(cli, name):
    r, body = cli.get("/admin/modules/" + name)
    if r is None or r.status != 200: return None
    return json.loads(body)["version"]

def swaps(args):
    # swaps KIND URL DEST LABEL FILE:EXPECT ...  (KIND: go | rust)
    kind, url, dest, label, files = args[0], args[1], args[2], args[3], args[4:]
    cli = Client(url); stage = os.path.join(os.path.dirname(os.path.dirname(dest)), "stage")
    os.makedirs(stage, exist_ok=True); times = []
    for spec in files:
        src, expect = spec.split(":", 1)
        staged = os.path.join(stage, os.path.basename(dest))
        shutil.copyfile(src, staged); time.sleep(0.2)
        old = admin_version(cli, "hello-rs") if kind == "rust" else None
        t0 = time.perf_counter(); os.rename(staged, dest)
        while True:
            if kind == "go": ok = probe_header(cli, expect)
            else:
                v = admin_version(cli, "hello-rs"); ok = v is not None and v != old
            if ok: break
            if time.perf_counter() - t0 > 90: sys.exit(f"{label}: no swap to {expect} in 90 s")
            time.sleep(0.002)
        times.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.6)
    print(f"{label}\t{statistics.median(times):.0f}\t{min(times):.0f}\t{max(times):.0f}\t"
          + " ".join(f"{t:.0f}" for t in times))

def scaleup(args):
    # scaleup ADMIN_URL URL CONNS DURATION WRKLOG
    admin, url, conns, dur, log = args
    cli = Client(admin); samples = []; stop = threading.Event()
    def poll():
        while not stop.is_set():
            r, body = cli.get("/admin/modules/version")
            if r is not None and r.status == 200:
                p = json.loads(body)["pool"]
                samples.append((time.perf_counter(), p["live"], p["created"], p["scale_ups"]))
            time.sleep(0.05)
    th = threading.Thread(target=poll); th.start()
    # The pool's size before the load: wait for the first sample (a fixed
    # pause here once left none, and live_before read None).
    waited = time.perf_counter()
    while not samples and time.perf_counter() - waited < 30: time.sleep(0.05)
    if not samples: stop.set(); th.join(); sys.exit("scaleup: the admin API never answered /admin/modules/version")
    t0 = time.perf_counter()
    with open(log, "w") as f:
        subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{dur}", "--latency", url + "/version"], stdout=f, check=True)
    t_end = time.perf_counter(); time.sleep(0.5); stop.set(); th.join()
    before = [s for s in samples if s[0] < t0]
    during = [s for s in samples if t0 <= s[0] <= t_end]
    live0 = before[-1][1] if before else None
    peak = max(s[1] for s in during)
    t_peak = next(s[0] for s in during if s[1] == peak)
    last = during[-1]
    print(f"live_before\t{live0}\nlive_peak\t{peak}\nt_peak_ms\t{(t_peak - t0) * 1000:.0f}\n"
          f"live_end\t{last[1]}\ncreated_end\t{last[2]}\nscale_ups_end\t{last[3]}\nsamples\t{len(during)}")
    with open(log + ".pool.tsv", "w") as f:
        f.write("t_ms\tlive\tcreated\tscale_ups\n")
        for s in samples: f.write(f"{(s[0] - t0) * 1000:.0f}\t{s[1]}\t{s[2]}\t{s[3]}\n")

if __name__ == "__main__":
    {"swaps": swaps, "scaleup": scaleup, "section": lambda a: add_section(*a)}[sys.argv[1]](sys.argv[2:])
PY
py() { python3 "$work/helper.py" "$@"; }

# start_gateway DIR CONFIG: starts a gateway on DIR/modules with cache DIR/cache,
# waits for it, sets $admin and $url.
start_gateway() {
  local dir="$1" cfg="$2" i
  "$shanhai" serve --modules "$dir/modules" --listen 127.0.0.1:0 --cache-dir "$dir/cache" \
    --config "$cfg" >"$dir/stdout" 2>"$dir/stderr" &
  gw_pid=$!; pids+=("$gw_pid")
  for i in $(seq 600); do grep -q '^listening on' "$dir/stdout" && break; sleep 0.1; done
  admin="$(sed -n 's/^admin listening on \(http:[^ ]*\).*/\1/p' "$dir/stdout")"
  url="$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$dir/stdout")"
  [ -n "$url" ] && [ -n "$admin" ] || { echo "gateway did not start, see $dir/stderr" >&2; cat "$dir/stderr" >&2; exit 1; }
}
stop_gateway() { kill "$gw_pid" 2>/dev/null || true; wait "$gw_pid" 2>/dev/null || true; }

printf '[admin]\nlisten = "127.0.0.1:0"\nsocket = ""\ntoken_file = ""\n' >"$work/plain.toml"
printf '[admin]\nlisten = "127.0.0.1:0"\nsocket = ""\ntoken_file = ""\n\n[modules.version]\nmin_instances = 1\nmax_instances = 8\nidle_timeout_ms = 60000\n' >"$work/pool.toml"

# ---- build the module versions ----
echo "building module versions" >&2
bin="$work/bin"; mkdir -p "$bin"
build_go A "$bin/A.wasm"; build_go B "$bin/B.wasm"
cold_go=(); cold_rs=(); warm_go=(); warm_rs=()
for i in $(seq "$swaps"); do
  build_go "C$i-$run_id" "$bin/C$i.wasm"; cold_go+=("$bin/C$i.wasm:C$i-$run_id")
  py section "$rust_wasm" "$bin/rc$i.wasm" "cold-$i-$run_id"; cold_rs+=("$bin/rc$i.wasm:x")
  if (( i % 2 )); then warm_go+=("$bin/B.wasm:B"); warm_rs+=("$bin/R2.wasm:x")
  else warm_go+=("$bin/A.wasm:A"); warm_rs+=("$bin/R1.wasm:x"); fi
done
py section "$rust_wasm" "$bin/R1.wasm" "warm-1-$run_id"
py section "$rust_wasm" "$bin/R2.wasm" "warm-2-$run_id"

# ---- 1. mv -> first response from the new version ----
g="$work/g1"; mkdir -p "$g/modules" "$g/cache"
cp "$bin/A.wasm" "$g/modules/version.wasm"; cp "$bin/R1.wasm" "$g/modules/hello-rs.wasm"
echo "precompiling the warm versions" >&2
"$shanhai" compile --cache-dir "$g/cache" "$bin/A.wasm" "$bin/B.wasm" "$bin/R1.wasm" "$bin/R2.wasm" >/dev/null 2>&1
start_gateway "$g" "$work/plain.toml"
echo "1. swap latency" >&2
swap_tsv="$results/swaps.tsv"
{
  py swaps go "$url" "$g/modules/version.wasm" "Go version fixture, warm cache" "${warm_go[@]}"
  py swaps go "$url" "$g/modules/version.wasm" "Go version fixture, cold" "${cold_go[@]}"
  cp "$bin/A.wasm" "$work/A.stage"; mv "$work/A.stage" "$g/modules/version.wasm"
  py swaps rust "$admin" "$g/modules/hello-rs.wasm" "Rust hello-rs, warm cache" "${warm_rs[@]}"
  py swaps rust "$admin" "$g/modules/hello-rs.wasm" "Rust hello-rs, cold" "${cold_rs[@]}"
} | tee "$swap_tsv"
loads_cached="$(grep -c 'from_cache.*=.*true' "$g/stderr" || true)"
loads_compiled="$(grep -c 'from_cache.*=.*false' "$g/stderr" || true)"
cp "$g/stderr" "$results/gateway-swaps.log"

# ---- 2. latency at rest and during swaps (same gateway, A and B warm) ----
echo "2. wrk at rest / during swaps" >&2
sleep 1
wrk -t2 -c16 -d"$duration" --latency "$url/version" >"$results/wrk-rest.txt"
before_loads="$(grep -c 'module loaded' "$g/stderr" || true)"
(
  set +e
  n=0
  while :; do
    if (( n % 2 )); then cp "$bin/A.wasm" "$work/swap.wasm"; else cp "$bin/B.wasm" "$work/swap.wasm"; fi
    mv "$work/swap.wasm" "$g/modules/version.wasm"; n=$((n + 1)); echo "$n" >"$work/swaps.count"; sleep 0.5
  done
) 2>"$results/swapper.log" &
swapper=$!; pids+=("$swapper")
wrk -t2 -c16 -d"$duration" --latency "$url/version" >"$results/wrk-swapping.txt"
kill "$swapper" 2>/dev/null || echo "swapper had exited early, see $results/swapper.log" >&2
wait "$swapper" 2>/dev/null || true
sleep 1
after_loads="$(grep -c 'module loaded' "$g/stderr" || true)"
swaps_during="$(cat "$work/swaps.count" 2>/dev/null || echo 0) files moved, $((after_loads - before_loads)) reloads logged"
cp "$g/stderr" "$results/gateway-swaps.log"
stop_gateway

# ---- 3. pool scale-up under a load step ----
echo "3. pool scale-up" >&2
p="$work/g3"; mkdir -p "$p/modules"; cp -r "$g/cache" "$p/cache"
cp "$bin/A.wasm" "$p/modules/version.wasm"
start_gateway "$p" "$work/pool.toml"
sleep 1
py scaleup "$admin" "$url" 32 "$step" "$results/wrk-step.txt" | tee "$results/scaleup.tsv"
cp "$results/wrk-step.txt.pool.tsv" "$results/pool.tsv" 2>/dev/null || true
stop_gateway

# ---- results ----
wrk_line() { # wrk_line FILE LABEL
  awk -v label="$2" '
    /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /^Requests\/sec/ {rps=$2}
    /Non-2xx/ {non2xx=$NF} /Socket errors/ {sock=$0}
    END {if (non2xx=="") non2xx=0; if (sock=="") sock="none";
         printf "| %s | %s | %s | %s | %s | %s |\n", label, p50, p99, rps, non2xx, sock}' "$1"
}
{
  echo "### mv -> first response from the new version (ms, debounce 300 ms included)"
  echo
  echo "| case | median | min | max | all |"
  echo "| --- | ---: | ---: | ---: | --- |"
  awk -F'\t' '{printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5}' "$swap_tsv"
  echo
  echo "Gateway log over these swaps: $loads_cached loads from the compile cache, $loads_compiled compiled (initial start included)."
  echo
  echo "### GET /version, wrk -t2 -c16 -d$duration"
  echo
  echo "| | p50 | p99 | req/s | non-2xx | socket errors |"
  echo "| --- | ---: | ---: | ---: | ---: | --- |"
  wrk_line "$results/wrk-rest.txt" "at rest"
  wrk_line "$results/wrk-swapping.txt" "swapping A/B every 500 ms ($swaps_during)"
  echo
  echo "### Pool scale-up (min 1, max 8), wrk -t2 -c32 -d$step"
  echo
  awk -F'\t' '{printf "- %s: %s\n", $1, $2}' "$results/scaleup.tsv"
  awk '/^ +50%/ {print "- wrk p50: " $2} /^ +99%/ {print "- wrk p99: " $2} /^Requests\/sec/ {print "- wrk req/s: " $2} /Non-2xx/ {print "- non-2xx: " $NF}' "$results/wrk-step.txt"
} | tee "$results/results.md"
