#!/usr/bin/env bash
# Every end-to-end benchmark at HEAD, on this machine, in one sitting; then
# bench/report.py turns the raw results into docs/benchmarks.md's "At HEAD"
# tables and the charts in docs/benchmarks/.
#
#   scripts/bench-all.sh                       # every section, each at its defaults
#   BENCH_SECTIONS="http ws" scripts/bench-all.sh
#
# Runs, one after the other, each writing under $BENCH_ALL_RESULTS/<section>/:
#   http       scripts/bench.sh            (wrk beside bare hyper and native Go)
#   footprint  scripts/bench-footprint.sh  (start-up, memory, layouts, per module)
#   ws         scripts/bench-ws.sh         (idle, echo and fan-out beside tungstenite)
#   mqtt       scripts/bench-mqtt.sh       (beside a broker pass-through; Modbus)
#   state      scripts/bench-state.sh      (KV and SQLite beside redis-benchmark and rusqlite)
#   reload     scripts/bench-reload.sh     (hot swap: mv to first response, requests during swaps, scale-up)
#   pulley     scripts/bench-pulley.sh     (the Pulley interpreter beside Cranelift, same modules)
#   profile    scripts/bench-profile.sh    (perf: where a request's CPU time goes, beside native Go)
# Any BENCH_*, FOOTPRINT_* or RELOAD_* variable set here reaches every section (so
# BENCH_RUNS=5 means five runs of each), except BENCH_RESULTS, which is set
# per section. run.json records the commit, the machine, the times, and each
# section's command line (with the settings its script reads), duration and
# the share of the cores the virtual machine's host took meanwhile (steal);
# logs/<section>.log holds what it printed.
#
# Environment (defaults in brackets):
#   BENCH_SECTIONS ["http footprint ws mqtt state reload pulley profile"]   which sections run, in this order
#   BENCH_ALL_RESULTS [target/bench-all]              where everything is written
#   BENCH_ALL_KEEP [0]    1: keep the other sections' results of the last run in
#                         BENCH_ALL_RESULTS and rerun only BENCH_SECTIONS (a section
#                         that failed, or one whose script changed); run.json then
#                         names each section's commit
#   BENCH_ALL_DOCS [1]    1: the report writes docs/benchmarks.md (between its
#                         bench-all markers) and docs/benchmarks/*.svg; 0: only
#                         report.md and charts/ under BENCH_ALL_RESULTS
#
# Nothing else should run on the machine meanwhile: every figure shares its
# cores.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib/venv.sh
. "$root/scripts/lib/venv.sh"
all_sections=(http footprint ws mqtt state reload pulley profile)
read -r -a requested <<<"${BENCH_SECTIONS:-${all_sections[*]}}"
out="${BENCH_ALL_RESULTS:-$root/target/bench-all}"
docs="${BENCH_ALL_DOCS:-1}"
keep="${BENCH_ALL_KEEP:-0}"

declare -A scripts=(
  [http]=scripts/bench.sh
  [footprint]=scripts/bench-footprint.sh
  [ws]=scripts/bench-ws.sh
  [mqtt]=scripts/bench-mqtt.sh
  [state]=scripts/bench-state.sh
  [reload]=scripts/bench-reload.sh
  [pulley]=scripts/bench-pulley.sh
  [profile]=scripts/bench-profile.sh
)
for section in "${requested[@]}"; do
  [[ -n "${scripts[$section]:-}" ]] || {
    echo "bench-all.sh: unknown section '$section' in BENCH_SECTIONS (known: ${all_sections[*]})" >&2
    exit 1
  }
done
# In the fixed order, whatever order they were named in.
sections=()
for section in "${all_sections[@]}"; do
  [[ " ${requested[*]} " == *" $section "* ]] && sections+=("$section")
