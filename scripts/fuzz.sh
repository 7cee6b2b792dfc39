#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 20), one after
# the other, at low CPU priority: the SSE parser, config loading, event ids,
# session ids, the intent API's envelope and the node's own HTTP head
# handling. cargo-fuzz needs nightly features; the stable toolchain gets them
# through RUSTC_BOOTSTRAP, without a sanitizer (the targets are safe Rust:
# libFuzzer finds panics, failed assertions and hangs). A crash leaves its
# input in fuzz/artifacts/TARGET/ and fails the script; make it a regression
# test in the normal suite before fixing it.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# FUZZ_DEV=1 builds the targets unoptimized (with debug assertions and
# overflow checks): minutes less to build, fewer runs per second; CI's short
# run uses it, the long local runs keep the optimized build.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-20}
shift || true
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi

build=(-O)
[ "${FUZZ_DEV:-0}" = 1 ] && build=(--dev)
echo "==> building ${#targets[@]} fuzz targets (${build[*]})"
nice -n 10 cargo fuzz build "${build[@]}" --sanitizer none

for target in "${targets[@]}"; do
  corpus=corpus/$target
  mkdir -p "$corpus"
  seeds=()
  [ -d "seeds/$target" ] && seeds+=("seeds/$target")
  echo "==> fuzzing $target for ${seconds}s"
  log=$CARGO_TARGET_DIR/fuzz-$target.log
  if ! nice -n 10 cargo fuzz run "${build[@]}" --sanitizer none "$target" "$corpus" "${seeds[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    echo "FAIL: $target crashed; the input is in fuzz/artifacts/$target/:" >&2
    tail -40 "$log" >&2
    exit 1
  fi
  grep -E '^#[0-9]+ +DONE|^stat::(number_of_executed_units|peak_rss_mb)' "$log" || true
done
echo "==> fuzzing: no crash"
