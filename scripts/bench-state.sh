#!/usr/bin/env bash
# State benchmarks (issue 6): KV get/set per second from a Go guest, with
# cache hits and misses, on the embedded store and on Redis, beside
# redis-benchmark against the same Redis in the same run; SQLite inserts and
# queries per second from a Go guest beside native rusqlite (criterion, in
# the same run). The figures in docs/benchmarks.md ("State") come from it.
#
#   scripts/bench-state.sh
#
# Every request goes through the gateway's HTTP trigger into the
# `stateprobe` Go fixture (crates/cli/tests/fixtures/stateprobe), which
# makes one host call per request; GET /probe/config?key=none (one host
# call, no state) is the baseline of that path.
#
# Environment: BENCH_DURATION [5s]  BENCH_RUNS [3]  BENCH_CONNECTIONS [32]
#              BENCH_INSTANCES [BENCH_CONNECTIONS]  BENCH_RESULTS [target/bench-state]
#
# The probe may run BENCH_INSTANCES instances at once, by default one per
# connection: a KV set holds its instance until the write is on disk, so
# this is what bounds how many writes share one group commit.
#
# The embedded store's reference is the disk itself: each run also times
# 200 fdatasync calls of a 4 KiB write in the store's data folder
# (fsync-probe), since a durable set cannot return before one of them.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib/build.sh
. "$root/scripts/lib/build.sh"
# shellcheck source=lib/work.sh
. "$root/scripts/lib/work.sh"
# shellcheck source=lib/ready.sh
. "$root/scripts/lib/ready.sh"
duration="${BENCH_DURATION:-5s}"
runs="${BENCH_RUNS:-3}"
connections="${BENCH_CONNECTIONS:-32}"
instances="${BENCH_INSTANCES:-$connections}"
results="${BENCH_RESULTS:-$root/target/bench-state}"

for tool in wrk curl go redis-server redis-benchmark python3 cargo; do
  command -v "$tool" >/dev/null || { echo "bench-state.sh: $tool is not installed (apt-get install -y wrk redis-server)" >&2; exit 1; }
done

start_work bench-state
rm -rf "$results"
mkdir -p "$results/wrk" "$work/modules"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

echo "== building" >&2
# The build the test suite runs, with BENCH_CARGO_FEATURES if set
# (scripts/lib/build.sh).
build_for_bench
shanhai="$root/target/release/shanhai"
(cd "$root/crates/cli/tests/fixtures/stateprobe" &&
  GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o "$work/modules/probe.wasm" .)

redis_port="$(free_port)"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 500); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.01; done

# start_gateway NAME KV-SECTION [ADMIN-SECTION]: a gateway on its own data
# folder; sets $url and $gateway_pid, and $admin_url when ADMIN-SECTION
# enables the admin listener.
start_gateway() {
  local name="$1" kv="$2" admin="${3:-enabled = false}"
  mkdir -p "$work/$name"
  cat >"$work/$name/shanhai.toml" <<TOML
[server]
cache_dir = "$work/cache"
watch = false
[admin]
$admin
[state]
data_dir = "$work/$name/data"
$kv
[modules.probe]
max_instances = $instances
[modules.probe.grants]
kv = true
sqlite = true
TOML
  SHANHAI_LOG=warn "$shanhai" serve --config "$work/$name/shanhai.toml" --modules "$work/modules" \
    --listen 127.0.0.1:0 >"$work/$name/out" 2>"$work/$name/err" &
  pids+=($!)
  local pid=$!
  gateway_pid=$pid
  url=
  for _ in $(seq 1 3000); do
    url="$(sed -n 's|^listening on ||p' "$work/$name/out")"
    [[ -n "$url" ]] && break
    sleep 0.01
  done
  [[ -n "$url" ]] || { echo "bench-state.sh: gateway $name did not start:" >&2; cat "$work/$name/err" >&2; exit 1; }
  admin_url="$(sed -n 's|^admin listening on ||p' "$work/$name/out")"
  wait_ready "$url" "$pid" "$work/$name/err"
  # A 64-byte value, as redis-benchmark -d 64 uses.
  curl -sf -X POST --data-binary "$(printf 'v%.0s' $(seq 1 64))" "$url/probe/kv/set?key=hot" >/dev/null
}

