# One entry point for everyday tasks. The README and .ci/run call these targets.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: help setup build test faults lint fmt bench demo api-fuzz deb clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: ## install what a bare Debian machine lacks for the tests (says what it installs)
	@scripts/setup.sh test

build: ## release build of switchyard and its drivers
	$(CARGO) build --release --locked -p switchyard-cli -p switchyard-driver-exec -p switchyard-driver-http -p switchyard-driver-ssh

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

test: setup lint ## set up, lint, the doc tests, every other test, then schemathesis against a live server
	$(CARGO) test --locked --workspace --doc
	$(CARGO) nextest run --locked --workspace --no-fail-fast
	scripts/api-fuzz.sh
	scripts/package-test.sh

faults: ## the fault matrix at full length (tests/: 10 kills of serve under 10,000 events, 100 during SQLite writes, a 60 s database outage)
	SWITCHYARD_FAULTS_FULL=1 $(CARGO) nextest run --locked --workspace --no-fail-fast -E 'package(switchyard-system-tests)'

api-fuzz: ## schemathesis against a live switchyard serve (the read endpoints of /api/openapi.json)
	scripts/api-fuzz.sh

fmt: ## format the code
	$(CARGO) fmt --all

bench: ## every benchmark, end to end first; figures go to docs/BENCHMARKS.md by hand, with the command
	$(CARGO) bench --locked -p switchyard-cli --bench engine_e2e
	$(CARGO) bench --locked -p switchyard-cli --bench policy_reload
	$(CARGO) bench --locked -p switchyard-spec --bench spec
	$(CARGO) bench --locked -p switchyard-plugin --bench supervisor
	$(CARGO) bench --locked -p switchyard-intake --bench intake
	$(CARGO) bench --locked -p switchyard-store --bench ledger

deb: build ## a Debian package of the release build (target/debian/): binary, drivers, systemd unit, /etc/switchyard
	$(CARGO) deb --locked -p switchyard-cli --no-build

demo: ## nats-server + switchyard serve + events -> the ledger (see README)
	@scripts/setup.sh demo
	@$(MAKE) --no-print-directory build
	@scripts/demo.sh

clean:
	$(CARGO) clean
