#!/usr/bin/env bash
# A tour of what switchyard does today: the policy language, offline.
# The full demo (nats-server, `switchyard serve`, events, ledger) arrives with
# the engine; until then this shows validation and compilation for real.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-target}/release/switchyard"
[ -x "$bin" ] || { echo "build first: make build" >&2; exit 2; }

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold="" plain=""; fi
step() { printf '\n%s== %s%s\n$ %s\n' "$bold" "$1" "$plain" "$2"; }

step "1. Validate the example policies (YAML, JSON, TOML)" "switchyard policy validate examples/policies/*"
"$bin" policy validate examples/policies/*

step "2. A broken policy: every mistake, with a pointer to the field (exit code 1)" \
  "switchyard policy validate examples/broken/ups-typos.yaml"
set +e
"$bin" policy validate examples/broken/ups-typos.yaml
code=$?
set -e
echo "exit code: $code"

step "3. Compile to the IR: defaults filled, durations in ms, selector expanded" \
  "switchyard policy compile examples/policies/ups-on-battery-shutdown.yaml"
"$bin" policy compile examples/policies/ups-on-battery-shutdown.yaml >/tmp/switchyard-demo-ir.json
python3 - /tmp/switchyard-demo-ir.json <<'PY'
import json, sys
ir = json.load(open(sys.argv[1]))
t = ir["targets"][0]
ids = t["resolved_ids"]
print(f"selector     {t['selector']}")
print(f"expands to   {len(ids)} VMs on hosts {sorted({i['host'] for i in ids})}, e.g. {ids[0]['host']}/vm:{ids[0]['id']} … {ids[-1]['host']}/vm:{ids[-1]['id']}")
print(f"windows      {ir['windows']}")
print(f"spec_hash    {ir['spec_hash']}")
PY
rm -f /tmp/switchyard-demo-ir.json

step "4. The same policy written as TOML with other spellings has the same hash" \
  "switchyard policy compile --canonical examples/spellings/ups-on-battery-shutdown.toml"
a=$("$bin" policy compile --canonical examples/policies/ups-on-battery-shutdown.yaml)
b=$("$bin" policy compile --canonical examples/spellings/ups-on-battery-shutdown.toml)
if [ "$a" = "$b" ]; then echo "identical IR bytes (${#a} bytes), identical spec_hash"; else echo "IR differs" >&2; exit 1; fi

printf '\nDone. Next: `make test` runs the test suite.\n'
