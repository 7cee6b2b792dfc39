#!/usr/bin/env bash
# Rhizome node vs nginx and HAProxy (OS packages), one worker each, on a
# 2-core machine: the proxy under test alone on core 0, load generator
# (rhizome-bench) and upstream (rhizome-mock) on core 1. Same work on every
# proxy: check the client key header, inject `api-key`, keep-alive upstream,
# access log one line per request. Rounds are interleaved (direct, nginx,
# haproxy, node, then again) so a noisy minute hits all of them. Every run
# is bounded in time (see rhizome-bench).
#
#   cargo build --release -p rhizome-node -p rhizome-tests -p rhizome-loadtest --bins
#   loadtest/bench.sh [target/release] [what...]
#
# what: max (closed-loop throughput), rate (open-loop latency at 25 % and
# 50 % of nginx's saturation), idle (KiB per idle keep-alive connection),
# all (the default). Results are `key=value` lines on stdout and in
# $BENCH_DIR/results.txt (default /tmp/rhizome-bench), next to the logs and
# configs; `loadtest/report.py` turns them into loadtest/results/.
set -euo pipefail

BIN=${1:-target/release}
shift || true
WHAT=${*:-all}
DIR=${BENCH_DIR:-/tmp/rhizome-bench}
SECONDS_MAX=${SECONDS_MAX:-8}
SECONDS_RATE=${SECONDS_RATE:-10}
ROUNDS=${ROUNDS:-2}
IDLE_CONNS=${IDLE_CONNS:-2000}
MOCK_PORT=${MOCK_PORT:-18181} NODE_PORT=${NODE_PORT:-18180}
ADMIN_PORT=${ADMIN_PORT:-18190} NGINX_PORT=${NGINX_PORT:-18182}
HAPROXY_PORT=${HAPROXY_PORT:-18183}
CLIENT_KEY=ck-bench-2b9e7d11
STATIC_KEY=sk-bench-5e1c3a77
mkdir -p "$DIR"
: >"$DIR/results.txt"
# Every result line goes to stdout and to results.txt.
say() { echo "$*" | tee -a "$DIR/results.txt"; }
for tool in nginx haproxy taskset; do
  command -v $tool >/dev/null || {
    echo "$tool is missing (apt-get install nginx-light haproxy util-linux)" >&2
    exit 1
  }
done
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$DIR/nginx.pid" ] && kill "$(cat "$DIR/nginx.pid")" 2>/dev/null || true
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "port $1 did not open" >&2
  exit 1
}

# Upstream.
RUST_LOG=warn taskset -c 1 "$BIN/rhizome-mock" --listen 127.0.0.1:$MOCK_PORT \
  --static-key $STATIC_KEY >"$DIR/mock.log" 2>&1 &
PIDS+=($!)
wait_port $MOCK_PORT

# Node.
KEY_SHA=$(printf %s $CLIENT_KEY | sha256sum | cut -d' ' -f1)
cat >"$DIR/node.toml" <<EOF
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
EOF
RUST_LOG=${NODE_LOG:-info} taskset -c 0 "$BIN/rhizome-node" --config "$DIR/node.toml" \
  >"$DIR/node.log" 2>&1 &
NODE_PID=$!
PIDS+=($NODE_PID)
wait_port $NODE_PORT

# nginx: one worker, the same check and injection, keep-alive upstream.
cat >"$DIR/nginx.conf" <<EOF
worker_processes 1;
pid $DIR/nginx.pid;
error_log $DIR/nginx-error.log warn;
daemon on;
events { worker_connections 8192; }
http {
  access_log $DIR/nginx-access.log;
  client_body_temp_path $DIR/nginx-tmp;
  proxy_temp_path $DIR/nginx-tmp;
  keepalive_requests 1000000;
  upstream mock { server 127.0.0.1:$MOCK_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location /s/ {
      if (\$http_authorization != "Bearer $CLIENT_KEY") { return 401; }
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "";
      proxy_set_header api-key "$STATIC_KEY";
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_pass http://mock/;
    }
  }
}
EOF
mkdir -p "$DIR/nginx-tmp"
taskset -c 0 nginx -c "$DIR/nginx.conf" -p "$DIR"
wait_port $NGINX_PORT
NGINX_PID=$(pgrep -P "$(cat "$DIR/nginx.pid")" | head -1)

# HAProxy: one thread, the same check and injection, upstream connections
# reused, one log line per request (to a file, as the others).
cat >"$DIR/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 8000
  log stdout format raw local0
