#!/usr/bin/env bash
# Regenerates the clients under clients/ from the node's OpenAPI document:
# clients/openapi.json (what `rhizome-node openapi` prints) and clients/python/
# (openapi-python-client, at the version pinned in clients/requirements-gen.txt).
#
#   scripts/gen-clients.sh            regenerate in place
#   scripts/gen-clients.sh --check    regenerate into a temp dir and compare with
#                                     the committed files; exit 1 naming every
#                                     file that drifted
#   --spec FILE   use FILE as the document instead of `rhizome-node openapi`
#   --out DIR     the clients directory to write or check (default: clients)
#
# The document comes from $RHIZOME_NODE (a rhizome-node binary) when set, else
# from `cargo run -q -p rhizome-node -- openapi`.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

check=0
spec=""
out="$repo/clients"
while [ $# -gt 0 ]; do
  case "$1" in
    --check) check=1 ;;
    --spec) spec="${2:?--spec needs a file}"; shift ;;
    --out) out="${2:?--out needs a directory}"; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gen-clients: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
out="$(cd "$out" && pwd)"
config="$repo/clients/openapi-python-client.yaml"
pins="$repo/clients/requirements-gen.txt"

# The generator and its formatter, at the pinned versions.
pinned() { sed -n "s/^$1==//p" "$pins"; }
want_gen="$(pinned openapi-python-client)"
want_ruff="$(pinned ruff)"
have_gen="$(openapi-python-client --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' || true)"
have_ruff="$(ruff --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' || true)"
if [ "$have_gen" != "$want_gen" ] || [ "$have_ruff" != "$want_ruff" ]; then
  echo "gen-clients: needs openapi-python-client $want_gen and ruff $want_ruff" \
    "(found: ${have_gen:-none} and ${have_ruff:-none});" \
    "install them with: python3 -m pip install -r clients/requirements-gen.txt" >&2
  exit 3
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# 1. The document.
if [ -n "$spec" ]; then
  cp "$spec" "$tmp/openapi.json"
elif [ -n "${RHIZOME_NODE:-}" ]; then
  "$RHIZOME_NODE" openapi >"$tmp/openapi.json"
else
  (cd "$repo" && cargo run -q -p rhizome-node -- openapi) >"$tmp/openapi.json"
fi

# 2. The Python client, generated in the temp dir (the generator formats it
#    with ruff there, away from any other ruff configuration).
if ! (cd "$tmp" && openapi-python-client generate --path openapi.json \
  --config "$config" --meta pdm --output-path python --fail-on-warning) >"$tmp/gen.log" 2>&1; then
  cat "$tmp/gen.log" >&2
  echo "gen-clients: openapi-python-client failed on the document (above)" >&2
  exit 1
fi
rm -rf "$tmp/python/.ruff_cache" "$tmp/gen.log"

if [ "$check" = 0 ]; then
  cp "$tmp/openapi.json" "$out/openapi.json"
  rm -rf "$out/python"
  cp -R "$tmp/python" "$out/python"
  echo "gen-clients: wrote $out/openapi.json and $out/python/"
  exit 0
fi

# --check: every generated file must equal the committed one, and no committed
# file may be missing from the generation.
drift="$(cd "$tmp" && diff -rq -x __pycache__ -x .ruff_cache openapi.json "$out/openapi.json" >/dev/null 2>&1 || echo openapi.json
  diff -rq -x __pycache__ -x .ruff_cache python "$out/python" 2>&1 |
    sed -E -e "s#^Files python/([^ ]+) and .* differ\$#python/\\1#" \
      -e "s#^Only in $out/python(/?)([^:]*): (.*)\$#python/\\2\\1\\3 (committed, no longer generated)#" \
      -e "s#^Only in python(/?)([^:]*): (.*)\$#python/\\2\\1\\3 (generated, not committed)#" || true)"
if [ -n "$drift" ]; then
  {
    echo "gen-clients: the clients in $out drifted from the OpenAPI document:"
    echo "$drift" | sed 's/^/  /'
    echo "Regenerate with scripts/gen-clients.sh and commit the result."
  } >&2
  if [ -n "${GEN_CLIENTS_DIFF:-}" ]; then
    (cd "$tmp" && diff -ru -x __pycache__ -x .ruff_cache openapi.json "$out/openapi.json"; diff -ru -x __pycache__ -x .ruff_cache python "$out/python") >&2 || true
  fi
  exit 1
fi
echo "gen-clients: $out matches the OpenAPI document"
