# Sourced by scripts/bench.sh and scripts/bench-profile.sh: the HTTP
# servers they load, and the request bodies they send. Needs $root, and
# $work, $pids and $server_pin (a command prefix, empty or taskset) when
# its functions run.

# shellcheck source=ready.sh
. "$root/scripts/lib/ready.sh"
# shellcheck source=work.sh
. "$root/scripts/lib/work.sh"

# write_http_loads: the wrk scripts of the POST endpoints (add.lua,
# readings.lua, cgi.lua) and the gateway's config in $work. The config is
# the embedded defaults but for the admin API: its default port (9090)
# and Unix socket (./.shanhai/admin.sock) would clash with any other
# gateway on the machine.
write_http_loads() {
  cat >"$work/add.lua" <<'LUA'
wrk.method = "POST"
wrk.body = "[2.5,3.7]"
wrk.headers["Content-Type"] = "application/json"
LUA
  cat >"$work/readings.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"device":"pump-7","readings":[20.5,19.5,21,23,22.5,20,19,21.5]}'
wrk.headers["Content-Type"] = "application/json"
LUA
  cat >"$work/cgi.lua" <<'LUA'
wrk.method = "POST"
wrk.body = "hello from wrk"
wrk.headers["Content-Type"] = "text/plain"
LUA
  cat >"$work/gateway.toml" <<TOML
[admin]
listen = "127.0.0.1:0"
socket = ""
token_file = "$work/admin.token"
TOML
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_http_servers CACHE: the gateway (every module in $work/modules,
# compiled code in CACHE; once ready), bench-reference and the native
# json2k server ($work/json2k-native). Sets $gateway, $reference_url and
# $native (base URLs) and their pids: $gateway_pid, $reference_pid,
# $native_pid.
start_http_servers() {
  SHANHAI_LOG=warn start_listening gateway "$root/target/release/shanhai" serve \
    --config "$work/gateway.toml" --modules "$work/modules" --listen 127.0.0.1:0 --cache-dir "$1"
  gateway="http://$addr"
  gateway_pid=$server_pid
  wait_ready "$gateway" "$gateway_pid" "$work/gateway.err"
  start_listening reference "$root/target/release/bench-reference" --listen 127.0.0.1:0
  reference_url="http://$addr"
  reference_pid=$server_pid
  local port
  port="$(free_port)"
  "${server_pin[@]}" "$work/json2k-native" -listen "127.0.0.1:$port" >"$work/native.out" 2>"$work/native.err" &
  native_pid=$!
  pids+=("$native_pid")
  native="http://127.0.0.1:$port"
  for _ in $(seq 1 500); do
    curl -sf -o /dev/null "$native/json2k" && break
    kill -0 "$native_pid" 2>/dev/null || { cat "$work/native.err" >&2; exit 1; }
    sleep 0.01
  done
  # Each endpoint answers once before any load, so a broken build fails here.
  curl -sf -X POST -d '[2.5,3.7]' "$gateway/api/exec/add/add" | grep -qx '6.2'
  curl -sf -X POST -d '[2.5,3.7]' "$reference_url/api/exec/add/add" | grep -qx '6.2'
  local server
  local readings='{"device":"pump-7","readings":[20.5,19.5,21,23,22.5,20,19,21.5]}'
  for server in "$gateway" "$native"; do
    curl -sf -o /dev/null "$server/json2k"
    curl -sf "$server/json2k/text" | grep -qx ok
    curl -sf -X POST -H 'Content-Type: application/json' -d "$readings" "$server/json2k/readings" | grep -q '"count":8'
  done
}
