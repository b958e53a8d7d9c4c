# Sourced by the benchmark scripts: what /proc says of a process.
#
# cpu_ticks PID: user + system CPU time of PID so far, in clock ticks
# (getconf CLK_TCK per second).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# context_switches PID: voluntary + involuntary context switches of PID's
# threads so far. A thread that exits between two readings takes its
# switches out of the second, so a difference of two undercounts;
# thread_switches keeps threads apart.
context_switches() {
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches:/ { n += $2 } END { print n + 0 }'
}

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

# rss PID FIELD: a /proc/PID/status memory field (VmRSS, RssAnon, ...) in kB.
rss() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
