#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the end-to-end tests
# need (redis-server, promtool, openapi-spec-validator, schemathesis, chromium
# and selenium, the pinned Python client generator), builds every binary the
# harness starts, runs all tests with nextest, then scans every log the
# suite captured for the secrets the tests used.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

need_apt=()
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-cli >/dev/null || need_apt+=(redis-tools)
command -v curl >/dev/null || need_apt+=(curl)  # the README test runs the README's curl commands
# The admin dashboard's test drives a real headless Chromium.
command -v chromium >/dev/null || need_apt+=(chromium fonts-dejavu-core)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]} (apt-get)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if ! python3 -c 'import openapi_spec_validator' 2>/dev/null; then
  echo "==> installing openapi-spec-validator (pip)"
  python3 -m pip install -q openapi-spec-validator
fi
if ! python3 -c 'import selenium' 2>/dev/null; then
  echo "==> installing selenium (pip)"
  python3 -m pip install -q selenium
fi
# OpenAPI conformance (tests/tests/schemathesis.rs), pinned: a new release may
# add checks.
if ! schemathesis --version 2>/dev/null | grep -q ' 4\.32\.5$'; then
  echo "==> installing schemathesis (pip)"
  python3 -m pip install -q 'schemathesis==4.32.5'
fi
# The Python client generator (pinned) and the generated client's dependencies.
python3 -m pip install -q -r clients/requirements-gen.txt -r clients/requirements.txt
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "==> installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

echo "==> building binaries"
cargo build --workspace --bins
rm -rf target/test-logs

echo "==> running tests"
cargo nextest run --workspace --no-fail-fast "$@"

echo "==> scanning captured logs for secrets"
if [ -d target/test-logs ]; then
  patterns=$(grep -hoE '"(ck|cs|hs|sk|at)-[a-z0-9-]+"' tests/src/harness/secrets.rs | tr -d '"'; printf 'mocktok-\n')
  # A JWT is a word starting eyJ followed by '.'; a random id may hold "eyJ".
  jwt='(^|[^A-Za-z0-9_-])eyJ[A-Za-z0-9_-]*[.]'
  if grep -rlF --include='*.log' --include='*.log.*' -f <(echo "$patterns") target/test-logs ||
     grep -rlE --include='*.log' --include='*.log.*' "$jwt" target/test-logs; then
    echo "FAIL: the logs above contain a secret, token or client key" >&2
    exit 1
  fi
fi
echo "==> logs clean"
