#!/usr/bin/env bash
# Runs the Eclipse Paho MQTT interoperability tests (client_test.py for
# MQTT 3.1.1, client_test5.py for MQTT 5) against the gateway's embedded
# broker and against mosquitto, in one run, and prints both scores.
#
#   scripts/paho-interop.sh PAHO_CHECKOUT
#   PAHO_BROKERS=embedded scripts/paho-interop.sh PAHO_CHECKOUT   (one of them)
#
# PAHO_CHECKOUT is a checkout of github.com/eclipse-paho/paho.mqtt.testing
# (CI cannot reach it, and none of its code is copied here). The test
# scripts run unmodified, each test on its own with a deadline: a few lines
# of Python around them only pass the broker's port and the test's name,
# which client_test.py would otherwise hand on to unittest's own argument
# parser. Results, with the checkout's commit, go to
# target/paho-interop/results.md; docs/mqtt.md quotes them. Run it after
# every change to the broker (vendor/rumqttd, crates/gateway/src/mqtt).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
paho="${1:?usage: scripts/paho-interop.sh PAHO_CHECKOUT}"
interop="$(cd "$paho" && pwd)/interoperability"
[ -f "$interop/client_test.py" ] || { echo "no interoperability/client_test.py under $paho" >&2; exit 2; }
commit="$(git -C "$paho" rev-parse --short HEAD 2>/dev/null || echo unknown)"
mosquitto_bin="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
[ -x "$mosquitto_bin" ] || { echo "mosquitto is not installed (apt-get install mosquitto)" >&2; exit 2; }

# shellcheck source=lib/build.sh
. "$root/scripts/lib/build.sh"
echo "building the release gateway as the test suite does (after the suite: nothing to compile)" >&2
build_like_the_suite
out="$root/target/paho-interop"
rm -rf "$out"
mkdir -p "$out"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 1000); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return
    sleep 0.02
  done
  echo "nothing listens on $1" >&2
  exit 1
}

# The harness: the upstream script as __main__, with unittest given only
# the test to run (the script's own options would reach unittest's parser).
cat >"$work/run.py" <<'PY'
import runpy, sys, unittest
script, port, test = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, ".")
sys.argv = [script, "--hostname=127.0.0.1", "-p", port]
upstream_main = unittest.main
unittest.main = lambda *args, **kwargs: upstream_main(argv=[script, test], exit=False, verbosity=2)
runpy.run_path(script, run_name="__main__")
PY

mq_port="$(free_port)"
cat >"$work/mosquitto.conf" <<CONF
listener $mq_port 127.0.0.1
allow_anonymous true
persistence false
user root
CONF
"$mosquitto_bin" -c "$work/mosquitto.conf" >"$out/mosquitto.log" 2>&1 &
pids+=($!)
# `mosquitto -h` prints its version and exits non-zero.
mosquitto_version="$({ "$mosquitto_bin" -h 2>&1 || true; } | sed -n 's/^mosquitto version \([^ ]*\).*/\1/p' | head -1)"

v4_port="$(free_port)"
v5_port="$(free_port)"
mkdir -p "$work/gateway/modules"
cat >"$work/gateway/shanhai.toml" <<CONF
[server]
listen = "127.0.0.1:0"
watch = false
[admin]
enabled = false
[mqtt]
listen = "127.0.0.1:$v4_port"
listen_v5 = "127.0.0.1:$v5_port"
CONF
(cd "$work/gateway" && exec "$root/target/release/shanhai" serve --config shanhai.toml --modules modules) \
  >"$out/gateway.log" 2>&1 &
pids+=($!)
wait_port "$mq_port"
wait_port "$v4_port"
wait_port "$v5_port"

# suite NAME SCRIPT PORT: runs each test of one script on its own, with a
# deadline (some hang against some brokers, and one hang must not cost the
# rest); prints "passed total" and logs the failures' names.
suite() {
  local name="$1" script="$2" port="$3" test passed=0 total=0
  : >"$out/$name.failed"
  for test in $(sed -n 's/^    def \(test[A-Za-z0-9_]*\)(self).*/\1/p' "$interop/$script"); do
    total=$((total + 1))
    if (cd "$interop" && timeout 120 python3 "$work/run.py" "$script" "$port" "Test.$test") \
      >"$out/$name-$test.log" 2>&1 && grep -q '^OK' "$out/$name-$test.log"; then
      passed=$((passed + 1))
    else
      grep -q '^OK\|^FAILED' "$out/$name-$test.log" || echo "(did not finish in 120 s)" >>"$out/$name-$test.log"
      echo "$test" >>"$out/$name.failed"
    fi
  done
  echo "$passed $total"
}

brokers=(${PAHO_BROKERS:-mosquitto embedded})
declare -A score
for broker in "${brokers[@]}"; do
  for version in 311 5; do
    case "$broker/$version" in
      mosquitto/*) port="$mq_port" ;;
      embedded/311) port="$v4_port" ;;
      embedded/5) port="$v5_port" ;;
    esac
    script=client_test.py
    [ "$version" = 5 ] && script=client_test5.py
    echo "== $broker, MQTT $version: $script" >&2
    score[$broker/$version]="$(suite "$broker-$version" "$script" "$port")"
    echo "   ${score[$broker/$version]} (passed, total)" >&2
  done
done

sum() { # BROKER: passed/total over both versions
  local a b c d
  read -r a b <<<"${score[$1/311]}"
  read -r c d <<<"${score[$1/5]}"
  echo "$((a + c)) of $((b + d))"
}
failed() { # BROKER: the names of the tests that failed, errored or hung
  cat "$out/$1-311.failed" "$out/$1-5.failed" | paste -sd, - | sed 's/,/, /g'
}
{
  echo "Paho interoperability tests at paho.mqtt.testing $commit, $(date -u +%Y-%m-%d), shanhai $(git -C "$root" rev-parse --short HEAD):"
  echo
  echo "| broker | MQTT 3.1.1 (client_test.py) | MQTT 5 (client_test5.py) | together | failed |"
  echo "| --- | ---: | ---: | ---: | --- |"
  for broker in "${brokers[@]}"; do
    name="$broker"
    [ "$broker" = mosquitto ] && name="mosquitto $mosquitto_version"
    [ "$broker" = embedded ] && name="embedded (rumqttd 0.20 + patches)"
    echo "| $name | ${score[$broker/311]/ / of } | ${score[$broker/5]/ / of } | $(sum "$broker") | $(failed "$broker") |"
  done
} | tee "$out/results.md"
echo "logs in $out" >&2
