#!/usr/bin/env bash
# The Debian package, built and installed as an operator would, then used:
# `cargo deb` of the test build, `dpkg -i` into a scratch root, the systemd
# unit checked by systemd-analyze, and the installed binary run — `init`
# finds the installed drivers, `serve` starts with that configuration and with
# the packaged /etc/switchyard one, and an event published through it ends as
# a succeeded run of the installed exec driver.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
fail() { echo "package-test: FAIL: $*" >&2; exit 1; }
step() { echo "package-test: $*"; }

# The test build's binaries (a no-op after `cargo nextest run`).
cargo build -q --locked -p switchyard-cli -p switchyard-driver-exec -p switchyard-driver-http -p switchyard-driver-ssh

work=$(mktemp -d /tmp/switchyard-package.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

deb="$work/switchyard.deb"
# The dev profile: the binaries the tests just built (a release package: make deb).
cargo deb --locked -p switchyard-cli --no-build --profile dev --fast -o "$deb" >"$work/deb.log" 2>&1 \
  || { cat "$work/deb.log" >&2; fail "cargo deb"; }
step "built $(du -h "$deb" | cut -f1) $(dpkg-deb -f "$deb" Package Version Architecture Depends | tr '\n' ' ')"
contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
for f in ./usr/bin/switchyard \
         ./usr/lib/switchyard/drivers/{exec,http,ssh}/plugin.yaml \
         ./usr/lib/switchyard/drivers/exec/switchyard-driver-exec \
         ./usr/lib/switchyard/drivers/http/switchyard-driver-http \
         ./usr/lib/switchyard/drivers/ssh/switchyard-driver-ssh \
         ./usr/lib/systemd/system/switchyard.service ./etc/switchyard/switchyard.toml; do
  grep -qxF "$f" <<<"$contents" || fail "the package lacks $f"
done
dpkg-deb -I "$deb" conffiles | grep -qx /etc/switchyard/switchyard.toml || fail "/etc/switchyard/switchyard.toml is not a conffile"

# Installed by dpkg into a scratch root (the machine's own packages untouched).
root="$work/root"
mkdir -p "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/info"
touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"
dpkg --root="$root" --force-not-root --force-depends --log=/dev/null -i "$deb" >"$work/dpkg.log" 2>&1 \
  || { cat "$work/dpkg.log" >&2; fail "dpkg -i"; }
dpkg --root="$root" -s switchyard | grep -qx 'Status: install ok installed' || fail "dpkg does not list it installed"
step "installed into a scratch root with dpkg"
sy="$root/usr/bin/switchyard"
"$sy" --version | grep -q '^switchyard ' || fail "switchyard --version"

# The unit: no warning from systemd's own checker, and its exposure score
# (scripts/setup.sh installs systemd-analyze).
command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing (scripts/setup.sh test installs it)"
unit=/usr/lib/systemd/system/switchyard.service
cp -an /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/" 2>/dev/null || true
out=$(systemd-analyze verify --root="$root" --man=no "$unit" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify warns: $out"
report=$(systemd-analyze security --offline=yes "$root$unit" 2>&1) || fail "systemd-analyze security: $report"
exposure=$(sed -n 's/.*Overall exposure level for switchyard.service: \([0-9.]*\).*/\1/p' <<<"$report")
[ -n "$exposure" ] || fail "systemd-analyze security gave no score: $report"
awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' || fail "the unit's exposure level is $exposure (at most 2.0: hardened)"
step "unit verified; exposure level $exposure"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nats_port=$(free_port)
nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$work/js" >"$work/nats.log" 2>&1 &
pids+=($!)
export SWITCHYARD_NATS__URL="nats://127.0.0.1:$nats_port" SWITCHYARD_LOG=info
wait_ready() { # wait_ready PORT LOG -> the /readyz body
  for _ in $(seq 150); do
    body=$(curl -sf "http://127.0.0.1:$1/readyz" 2>/dev/null) && { echo "$body"; return 0; }
    sleep 0.2
  done
  cat "$2" >&2
  return 1
}

# The packaged configuration starts serve (its database, policies and
# drivers live in /var/lib, /etc and /usr/lib on a real install: the first
# two are moved into the scratch root, the drivers are not found, which serve
# reports and survives).
api=$(free_port)
SWITCHYARD_DATABASE__URL="sqlite://$work/etc.db?mode=rwc" SWITCHYARD_API__LISTEN="127.0.0.1:$api" \
  SWITCHYARD_POLICIES__DIR="$root/etc/switchyard/policies" \
  "$sy" serve --config "$root/etc/switchyard/switchyard.toml" >"$work/etc-serve.log" 2>&1 &
etc_pid=$!
pids+=($etc_pid)
body=$(wait_ready "$api" "$work/etc-serve.log") || fail "serve with the packaged configuration"
grep -q '"status":"ready"' <<<"$body" || fail "not ready: $body"
kill -TERM "$etc_pid"; wait "$etc_pid" || fail "serve did not stop cleanly on SIGTERM"
step "the packaged /etc/switchyard/switchyard.toml serves: $body"

# init finds the installed drivers; its configuration serves and acts.
cd "$work"
"$sy" init site >"$work/init.log"
grep -qF "paths = [\"$root/usr/lib/switchyard/drivers\"]" site/switchyard.toml \
  || { cat "$work/init.log" site/switchyard.toml >&2; fail "init did not point drivers.paths at the installed drivers"; }
cd site
api=$(free_port)
export SWITCHYARD_API__LISTEN="127.0.0.1:$api"
"$sy" serve >"$work/serve.log" 2>&1 &
serve_pid=$!
pids+=($serve_pid)
body=$(wait_ready "$api" "$work/serve.log") || fail "serve with init's configuration"
grep -q '"drivers":3' <<<"$body" || fail "the installed drivers are not loaded: $body"
"$sy" event publish --kind demo.hello --host localhost --data '{"who":"the package"}' >/dev/null
for _ in $(seq 100); do
  runs=$("$sy" runs list --policy hello -o json)
  grep -q '"status": *"succeeded"' <<<"$runs" && break
  sleep 0.2
done
grep -q '"status": *"succeeded"' <<<"$runs" || { cat "$work/serve.log" >&2; fail "no succeeded run: $runs"; }
id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["runs"][0]["id"])' <<<"$runs")
shown=$("$sy" runs show "$id")
grep -q "hello, the package" <<<"$shown" || fail "the run's output lacks the greeting: $shown"
kill -TERM "$serve_pid"; wait "$serve_pid" || fail "serve did not stop cleanly on SIGTERM"
step "init + serve from the package: an event became run $id of the installed exec driver"
step "ok"
