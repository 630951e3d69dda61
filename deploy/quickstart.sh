#!/usr/bin/env bash
# Pantau quick start on a fresh Debian/Ubuntu machine.
#   deploy/quickstart.sh up      install what is missing, then `pantau demo`: broker, database,
#                                a simulated fleet, the collector, the API and its dashboard
#   deploy/quickstart.sh test    install what is missing, run the whole test suite
#   deploy/quickstart.sh down    stop the private broker and database started by `up`
# The tests start their own broker and database on free ports; `up` uses .pantau/.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root (or sudo) to run: $*" >&2; exit 1
  fi
}

apt_install() {
  command -v apt-get >/dev/null || { echo "please install: $*" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

bootstrap() {
  local missing=()
  [ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || missing+=(mosquitto)
  command -v influxd >/dev/null || missing+=(influxdb)
  command -v mosquitto_pub >/dev/null || missing+=(mosquitto-clients)
  command -v influx >/dev/null || missing+=(influxdb-client)
  # deploy/tls/make-dev-certs.sh (and the TLS tests that run it) need openssl.
  command -v openssl >/dev/null || missing+=(openssl)
  # The dashboard's browser test drives Debian's Chromium (headless) through Playwright.
  [ "$command" != test ] || command -v chromium >/dev/null || missing+=(chromium)
  python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null || missing+=(python3)
  python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null \
    || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    apt_install "${missing[@]}"
  fi
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  # Reinstall only when the dependency list changed.
  local stamp=.venv/.pantau-installed
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    touch "$stamp"
  fi
}

command=${1:-}
shift || true
case "$command" in
  up)
    bootstrap
    # Broker, database, a simulated Purbalingga fleet (90 devices, a few faults), the collector
    # and the API with its dashboard; prints the dashboard URL and a token. Ctrl-C stops it.
    exec .venv/bin/pantau demo "$@"
    ;;
  test)
    bootstrap
    exec .venv/bin/python -m pytest "$@"
    ;;
  down)
    exec .venv/bin/pantau services down
    ;;
  *)
    echo "usage: $0 up|test|down" >&2
    exit 2
    ;;
esac
