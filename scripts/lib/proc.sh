# Sourced by the benchmark scripts: what /proc says of a process.
#
# cpu_ticks PID: user + system CPU time of PID so far, in clock ticks
# (getconf CLK_TCK per second).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# context_switches PID: voluntary + involuntary context switches of PID's
# threads so far (those of threads that exited are not counted).
context_switches() {
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches:/ { n += $2 } END { print n + 0 }'
}

# rss PID FIELD: a /proc/PID/status memory field (VmRSS, RssAnon, ...) in kB.
rss() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