defaults
  mode http
  log global
  option httplog
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:$HAPROXY_PORT
  http-request return status 401 unless { req.hdr(authorization) -m str "Bearer $CLIENT_KEY" }
  http-request del-header authorization
  http-request set-header api-key $STATIC_KEY
  http-request set-path %[path,regsub(^/s/,/)]
  option forwardfor
  default_backend mock
backend mock
  server m1 127.0.0.1:$MOCK_PORT
EOF
taskset -c 0 haproxy -f "$DIR/haproxy.cfg" -db >"$DIR/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=($HAPROXY_PID)
wait_port $HAPROXY_PORT

B() { taskset -c 1 "$BIN/rhizome-bench" "$@" --proxy-core 0 | tee -a "$DIR/results.txt"; }
AUTH=(--path /s/x --header "Authorization: Bearer $CLIENT_KEY")
DIRECT=(--addr 127.0.0.1:$MOCK_PORT --path /x --header "api-key: $STATIC_KEY")

rss() { awk '/VmRSS/ {print $2}' /proc/"$1"/status; }
say "rss_idle node_kib=$(rss $NODE_PID) nginx_kib=$(rss "$NGINX_PID") haproxy_kib=$(rss $HAPROXY_PID)"

NGINX_MAX=0
if [[ $WHAT == *all* || $WHAT == *max* ]]; then
  for r in $(seq "$ROUNDS"); do
    B max "${DIRECT[@]}" --seconds "$SECONDS_MAX" --connections 32 --label direct
    out=$(B max --addr 127.0.0.1:$NGINX_PORT "${AUTH[@]}" --seconds "$SECONDS_MAX" \
      --connections 32 --pid "$NGINX_PID" --label nginx)
    echo "$out"
    NGINX_MAX=$(sed -n 's/.* rps=\([0-9]*\).*/\1/p' <<<"$out")
    B max --addr 127.0.0.1:$HAPROXY_PORT "${AUTH[@]}" --seconds "$SECONDS_MAX" \
      --connections 32 --pid "$HAPROXY_PID" --label haproxy
    B max --addr 127.0.0.1:$NODE_PORT "${AUTH[@]}" --seconds "$SECONDS_MAX" \
      --connections 32 --pid "$NODE_PID" --label node
  done
fi

if [[ $WHAT == *all* || $WHAT == *rate* ]]; then
  [ "$NGINX_MAX" -gt 0 ] || NGINX_MAX=${NGINX_SAT:-56000}
  for frac in 25 50; do
    rate=$((NGINX_MAX * frac / 100))
    for r in $(seq "$ROUNDS"); do
      B rate "${DIRECT[@]}" --rate $rate --seconds "$SECONDS_RATE" --connections 64 \
        --label "direct@$frac%"
      B rate --addr 127.0.0.1:$NGINX_PORT "${AUTH[@]}" --rate $rate \
        --seconds "$SECONDS_RATE" --connections 64 --pid "$NGINX_PID" --label "nginx@$frac%"
      B rate --addr 127.0.0.1:$HAPROXY_PORT "${AUTH[@]}" --rate $rate \
        --seconds "$SECONDS_RATE" --connections 64 --pid "$HAPROXY_PID" --label "haproxy@$frac%"
      B rate --addr 127.0.0.1:$NODE_PORT "${AUTH[@]}" --rate $rate \
        --seconds "$SECONDS_RATE" --connections 64 --pid "$NODE_PID" --label "node@$frac%"
    done
  done
fi

sleep 3
say "rss_after_load node_kib=$(rss $NODE_PID) nginx_kib=$(rss "$NGINX_PID") haproxy_kib=$(rss $HAPROXY_PID)"

if [[ $WHAT == *all* || $WHAT == *idle* ]]; then
  B idle --addr 127.0.0.1:$NGINX_PORT "${AUTH[@]}" --connections "$IDLE_CONNS" \
    --pid "$NGINX_PID" --label nginx-idle
  B idle --addr 127.0.0.1:$HAPROXY_PORT "${AUTH[@]}" --connections "$IDLE_CONNS" \
    --pid "$HAPROXY_PID" --label haproxy-idle
  B idle --addr 127.0.0.1:$NODE_PORT "${AUTH[@]}" --connections "$IDLE_CONNS" \
    --pid "$NODE_PID" --label node-idle
fi
