#!/usr/bin/env bash
# The quick start in one command: builds the binaries (release), starts the
# demo upstream (rhizome-mock: an OAuth2 token server plus an API that
# verifies the injected credential and echoes the request) and one Rhizome
# node on the embedded default in front of it (examples/quickstart.toml),
# waits until the node is ready, prints what to try, then shows the node's
# log until Ctrl-C, which stops both. Everything listens on 127.0.0.1 only.
#
# Environment (all optional):
#   QUICKSTART_PROXY_PORT  node proxy port      (default 8080)
#   QUICKSTART_ADMIN_PORT  node admin port      (default 9090)
#   QUICKSTART_MOCK_PORT   demo upstream port   (default 9999)
#   QUICKSTART_BIN_DIR     use the rhizome-node and rhizome-mock binaries in
#                          this directory instead of building (the README test
#                          runs the debug build this way)
set -euo pipefail
cd "$(dirname "$0")/.."

proxy_port=${QUICKSTART_PROXY_PORT:-8080}
admin_port=${QUICKSTART_ADMIN_PORT:-9090}
mock_port=${QUICKSTART_MOCK_PORT:-9999}
config=examples/quickstart.toml

die() {
  echo "quickstart: $*" >&2
  exit 1
}

port_in_use() {
  # A successful connect means something already listens there.
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

for port in "$proxy_port" "$admin_port" "$mock_port"; do
  if port_in_use "$port"; then
    die "127.0.0.1:$port is already in use; stop what listens there or choose other ports with QUICKSTART_PROXY_PORT, QUICKSTART_ADMIN_PORT, QUICKSTART_MOCK_PORT"
  fi
done
command -v curl >/dev/null || die "curl is needed (to wait for readiness and to try the node)"

if [ -n "${QUICKSTART_BIN_DIR:-}" ]; then
  bin_dir=$QUICKSTART_BIN_DIR
else
  echo "==> building rhizome-node, rhizome-mock and rhizome-coordinator (release; the first build takes a few minutes)"
  cargo build --release --bin rhizome-node --bin rhizome-mock --bin rhizome-coordinator
  bin_dir=target/release
fi
for b in rhizome-node rhizome-mock; do
  [ -x "$bin_dir/$b" ] || die "$bin_dir/$b is missing"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/rhizome-quickstart.XXXXXX")
if [ "$mock_port" != 9999 ]; then
  # The config names the demo upstream's address; point it at the chosen port.
  sed "s/127\.0\.0\.1:9999/127.0.0.1:$mock_port/g" "$config" >"$work/quickstart.toml"
  config=$work/quickstart.toml
fi

pids=()
stop() {
  trap - EXIT INT TERM
  if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap stop EXIT
trap 'echo; echo "==> stopping"; exit 0' INT TERM

"$bin_dir/rhizome-mock" --listen "127.0.0.1:$mock_port" --client svc-demo:demo-secret \
  >"$work/mock.log" 2>&1 &
pids+=($!)

# The OAuth client secret reaches the node through the config's
# { env = "DEMO_CLIENT_SECRET" } reference, never through the file.
DEMO_CLIENT_SECRET=demo-secret "$bin_dir/rhizome-node" --config "$config" \
  --listen "127.0.0.1:$proxy_port" --admin-listen "127.0.0.1:$admin_port" \
  --log-format pretty &
node_pid=$!
pids+=("$node_pid")

# Wait (at most 30 s) until the node answers /readyz and the mock accepts.
for _ in $(seq 150); do
  if curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null && port_in_use "$mock_port"; then
    ready=1
    break
  fi
  kill -0 "${pids[@]}" 2>/dev/null || break
  sleep 0.2
done
if [ -z "${ready:-}" ]; then
  echo "quickstart: the node or the demo upstream did not start; demo upstream log:" >&2
  cat "$work/mock.log" >&2
  exit 1
fi

cat <<EOF

==> Rhizome is ready: proxy on 127.0.0.1:$proxy_port, admin on 127.0.0.1:$admin_port,
    demo upstream on 127.0.0.1:$mock_port. Try, in another terminal:

curl -s localhost:$proxy_port/api/hello -H 'authorization: Bearer demo-client-key'
curl -s localhost:$proxy_port/api/hello
curl -sN 'localhost:$proxy_port/api/sse?count=3&interval_ms=500' -H 'authorization: Bearer demo-client-key'
curl -s localhost:$admin_port/metrics | grep '^rhizome_requests_total'

    The README's walk-through goes further. The node's log follows; Ctrl-C stops both.

EOF

# Ends when the node exits by itself, or at once on Ctrl-C/SIGTERM (the trap).
wait "$node_pid"