done
((${#sections[@]} > 0)) || { echo "bench-all.sh: BENCH_SECTIONS names no section" >&2; exit 1; }
[[ "$docs" == 0 || "$docs" == 1 ]] || { echo "bench-all.sh: BENCH_ALL_DOCS must be 0 or 1" >&2; exit 1; }

# The report's one dependency, installed first so that a long run does not
# end in a failed install (scripts/lib/venv.sh).
bench_python

mkdir -p "$out/logs"
out="$(cd "$out" && pwd)"
commit="$(git -C "$root" rev-parse --short HEAD)"
# Untracked files count too: a new script changes what runs.
[[ -z "$(git -C "$root" status --porcelain)" ]] || commit+="+changes"

# The command that reproduces this run: the settings given, then the script.
settings=()
setting_names=()
while read -r name; do
  [[ "$name" =~ ^(BENCH|FOOTPRINT|RELOAD)_ && "$name" != BENCH_RESULTS && "$name" != RELOAD_RESULTS && "$name" != BENCH_ALL_RESULTS ]] || continue
  settings+=("$(printf '%q' "$name=${!name}")")
  setting_names+=("$name")
done < <(compgen -e | LC_ALL=C sort)
command_line="${settings[*]:+${settings[*]} }scripts/bench-all.sh"

# section_command SCRIPT RESULTS: the section's command line, with the
# settings its script reads (those it names).
section_command() {
  local line="" name
  for name in "${setting_names[@]}"; do
    grep -q "\b$name\b" "$root/$1" && line+="$(printf '%q' "$name=${!name}") "
  done
  echo "${line}BENCH_RESULTS=${2#"$root"/} $1"
}

first_line() {
  command -v "$1" >/dev/null || { echo "not installed"; return; }
  "$@" 2>&1 | head -n 1 || true
}
mosquitto_bin="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
versions_file="$out/logs/versions.txt"
{
  echo "rustc=$(first_line rustc --version)"
  echo "go=$(first_line go version)"
  echo "wrk=$(first_line wrk -v | sed 's/ Copyright.*//')"
  echo "mosquitto=$(first_line "$mosquitto_bin" -h)"
  echo "redis-server=$(first_line redis-server --version | sed 's/ sha=.*//')"
  echo "python3=$(first_line python3 --version)"
} >"$versions_file"

started_utc="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
# One line per section: name, script, command line, status, seconds, start,
# end, commit, the host's steal in percent.
sections_file="$out/logs/sections.tsv"
if [[ "$keep" == 1 && -f "$out/run.json" && -f "$sections_file" ]]; then
  # The last run's other sections stay: their lines, its start, its
  # selection, and its command followed by this one.
  read -r -a kept_sections < <(python3 - "$out/run.json" "$sections_file" "${sections[@]}" <<'EOF'
import json, sys
run_json, tsv, *rerun = sys.argv[1:]
run = json.load(open(run_json))
lines = []
for line in open(tsv):
    fields = line.rstrip("\n").split("\t")
    if fields[0] in rerun:
        continue
    if len(fields) == 7:
        fields.append(run["commit"])
    if len(fields) == 8:
        fields.append("")
    lines.append("\t".join(fields) + "\n")
open(tsv, "w").writelines(lines)
print(" ".join(name for name in run["selected"] if name not in rerun))
EOF
  )
  started_utc="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["started"])' "$out/run.json")"
  run_commit="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["commit"])' "$out/run.json")"
  command_line="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["command"])' "$out/run.json"); then $command_line"
  selected=()
  for section in "${all_sections[@]}"; do
    [[ " ${kept_sections[*]} ${sections[*]} " == *" $section "* ]] && selected+=("$section")
  done
else
  : >"$sections_file"
  selected=("${sections[@]}")
  run_commit="$commit"
fi

# write_run_json [END]: run.json from what is known so far.
write_run_json() {
  python3 - "$out/run.json" "$run_commit" "$started_utc" "${1:-}" "$command_line" "$docs" \
    "$versions_file" "$sections_file" "${selected[@]}" <<'EOF'
import json, os, platform, sys
out, commit, started, ended, command, docs, versions, done_file, *selected = sys.argv[1:]

def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()

def mem_total_kb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1])

with open(versions) as f:
    tools = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
runs = {}
with open(done_file) as f:
    for line in f:
        name, script, cmd, status, seconds, start, end, section_commit, steal = line.rstrip("\n").split("\t")
        runs[name] = {"script": script, "command": cmd, "status": status,
                      "seconds": int(seconds) if seconds else None, "started": start, "ended": end or None,
                      "commit": section_commit, "steal_percent": float(steal) if steal else None}
try:
    distro = platform.freedesktop_os_release().get("PRETTY_NAME")
except OSError:
    distro = None
run = {
    "commit": commit,
    "command": command,
    "started": started,
    "ended": ended or None,
    "docs": docs == "1",
    "selected": selected,
    "sections": runs,
    "machine": {
        "cpu": cpu_model(),
        "nproc": os.cpu_count(),
        "mem_total_kb": mem_total_kb(),
        "kernel": " ".join(platform.uname()[i] for i in (0, 2, 4)),
        "os": distro,
        "tools": tools,
    },
}
with open(out + ".new", "w") as f:
    json.dump(run, f, indent=1)
    f.write("\n")
os.replace(out + ".new", out)
EOF
}

elapsed() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# host_ticks: "stolen total" from /proc/stat's cpu line, every core summed:
# the ticks the hypervisor gave this machine's vCPUs to someone else
# (steal), and all ticks (user nice system idle iowait irq softirq steal).
host_ticks() { awk '$1 == "cpu" { print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat; }

# steal_percent BEFORE: the share of the cores' time the host took since
# BEFORE (a host_ticks line), in percent with one decimal. On a virtual
# machine whose host is busy, a section's figures lose that share
# unevenly, the gateway and its reference alike but not in step.
steal_percent() {
  local stolen0 total0 stolen1 total1
  read -r stolen0 total0 <<<"$1"
  read -r stolen1 total1 <<<"$(host_ticks)"
  awk -v s=$((stolen1 - stolen0)) -v t=$((total1 - total0)) 'BEGIN { printf "%.1f", (t > 0 ? 100 * s / t : 0) }'
}

# section_line NAME SCRIPT COMMAND STATUS SECONDS START END [STEAL]: one
# line of sections.tsv, with this run's commit before the steal.
section_line() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "${@:1:7}" "$commit" "${8:-}"; }

# A section stopped by Ctrl-C or a failure of this script is marked so.
running=()
on_exit() {
  if ((${#running[@]})); then
    sed -i '$d' "$sections_file"
    section_line "${running[@]}" interrupted "" "$start_utc" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$sections_file"
    write_run_json
  fi
}
trap on_exit EXIT

write_run_json
echo "== bench-all at $commit: ${sections[*]} -> $out" >&2
total_start=$SECONDS
i=0
for section in "${sections[@]}"; do
  i=$((i + 1))
  script="${scripts[$section]}"
  results="$out/$section"
  rm -rf "$results"
  mkdir -p "$results"
  cmd="$(section_command "$script" "$results")"
  start_utc="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  section_line "$section" "$script" "$cmd" running "" "$start_utc" "" >>"$sections_file"
  running=("$section" "$script" "$cmd")
  write_run_json
  echo "== [$i/${#sections[@]}] $section: $cmd (started $start_utc, $(elapsed $((SECONDS - total_start))) into the run)" >&2
  section_start=$SECONDS
  ticks_before="$(host_ticks)"
  status=0
  BENCH_RESULTS="$results" bash "$root/$script" 2>&1 | tee "$out/logs/$section.log" >&2 || status=$?
  took=$((SECONDS - section_start))
  steal="$(steal_percent "$ticks_before")"
  running=()
  sed -i '$d' "$sections_file"
  section_line "$section" "$script" "$cmd" "$( ((status == 0)) && echo ok || echo "failed ($status)")" \
    "$took" "$start_utc" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$steal" >>"$sections_file"
  write_run_json
  if ((status != 0)); then
    echo "bench-all.sh: $section failed (exit $status) after $(elapsed "$took"); its output is in $out/logs/$section.log" >&2
    exit "$status"
  fi
  echo "== [$i/${#sections[@]}] $section done in $(elapsed "$took"), $(elapsed $((SECONDS - total_start))) in all; the host took $steal% of the cores (steal)" >&2
  if awk -v p="$steal" 'BEGIN { exit !(p >= 5) }'; then
    echo "bench-all.sh: warning: the host took $steal% of this machine's cores during $section (steal time in /proc/stat): its figures come from a contended sitting; rerun it when the host is quiet (BENCH_ALL_KEEP=1 BENCH_SECTIONS=$section)" >&2
  fi
done
write_run_json "$(date -u +%Y-%m-%dT%H:%M:%SZ)"

echo "== report" >&2
report_args=(--results "$out")
if [[ "$docs" == 0 ]]; then
  report_args+=(--charts "$out/charts" --no-doc)
fi
"$bench_python" "$root/bench/report.py" "${report_args[@]}"
cat "$out/report.md"
echo "== bench-all done in $(elapsed $((SECONDS - total_start))): $out/run.json, $out/report.md" >&2