# Its admin listener's metrics tell how many writes shared each commit.
start_gateway embedded-cached "" $'listen = "127.0.0.1:0"\ntoken = "bench"\nsocket = "'"$work"$'/admin.sock"'
embedded_cached="$url"
embedded_admin="$admin_url"
embedded_pid="$gateway_pid"
start_gateway embedded-uncached $'[kv]\ncache_bytes = 0'
embedded_uncached="$url"
# The same sets with redb's own page cache size (1 GiB) in place of the
# gateway's default bound ([kv] store_cache_bytes, 16 MiB): what the bound
# costs once the store outgrows it.
start_gateway embedded-large-page-cache $'[kv]\nstore_cache_bytes = 1073741824'
embedded_large_page_cache="$url"
start_gateway redis-cached $'[kv]\nbackend = "redis"\nredis_url = "redis://127.0.0.1:'"$redis_port"$'/0"'
redis_cached="$url"
start_gateway redis-uncached $'[kv]\nbackend = "redis"\ncache_bytes = 0\nredis_url = "redis://127.0.0.1:'"$redis_port"$'/0"'
redis_uncached="$url"

# A fresh key per request: every set is a real write.
cat >"$work/set.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/probe/kv/set?key=k-" .. math.random(1, 1e9) .. "-" .. n, nil, string.rep("v", 64))
end
LUA
cat >"$work/insert.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"sql":"INSERT INTO readings (device, value) VALUES (?1, ?2)","args":["d1",21.5]}'
LUA
cat >"$work/select.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"sql":"SELECT device, value FROM readings WHERE id = ?1","args":[1],"query":true}'
LUA
curl -sf -X POST -d '{"sql":"CREATE TABLE readings (id INTEGER PRIMARY KEY, device TEXT, value REAL)"}' \
  "$embedded_cached/probe/sql" >/dev/null
curl -sf -X POST --data-binary @- "$embedded_cached/probe/sql" >/dev/null <<<'{"sql":"INSERT INTO readings (device, value) VALUES (?1, ?2)","args":["d0",1]}'

measure() {
  local label="$1" url="$2" lua="${3:-}" n log
  n=$(($( (cat "$work/$label.runs" 2>/dev/null || true) | wc -l) + 1))
  log="$results/wrk/$label.$n.txt"
  local script=()
  [[ -n "$lua" ]] && script=(-s "$work/$lua")
  echo "\$ wrk -t2 -c$connections -d$duration --latency ${script[*]} $url" >"$log"
  wrk -t2 -c"$connections" -d"$duration" --latency "${script[@]}" "$url" >>"$log" 2>&1
  awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /^Requests\/sec:/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx or 3xx responses:/ { errors += $NF }
    END { printf "%.0f %.3f %.3f %d\n", rps, p50, p99, errors }
  ' "$log" >>"$work/$label.runs"
  read -r rps p50 p99 errors < <(tail -1 "$work/$label.runs")
  printf '  %-22s run %d: %8s req/s  p50 %7s ms  p99 %7s ms  non-2xx %s\n' "$label" "$n" "$rps" "$p50" "$p99" "$errors" >&2
}

redis_bench() {
  local n
  local label="redis-benchmark-$1"
  n=$(($( (cat "$work/$label.runs" 2>/dev/null || true) | wc -l) + 1))
  redis-benchmark -p "$redis_port" -c "$connections" -n 200000 -d 64 -t "$1" --csv >"$results/$label.$n.csv" 2>/dev/null
  # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  awk -F'"' 'NR == 2 { printf "%.0f %.3f %.3f 0\n", $4, $10, $14 }' "$results/$label.$n.csv" >>"$work/$label.runs"
  read -r rps p50 p99 _ < <(tail -1 "$work/$label.runs")
  printf '  %-22s run %d: %8s req/s  p50 %7s ms  p99 %7s ms\n' "redis-benchmark $1" "$n" "$rps" "$p50" "$p99" >&2
}

# commit_stats: "commits writes seconds disk-bytes" so far, from the
# embedded store's group-commit histograms and the bytes its gateway
# process has put in the page cache for the disk (/proc/PID/io
# write_bytes: each page it dirties, 4 KiB, once until written back).
commit_stats() {
  {
    curl -sf -H 'Authorization: Bearer bench' "$embedded_admin/metrics"
    cat "/proc/$embedded_pid/io"
  } | awk '
    $1 == "shanhai_kv_commit_writes_count" { c = $2 }
    $1 == "shanhai_kv_commit_writes_sum" { w = $2 }
    $1 == "shanhai_kv_commit_seconds_sum" { s = $2 }
    $1 == "write_bytes:" { b = $2 }
    END { printf "%d %d %.6f %d\n", c, w, s, b }'
}

