# Sourced by the benchmark scripts: what /proc says of a process.
#
# cpu_ticks PID: user + system CPU time of PID so far, in clock ticks
# (getconf CLK_TCK per second).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# thread_switches PID: one line per thread of PID, `TID NAME VOLUNTARY
# INVOLUNTARY` (its context switches so far; spaces in the name become `_`):
# two of these around a run say which threads switched, and whether they
# waited (voluntary) or were preempted (involuntary).
thread_switches() {
  local task
  for task in /proc/"$1"/task/*; do
    awk -v tid="${task##*/}" -v name="$(tr ' ' _ <"$task/comm" 2>/dev/null)" \
      '/^voluntary_ctxt_switches:/ { v = $2 } /^nonvoluntary_ctxt_switches:/ { n = $2 }
       END { if (name != "") print tid, name, v + 0, n + 0 }' "$task/status" 2>/dev/null || true
  done
}

# switches_since SNAPSHOT PID: the context switches PID's threads made since
# SNAPSHOT (a file of thread_switches' lines), summed over the threads alive
# now; one that started since counts from zero. A thread that ended since is
# left out with what it did before and after SNAPSHOT, where the difference
# of two process totals would also take its earlier switches away.
switches_since() {
  thread_switches "$2" | awk -v snapshot="$1" '
    FILENAME == snapshot { voluntary[$1] = $3; involuntary[$1] = $4; next }
    { total += $3 - voluntary[$1] + $4 - involuntary[$1] }
    END { print total + 0 }' "$1" -
}

# rss PID FIELD: a /proc/PID/status memory field (VmRSS, RssAnon, ...) in kB.
rss() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
