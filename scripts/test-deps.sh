#!/usr/bin/env bash
# Installs what the tests need beyond cargo, when missing (a fresh machine has none of
# it), and is quick when everything is there:
#   - Debian's chromium (the web console test drives it headless);
#   - Debian's zookeeper (3.8, with a JRE: tests start their own servers from its jar);
#   - Debian's openssl (scripts/gen-certs.sh makes the TLS tests' certificates with it);
#   - tests/browser/node_modules: puppeteer-core, @stomp/stompjs and ws, from
#     tests/browser/package-lock.json;
#   - target/test-deps/venv: Python with prometheus-client, whose exposition parser
#     checks /metrics, and stomp.py, the client of tests/apps/activemq_app.py.
# Run from anywhere; scripts/test.sh runs it before `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v chromium >/dev/null 2>&1; then
  echo "test-deps: installing chromium (Debian package)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
fi

if [ ! -f /usr/share/java/zookeeper.jar ]; then
  echo "test-deps: installing zookeeper (Debian package)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq zookeeper >/dev/null
fi

if ! command -v openssl >/dev/null 2>&1; then
  echo "test-deps: installing openssl (Debian package)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq openssl >/dev/null
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "test-deps: installing nodejs and npm (Debian packages)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq nodejs npm >/dev/null
fi

if [ ! -d tests/browser/node_modules/puppeteer-core ] || [ ! -d tests/browser/node_modules/@stomp/stompjs ] ||
  [ ! -d tests/browser/node_modules/ws ]; then
  echo "test-deps: npm ci in tests/browser"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

venv=target/test-deps/venv
if ! "$venv/bin/python" -c 'import prometheus_client, stomp' >/dev/null 2>&1; then
  echo "test-deps: making $venv with prometheus-client and stomp.py"
  mkdir -p target/test-deps
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    'prometheus-client>=0.20,<1' 'stomp.py>=8.1,<10'
fi