# commit_stats_during BEFORE: writes per commit, mean commit ms and the
# KiB written to disk per write over the last set run, as a runs line
# ("writes/commit commit-ms commits 0 disk-KiB/write").
commit_stats_during() {
  local c0 w0 s0 b0 c1 w1 s1 b1 n
  read -r c0 w0 s0 b0 <<<"$1"
  read -r c1 w1 s1 b1 <<<"$(commit_stats)"
  awk -v c="$((c1 - c0))" -v w="$((w1 - w0))" -v s0="$s0" -v s1="$s1" -v b="$((b1 - b0))" \
    'BEGIN { printf "%.1f %.3f %d 0 %.1f\n", w / c, (s1 - s0) * 1000 / c, c, b / 1024 / w }' >>"$work/commits.runs"
  n="$(wc -l <"$work/commits.runs")"
  tail -1 "$work/commits.runs" >"$results/commits.$n.txt"
  read -r per ms commits _ kib < <(tail -1 "$work/commits.runs")
  printf '  %-22s run %d: %8s writes per commit, %s ms per commit, %s commits, %s KiB to disk per write\n' \
    "group commits" "$n" "$per" "$ms" "$commits" "$kib" >&2
}

# fsync_probe: 200 fdatasyncs of a 4 KiB write beside the embedded store's
# file; one line "fsyncs/s p50-ms p99-ms 0" per run, like measure's.
fsync_probe() {
  local n
  n=$(($( (cat "$work/fsync.runs" 2>/dev/null || true) | wc -l) + 1))
  python3 - "$work/embedded-cached/data/fsync-probe" >"$results/fsync.$n.txt" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
times = []
for i in range(200):
    os.pwrite(fd, b"x" * 4096, (i % 16) * 4096)
    start = time.perf_counter()
    os.fdatasync(fd)
    times.append(time.perf_counter() - start)
os.close(fd)
os.unlink(sys.argv[1])
times.sort()
print(f"{len(times) / sum(times):.0f} {times[len(times) // 2] * 1e3:.3f} {times[len(times) * 99 // 100] * 1e3:.3f} 0")
PY
  cat "$results/fsync.$n.txt" >>"$work/fsync.runs"
  read -r rps p50 p99 _ < <(tail -1 "$work/fsync.runs")
  printf '  %-22s run %d: %8s fsyncs/s p50 %7s ms  p99 %7s ms\n' "fsync 4 KiB" "$n" "$rps" "$p50" "$p99" >&2
}

median() {
  awk -v c="$2" '{ print $c }' "$work/$1.runs" | sort -g |
    awk -v c="$2" '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf(c == 1 ? "%.0f\n" : "%.2f\n", m) }'
}

echo "== load: wrk -t2 -c$connections -d$duration, $runs runs each, $(nproc) cores" >&2
for ((i = 1; i <= runs; i++)); do
  measure baseline "$embedded_cached/probe/config?key=none"
  measure embedded-get-hit "$embedded_cached/probe/kv/get?key=hot"
  measure embedded-get-miss "$embedded_uncached/probe/kv/get?key=hot"
  commits_before="$(commit_stats)"
  measure embedded-set "$embedded_cached" set.lua
  commit_stats_during "$commits_before"
  measure embedded-set-large-page-cache "$embedded_large_page_cache" set.lua
  fsync_probe
  measure redis-get-hit "$redis_cached/probe/kv/get?key=hot"
  measure redis-get-miss "$redis_uncached/probe/kv/get?key=hot"
  measure redis-set "$redis_cached" set.lua
  redis_bench get
  redis_bench set
  measure sqlite-insert "$embedded_cached/probe/sql" insert.lua
  measure sqlite-select "$embedded_cached/probe/sql" select.lua
done

echo "== native rusqlite (criterion, crates/state/benches/state.rs)" >&2
(cd "$root" && cargo bench --quiet -p shanhai-state --bench state -- --noplot sqlite 2>/dev/null) | tee "$results/criterion.txt" |
  grep -E '^(sqlite|state)|time:' >&2 || true

{
  echo "| measurement | req/s (median) | p50 ms | p99 ms | non-2xx |"
  echo "| --- | --- | --- | --- | --- |"
  for label in baseline embedded-get-hit embedded-get-miss embedded-set embedded-set-large-page-cache commits fsync redis-get-hit redis-get-miss redis-set \
    redis-benchmark-get redis-benchmark-set sqlite-insert sqlite-select; do
    echo "| $label | $(median "$label" 1) | $(median "$label" 2) | $(median "$label" 3) | $(awk '{ s += $4 } END { print s + 0 }' "$work/$label.runs") |"
  done
  echo
  echo "commits: writes per group commit | mean commit ms | commits (embedded-set runs, from shanhai_kv_commit_*)"
  echo "  KiB written to disk per write (/proc/PID/io write_bytes): $(median commits 5)"
  echo "fsync: fdatasyncs/s of a 4 KiB write | p50 ms | p99 ms (beside the embedded store's file)"
} | tee "$results/results.md"
