#!/usr/bin/env bash
# Runs schemathesis against a running node's own OpenAPI document, once per
# listener: the admin listener's operations (every tag but `proxy`) with the
# admin token, the proxy listener's intent API (tag `proxy`) with a client
# key (schemathesis.toml maps the document's security schemes to them).
# Every check, bounded by examples per operation and a time budget per
# listener, with a fixed seed so a failure replays (override with
# RHIZOME_SCHEMATHESIS_SEED). Exits non-zero when either run finds a failure.
#
#   run_schemathesis.sh ADMIN_URL PROXY_URL REPORT_DIR
#   environment: RHIZOME_ADMIN_TOKEN, RHIZOME_CLIENT_KEY (never on the
#   command line), optional RHIZOME_SCHEMATHESIS_EXAMPLES (default 25),
#   RHIZOME_SCHEMATHESIS_SECONDS (default 60 per listener).
set -euo pipefail

admin_url=${1:?admin listener URL}
proxy_url=${2:?proxy listener URL}
report_dir=${3:?report directory}
: "${RHIZOME_ADMIN_TOKEN:?admin token}" "${RHIZOME_CLIENT_KEY:?client key}"
seed=${RHIZOME_SCHEMATHESIS_SEED:-20260501}
examples=${RHIZOME_SCHEMATHESIS_EXAMPLES:-25}
seconds=${RHIZOME_SCHEMATHESIS_SECONDS:-60}
here="$(cd "$(dirname "$0")" && pwd)"
conf="$here/schemathesis.toml"
# rhizome_hooks.py: deadlines the mock can meet (see the file).
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=rhizome_hooks
mkdir -p "$report_dir"
cd "$report_dir"

run() {
  local name=$1 base=$2
  shift 2
  echo "==> schemathesis: $name listener ($base), seed $seed"
  schemathesis --config-file "$conf" run "$admin_url/openapi.json" \
    --url "$base" "$@" \
    --checks all \
    --max-examples "$examples" --max-time "$seconds" \
    --seed "$seed" --workers 1 \
    --generation-database none \
    --no-color \
    --report junit --report-junit-path "$report_dir/schemathesis-$name.xml"
}

status=0
run admin "$admin_url" --exclude-tag proxy || status=1
run proxy "$proxy_url" --include-tag proxy || status=1
exit $status
