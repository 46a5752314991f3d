# One entry point for everyday tasks. The README and .ci/run call these targets.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: help build test faults lint fmt bench demo api-fuzz clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

build: ## release build of switchyard and its drivers
	$(CARGO) build --release --locked -p switchyard-cli -p switchyard-driver-exec -p switchyard-driver-http -p switchyard-driver-ssh

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

test: lint ## lint, the doc tests, every other test, then schemathesis against a live server
	$(CARGO) test --locked --workspace --doc
	$(CARGO) nextest run --locked --workspace --no-fail-fast
	scripts/api-fuzz.sh

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

demo: build ## nats-server + switchyard serve + events -> the ledger (see README)
	@scripts/demo.sh

clean:
	$(CARGO) clean
