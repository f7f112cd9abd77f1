#!/usr/bin/env bash
# Fuzz smoke: the cargo-fuzz target `fuzz/fuzz_targets/ops.rs` (the shared
# operation language of pool-core/tests/common/, invariants and the safety,
# liveness and fairness properties checked after every input), built with
# libFuzzer's coverage instrumentation as cargo-fuzz builds it, but on stable
# and without installing cargo-fuzz: the flags below are the ones
# `cargo fuzz build --sanitizer none` passes. It starts from the committed
# corpus (copied aside, so the run does not grow the repository) and runs
# for a fixed time: plain, then differential against the reference models
# (`WHARF_FUZZ_MODEL=1`). A crash fails CI and leaves its input in
# target/fuzz-artifacts/ (reproduce with the binary and that file).
set -euo pipefail
cd "$(dirname "$0")/../../fuzz"
export CARGO_TERM_COLOR=never
secs="${WHARF_FUZZ_SECS:-20}"
host=x86_64-unknown-linux-gnu
# --target keeps the flags off build scripts (a build script linked with
# sanitizer-coverage and no libFuzzer does not link).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/../target}/fuzz"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
cargo build --release --locked --target "$host" --bin ops
bin="$CARGO_TARGET_DIR/$host/release/ops"
work=$(mktemp -d)
art="$CARGO_TARGET_DIR/../fuzz-artifacts"
mkdir -p "$art"
cp corpus/ops/* "$work/"
# libFuzzer exits non-zero on a crash, a panic (abort) or a leak.
run() {
  local rc=0
  "$@" >"$work/log" 2>&1 || rc=$?
  grep -E 'INITED|DONE|Done|ERROR|panicked|SUMMARY' "$work/log" || true
  if [ "$rc" -ne 0 ]; then tail -n 80 "$work/log"; echo "fuzz: exit $rc; inputs in $art"; exit "$rc"; fi
}
echo "-- fuzz: ops, ${secs} s from the committed corpus ($(ls corpus/ops | wc -l) inputs)"
run "$bin" "$work" -max_total_time="$secs" -max_len=512 -artifact_prefix="$art/"
echo "-- fuzz: ops against the reference models (WHARF_FUZZ_MODEL=1), ${secs} s"
WHARF_FUZZ_MODEL=1 run "$bin" "$work" -max_total_time="$secs" -max_len=512 -artifact_prefix="$art/"
rm -rf "$work"
