#!/usr/bin/env bash
# Instructions per request of rhizome-node, the repeatable yardstick on a
# noisy machine: the node runs under callgrind (instrumentation off), a warmup
# of requests runs uncounted, then exactly $REQUESTS requests (the bench's
# request: client key checked, `api-key` injected, access log written) are
# counted across all of the node's threads (log writer included).
#
#   loadtest/callgrind.sh [target/release]
#
# Prints `instr_per_req=…`; the profile is $CG_DIR/callgrind.out (read it
# with callgrind_annotate).
set -euo pipefail

BIN=${1:-target/release}
DIR=${CG_DIR:-/tmp/rhizome-callgrind}
REQUESTS=${REQUESTS:-4000}
MOCK_PORT=${MOCK_PORT:-18281} NODE_PORT=${NODE_PORT:-18280} ADMIN_PORT=${ADMIN_PORT:-18290}
CLIENT_KEY=ck-bench-2b9e7d11
STATIC_KEY=sk-bench-5e1c3a77
mkdir -p "$DIR"
rm -f "$DIR"/callgrind.out*
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_port() {
  for _ in $(seq 600); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "port $1 did not open" >&2
  exit 1
}

RUST_LOG=warn "$BIN/rhizome-mock" --listen 127.0.0.1:$MOCK_PORT \
  --static-key $STATIC_KEY >"$DIR/mock.log" 2>&1 &
PIDS+=($!)
wait_port $MOCK_PORT

KEY_SHA=$(printf %s $CLIENT_KEY | sha256sum | cut -d' ' -f1)
cat >"$DIR/node.toml" <<TOML
[node]
id = "bench"
listen = "127.0.0.1:$NODE_PORT"
admin_listen = "127.0.0.1:$ADMIN_PORT"
admin_token = "bench-admin-token-0"

[[clients]]
name = "bench"
key_sha256 = "$KEY_SHA"

[[credentials]]
name = "static"
kind = "static"
token = "$STATIC_KEY"
inject = { header = "api-key", value = "{token}" }

[[upstreams]]
name = "mock"
targets = ["http://127.0.0.1:$MOCK_PORT"]

[[routes]]
name = "s"
path_prefix = "/s/"
strip_prefix = true
upstream = "mock"
credentials = ["static"]
TOML
RUST_LOG=info valgrind --tool=callgrind --instr-atstart=no \
  --callgrind-out-file="$DIR/callgrind.out" \
  "$BIN/rhizome-node" --config "$DIR/node.toml" >"$DIR/node.log" 2>"$DIR/valgrind.log" &
NODE_PID=$!
PIDS+=($NODE_PID)
wait_port $NODE_PORT

B() {
  "$BIN/rhizome-bench" max --addr 127.0.0.1:$NODE_PORT --path /s/x \
    --header "Authorization: Bearer $CLIENT_KEY" --connections 8 "$@"
}
B --requests 500 >/dev/null
callgrind_control -i on "$NODE_PID" >/dev/null
out=$(B --requests "$REQUESTS")
sleep 0.5 # the log writer's last batch
callgrind_control -i off "$NODE_PID" >/dev/null
callgrind_control -d "$NODE_PID" >/dev/null
sleep 1
echo "$out" >&2
ok=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' <<<"$out")
file=$(ls "$DIR"/callgrind.out.* | sort -t. -k3 -n | tail -1)
ir=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "instr_per_req=$((ir / ok)) requests=$ok total_ir=$ir profile=$file"
