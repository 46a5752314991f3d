#!/usr/bin/env bash
# Install what a bare Debian machine lacks to run switchyard's demo or its
# tests, and say what is installed. Nothing happens when everything is there.
#
#   scripts/setup.sh demo   # nats-server (make demo)
#   scripts/setup.sh test   # the services and tools the test suite starts for real (make test)
#
# Debian packages come from apt (as root, or through sudo); cargo-nextest from
# crates.io. Set SWITCHYARD_SETUP=skip to do nothing (a machine set up by hand).
set -euo pipefail

what="${1:-test}"
[ "${SWITCHYARD_SETUP:-}" = "skip" ] && exit 0

missing=()
need() { # need PACKAGE WHY CHECK...
  local pkg="$1" why="$2"; shift 2
  if ! "$@" >/dev/null 2>&1; then
    missing+=("$pkg")
    echo "setup: $pkg is missing ($why)"
  fi
}
has() { command -v "$1"; }
glob() { compgen -G "$1"; }

need nats-server "the event stream: JetStream" has nats-server
need python3 "free ports in the demo; test driver adapters" has python3
need curl "the demo and the tests call the API" has curl
if [ "$what" = "test" ]; then
  need openssh-server "the ssh driver's tests start sshd" test -x /usr/sbin/sshd
  need postgresql-15 "the PostgreSQL ledger tests start a server" glob '/usr/lib/postgresql/*/bin/initdb'
  need openssl "RS256/ES256 test keys" has openssl
  need python3-venv "schemathesis runs in a virtualenv" python3 -c 'import venv, ensurepip'
  need faketime "the clock-jump system test" glob '/usr/lib/*/faketime/libfaketimeMT.so.1'
  need dpkg-dev "the Debian package test (dpkg-deb, dpkg-shlibdeps)" has dpkg-shlibdeps
  need systemd "the package test checks the unit with systemd-analyze" has systemd-analyze
fi

if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    has sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "setup: installing ${missing[*]} (apt-get)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "$what" = "test" ]; then
  if ! cargo nextest --version >/dev/null 2>&1; then
    echo "setup: installing cargo-nextest (cargo install; the test runner)"
    cargo install --locked cargo-nextest
  fi
  # Pinned: the package test packs the test build (dev profile), which later
  # cargo-deb versions mean to refuse.
  if ! cargo deb --version 2>/dev/null | grep -q ' 3\.8\.'; then
    echo "setup: installing cargo-deb 3.8 (cargo install; builds the Debian package)"
    cargo install --locked cargo-deb --version '~3.8'
  fi
fi
