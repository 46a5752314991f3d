#!/usr/bin/env bash
# Schemathesis against a live `switchyard serve`: every read endpoint of the
# OpenAPI document the server publishes is called with generated and edge-case
# inputs; each answer must be a documented status with a body that matches
# the document, and never a server error. Part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
target="${CARGO_TARGET_DIR:-target}"
bin="$target/debug/switchyard"
cargo build -q -p switchyard-cli -p switchyard-driver-exec   # a no-op after the test build

# Schemathesis in its own virtualenv (kept between runs).
venv="${SWITCHYARD_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/switchyard/venv}"
version="4.32.5"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
  echo "installing schemathesis $version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$version"
fi

work=$(mktemp -d /tmp/switchyard-fuzz.XXXXXX)
nats_pid="" serve_pid=""
cleanup() {
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null || true
  [ -n "$nats_pid" ] && kill "$nats_pid" 2>/dev/null && wait "$nats_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port) api_port=$(free_port)
nats-server -js -a 127.0.0.1 -p "$port" -sd "$work/js" >"$work/nats.log" 2>&1 &
nats_pid=$!
for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
cat >"$work/switchyard.toml" <<TOML
[database]
url = "sqlite://$work/switchyard.db?mode=rwc"
[nats]
url = "nats://127.0.0.1:$port"
[api]
listen = "127.0.0.1:$api_port"
[drivers]
paths = ["$repo/drivers"]
[policies]
dir = "$repo/examples/demo/policies"
[auth]
jwt_hs256_secret = "\${file:$work/jwt.secret}"
[[hosts]]
id = "lab-01"
driver = "exec"
[[hosts]]
id = "lab-02"
driver = "exec"
TOML
head -c 48 /dev/urandom | base64 >"$work/jwt.secret"
token=$("$bin" token issue --role operator --ttl 30m --subject api-fuzz --config "$work/switchyard.toml")
"$bin" serve --config "$work/switchyard.toml" >"$work/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 300); do
  grep -q "switchyard is running" "$work/serve.log" 2>/dev/null && break
  kill -0 "$serve_pid" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
  sleep 0.1
done
# Some history to read.
for ups in ups1 ups2; do
  "$bin" event publish --nats-url "nats://127.0.0.1:$port" --kind ups.on_battery --data "{\"ups\":\"$ups\",\"charge\":50}" >/dev/null
done
sleep 1

status=0
# From the scratch directory, so that schemathesis keeps its cache there.
(cd "$work" && "$venv/bin/schemathesis" run "http://127.0.0.1:$api_port/api/openapi.json" \
  --include-method GET --exclude-path /api/stream -H "Authorization: Bearer $token" \
  --checks all --max-examples "${SWITCHYARD_FUZZ_EXAMPLES:-40}" --seed 1 \
  --suppress-health-check all --warnings off --no-color) || status=$?
if grep -E "panicked|ERROR" "$work/serve.log" >/dev/null; then
  echo "serve logged errors during the run:"; grep -E "panicked|ERROR" "$work/serve.log" | head -20
  status=1
fi
exit $status
