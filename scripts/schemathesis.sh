#!/usr/bin/env bash
# Fuzzes the admin API of a live gateway with schemathesis, from its OpenAPI
# document (docs/admin-openapi.json): every operation, with examples, the
# document's edge cases (coverage), random and invalid inputs (fuzzing) and
# chains through the document's links (stateful). Exits non-zero when any
# check fails: a 5xx, a status, header, content type or body the document
# does not describe, invalid input accepted, ...
#
#   bash scripts/schemathesis.sh            # SCHEMATHESIS_EXAMPLES per operation (default 40)
#   SCHEMATHESIS_EXAMPLES=200 bash scripts/schemathesis.sh
#
# The gateway is the release `shanhai` binary serving the example modules
# (scripts/build-examples.sh) plus one file that is not WebAssembly (a
# module in state `failed`), from a copy in a temporary folder, on ports
# picked here, sharing the integration tests' compile cache
# (target/test-cache). Schemathesis is installed, pinned, into
# target/schemathesis-venv; scripts/schemathesis.toml configures it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

version=4.32.5
examples="${SCHEMATHESIS_EXAMPLES:-40}"
venv="$root/target/schemathesis-venv"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
  echo "installing schemathesis $version into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

# shellcheck source=lib/build.sh
. "$root/scripts/lib/build.sh"
echo "building the release gateway as the test suite does (after the suite: nothing to compile)" >&2
build_like_the_suite
bash scripts/build-examples.sh "$root/target/modules"

work="$(mktemp -d)"
gateway_pid=""
cleanup() {
  if [[ -n "$gateway_pid" ]]; then
    kill "$gateway_pid" 2>/dev/null || true
    wait "$gateway_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The gateway deletes and writes module files: it gets a copy.
mkdir "$work/modules"
cp "$root"/target/modules/*.wasm "$work/modules/"
printf 'not a module' > "$work/modules/broken.wasm"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
http_port="$(free_port)"
admin_port="$(free_port)"
token="schemathesis-$RANDOM$RANDOM"
cat > "$work/shanhai.toml" <<EOF
[server]
listen = "127.0.0.1:$http_port"
cache_dir = "$root/target/test-cache"

[admin]
listen = "127.0.0.1:$admin_port"
token = "$token"
socket = ""

# A log tail poll with nothing new waits this long, not the default 20 s:
# schemathesis sends many.
[admin.dashboard]
log_poll_timeout_ms = 300
EOF

admin="http://127.0.0.1:$admin_port"
(cd "$work" && exec "$root/target/release/shanhai" serve --config shanhai.toml --modules modules) \
  > "$work/gateway.log" 2>&1 &
gateway_pid=$!

# Ready: every start-up module loaded or failed (the first start compiles).
for _ in $(seq 1 600); do
  if curl -sf "$admin/readyz" > /dev/null 2>&1; then
    break
  fi
  if ! kill -0 "$gateway_pid" 2>/dev/null; then
    cat "$work/gateway.log" >&2
    echo "the gateway exited before it was ready" >&2
    exit 1
  fi
  sleep 0.5
done
curl -sf "$admin/readyz" > /dev/null || { tail -50 "$work/gateway.log" >&2; echo "not ready" >&2; exit 1; }

# The served document must be the one in the repo.
if ! curl -sf -H "Authorization: Bearer $token" "$admin/admin/openapi.json" | cmp -s - docs/admin-openapi.json; then
  echo "GET /admin/openapi.json is not docs/admin-openapi.json" >&2
  exit 1
fi

run() {
  "$venv/bin/schemathesis" --config-file "$root/scripts/schemathesis.toml" \
    run "$root/docs/admin-openapi.json" \
    --url "$admin" \
    -H "Authorization: Bearer $token" \
    --checks all \
    --max-examples "$examples" \
    --seed "${SCHEMATHESIS_SEED:-1}" \
    --generation-database none \
    --request-timeout 30 \
    --workers 2 \
    --no-color \
    "$@"
}

status=0
# First everything that deletes nothing, so every operation meets the
# example modules (the examples and the links from the module list name
# real ones); then the deletes, which remove some of them; last the
# stateful chains through every link, deletes included.
echo "== schemathesis: every operation but DELETE" >&2
run --exclude-method DELETE || status=1
echo "== schemathesis: DELETE operations" >&2
run --include-method DELETE --phases examples,coverage,fuzzing || status=1
echo "== schemathesis: stateful, every link" >&2
run --phases stateful || status=1

# Whatever it sent, the gateway still serves.
if ! kill -0 "$gateway_pid" 2>/dev/null; then
  tail -50 "$work/gateway.log" >&2
  echo "the gateway died during the run" >&2
  exit 1
fi
curl -sf "$admin/healthz" > /dev/null || { echo "/healthz fails after the run" >&2; exit 1; }
curl -sf -H "Authorization: Bearer $token" "$admin/admin/modules" > /dev/null \
  || { echo "GET /admin/modules fails after the run" >&2; exit 1; }
if grep -E 'panicked|RUST_BACKTRACE' "$work/gateway.log" >&2; then
  echo "the gateway panicked during the run" >&2
  exit 1
fi
exit "$status"
