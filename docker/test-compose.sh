#!/usr/bin/env bash
# End-to-end test of docker/compose.yaml on this machine, with no registry:
# makes the base images (docker/local-images.sh), builds the binaries on the
# host and the Rhizome images from them (PREBUILT=1), brings the cluster up,
# runs docker/check-cluster.py through the load balancer (a credentialed
# request, MCP, an SSE stream whose node is killed mid-stream, a raft leader
# kill), and always ends with `down -v`, also on failure and on Ctrl-C, then
# checks that no container, network or volume of the project is left.
#
#   RHIZOME_PROFILE=release|dev   cargo profile of the binaries (release)
#   COMPOSE_PROJECT_NAME          project name (rhizome-test)
#   KEEP_IMAGES=0                 remove the Rhizome images at the end
set -euo pipefail
cd "$(dirname "$0")/.."

export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-rhizome-test}
PROFILE=${RHIZOME_PROFILE:-release}
# Host ports away from the README's demo, so both can run side by side.
export RHIZOME_PORT=${RHIZOME_PORT:-18080} MOCK_PORT=${MOCK_PORT:-19999}
export COORDINATOR1_PORT=${COORDINATOR1_PORT:-17071} COORDINATOR2_PORT=${COORDINATOR2_PORT:-17072} COORDINATOR3_PORT=${COORDINATOR3_PORT:-17073}
export NODE1_ADMIN_PORT=${NODE1_ADMIN_PORT:-19091} NODE2_ADMIN_PORT=${NODE2_ADMIN_PORT:-19092} NODE3_ADMIN_PORT=${NODE3_ADMIN_PORT:-19093}
export RHIZOME_IMAGE=${RHIZOME_IMAGE:-rhizome/node:test} COORDINATOR_IMAGE=${COORDINATOR_IMAGE:-rhizome/coordinator:test} MOCK_IMAGE=${MOCK_IMAGE:-rhizome/mock:test}

if docker compose version >/dev/null 2>&1; then
  COMPOSE="docker compose -f docker/compose.yaml"
else
  COMPOSE="docker-compose -f docker/compose.yaml"
fi
export COMPOSE

log() { echo "==> $*"; }

leftovers() {
  local filter="label=com.docker.compose.project=$COMPOSE_PROJECT_NAME"
  { docker ps -aq --filter "$filter"; docker network ls -q --filter "$filter"; docker volume ls -q --filter "$filter"; } | wc -l
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ "$status" != 0 ]; then
    log "failed; the last log lines of every service:"
    $COMPOSE logs --no-color --tail=40 2>&1 | tail -n 400 || true
  fi
  log "down -v"
  $COMPOSE down -v --remove-orphans --timeout 10 >/dev/null 2>&1 || true
  if [ "${KEEP_IMAGES:-1}" = 0 ]; then
    docker image rm "$RHIZOME_IMAGE" "$COORDINATOR_IMAGE" "$MOCK_IMAGE" >/dev/null 2>&1 || true
  fi
  local left
  left=$(leftovers)
  if [ "$left" != 0 ]; then
    echo "FAIL: $left containers, networks or volumes of $COMPOSE_PROJECT_NAME are left" >&2
    status=1
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

docker info >/dev/null 2>&1 || { echo "test-compose.sh: no Docker engine answers" >&2; exit 1; }
$COMPOSE down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true

log "base images (docker/local-images.sh)"
eval "$(docker/local-images.sh)"
export RUST_IMAGE RUNTIME_IMAGE REDIS_IMAGE LB_IMAGE PREBUILT=1

log "binaries (cargo build --profile $PROFILE)"
cargo build --profile "$PROFILE" --bin rhizome-node --bin rhizome-coordinator --bin rhizome-mock
out_dir=${CARGO_TARGET_DIR:-target}/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
rm -rf docker/prebuilt && mkdir -p docker/prebuilt
for bin in rhizome-node rhizome-coordinator rhizome-mock; do
  strip -o "docker/prebuilt/$bin" "$out_dir/$bin"
done

log "images"
start=$(date +%s%N)
$COMPOSE build --quiet
echo "measured: image_build_seconds $(awk "BEGIN { printf \"%.1f\", ($(date +%s%N) - $start) / 1e9 }")"
for image in "$RHIZOME_IMAGE" "$COORDINATOR_IMAGE" "$MOCK_IMAGE" "$REDIS_IMAGE" "$LB_IMAGE"; do
  echo "measured: image_size_bytes $image $(docker image inspect -f '{{.Size}}' "$image")"
done

log "up"
export UP_STARTED
UP_STARTED=$(date +%s.%N)
$COMPOSE up -d --no-build
python3 docker/check-cluster.py
log "PASS"
