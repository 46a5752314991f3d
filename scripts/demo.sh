#!/usr/bin/env bash
# The switchyard demo: a real nats-server, `switchyard serve` on SQLite with the
# exec driver, the policies in examples/demo/policies, and a realistic stream of
# events — a flapping UPS, an Alertmanager alert firing and resolving, a burst
# of duplicates. It ends by printing the ledger, undoes one run, and stops
# everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
target="${CARGO_TARGET_DIR:-target}"
bin="$target/release/switchyard"
[ -x "$bin" ] && [ -x "$target/release/switchyard-driver-exec" ] || { echo "build first: make build" >&2; exit 2; }

if [ -t 1 ]; then bold=$'\033[1m' dim=$'\033[2m' plain=$'\033[0m'; else bold="" dim="" plain=""; fi
step() { printf '\n%s== %s%s\n' "$bold" "$1" "$plain"; }
say() { printf '%s$ %s%s\n' "$dim" "$*" "$plain"; }

scripts/setup.sh demo   # nats-server, python3 when missing (make demo ran it already)

work=$(mktemp -d /tmp/switchyard-demo.XXXXXX)
nats_pid="" serve_pid=""
cleanup() {
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null || true
  [ -n "$nats_pid" ] && kill "$nats_pid" 2>/dev/null && wait "$nats_pid" 2>/dev/null || true
  rm -rf "$work"
  rm -f /tmp/switchyard-demo-lab-0[12].drained
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
api_port=$(free_port)
nats="nats://127.0.0.1:$port"

step "1. nats-server with JetStream on $nats (store in a temporary folder)"
say "nats-server -js -a 127.0.0.1 -p $port -sd $work/jetstream"
nats-server -js -a 127.0.0.1 -p "$port" -sd "$work/jetstream" >"$work/nats.log" 2>&1 &
nats_pid=$!
for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done

step "2. switchyard serve: SQLite ledger, exec driver, two lab hosts, the demo policies"
cat >"$work/switchyard.toml" <<TOML
[database]
url = "sqlite://$work/switchyard.db?mode=rwc"
[nats]
url = "$nats"
[api]
listen = "127.0.0.1:$api_port"
[drivers]
paths = ["$repo/drivers"]
[policies]
dir = "$repo/examples/demo/policies"
[[hosts]]
id = "lab-01"
driver = "exec"
labels = { role = "lab" }
[[hosts]]
id = "lab-02"
driver = "exec"
labels = { role = "lab" }
TOML
sed 's/^/    /' "$work/switchyard.toml"
say "switchyard serve --config $work/switchyard.toml"
"$bin" serve --config "$work/switchyard.toml" >"$work/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 200); do
  grep -q "switchyard is running" "$work/serve.log" 2>/dev/null && break
  kill -0 "$serve_pid" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
  sleep 0.1
done
grep -E "policies applied|policies loaded|engine active" "$work/serve.log" | sed -E 's/^[^ ]+ +//; s/^/    /'

publish() { "$bin" event publish --nats-url "$nats" "$@" | sed 's/^/    /'; }

step "3. A UPS flapping between battery and line power (5 events in 2 s)"
say "switchyard event publish --kind ups.on_battery --data '{\"ups\":\"ups1\",\"charge\":…}'"
for charge in 97 95 93 91 89; do
  publish --kind ups.on_battery --source ups-monitor --data "{\"ups\":\"ups1\",\"charge\":$charge}"
  publish --kind ups.on_line --source ups-monitor --data '{"ups":"ups1"}'
  sleep 0.2
done

step "4. Alertmanager: NginxDown fires on lab-02, repeats, then resolves"
alert='{"labels":{"alertname":"NginxDown","severity":"critical","instance":"lab-02:80"},"annotations":{"summary":"nginx is down"}}'
publish --kind alertmanager.firing --host lab-02 --source alertmanager --data "$alert"
publish --kind alertmanager.firing --host lab-02 --source alertmanager --data "$alert"
sleep 0.5
publish --kind alertmanager.resolved --host lab-02 --source alertmanager --data "$alert"

step "5. A burst of duplicates: one event id published five times"
for _ in 1 2 3 4 5; do
  publish --kind alertmanager.firing --host lab-01 --source alertmanager --id dup-0001 \
    --data '{"labels":{"alertname":"NginxDown","severity":"warning"}}'
done
echo "    (JetStream keeps one copy per Nats-Msg-Id; switchyard decides it once)"

step "6. Waiting for the runs to finish"
for _ in $(seq 100); do
  open=$("$bin" runs list --database-url "sqlite://$work/switchyard.db" -o json --limit 1000 |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["runs"]; print(sum(x["status"] in ("queued","running") for x in r))')
  [ "$open" = 0 ] && break
  printf '    %s runs queued or running\n' "$open"
  sleep 0.3
done

step "7. The ledger"
say "switchyard runs list --config $work/switchyard.toml"
"$bin" runs list --config "$work/switchyard.toml" | sed 's/^/    /'
first=$("$bin" runs list --config "$work/switchyard.toml" --status succeeded --limit 1 -o json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["runs"][0]["id"])')
say "switchyard runs show $first"
"$bin" runs show --config "$work/switchyard.toml" "$first" | sed 's/^/    /'

step "8. Undo: put lab-02 back behind the load balancer"
drain=$("$bin" runs list --config "$work/switchyard.toml" --policy nginx-down --host lab-02 --status succeeded -o json |
  python3 -c 'import json,sys; print(next(r["id"] for r in json.load(sys.stdin)["runs"] if r["verb"] == "apply"))')
echo "    $(ls /tmp/switchyard-demo-lab-02.drained 2>/dev/null || echo 'no marker') (the drain marker)"
say "switchyard runs undo $drain"
"$bin" runs undo --config "$work/switchyard.toml" -o json "$drain" |
  python3 -c 'import json,sys; r=json.load(sys.stdin); print("    queued", r["capability"] + "." + r["verb"], "on", r["host"], "as run", r["id"], "(inverse_of", r["inverse_of"] + ")")'
for _ in $(seq 50); do [ -e /tmp/switchyard-demo-lab-02.drained ] || break; sleep 0.1; done
echo "    $(ls /tmp/switchyard-demo-lab-02.drained 2>/dev/null || echo 'the marker is gone: lab-02 is back')"
say "switchyard runs list --policy nginx-down"
"$bin" runs list --config "$work/switchyard.toml" --policy nginx-down | sed 's/^/    /'

step "9. Stopping (SIGTERM): intake stops, running work finishes, nothing is left running"
kill -TERM "$serve_pid"; wait "$serve_pid" || true; serve_pid=""
grep -E "stopping|stopped" "$work/serve.log" | sed -E 's/^[^ ]+ +//; s/^/    /'
printf '\nDone. `make test` runs the test suite; docs/ has the details.\n'
