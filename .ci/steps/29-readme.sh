#!/usr/bin/env bash
# The README's snippets are doctests of the facade (src/lib.rs includes
# README.md when both backends are on): the tokio snippet runs against a
# loopback echo server, the embassy snippet compiles (no_run).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TERM_COLOR=never

echo "-- README snippets (cargo test -p wharf --doc --features tokio,embassy)"
log=${CARGO_TARGET_DIR:-target}/ci-tests.log
if [ -f "$log" ] && grep -q "src/lib.rs - ReadmeDoctests" "$log"; then
  # Ran in the workspace's test run (the facade's dev-dependency on itself
  # turns tokio and embassy on): no rebuild.
  out=$(grep -E "src/lib.rs - ReadmeDoctests" "$log")
else
  out=$(cargo test -p wharf --doc --features tokio,embassy 2>&1) || { echo "$out"; exit 1; }
fi
echo "$out" | grep -E "ReadmeDoctests|test result" || true
echo "$out" | grep -q "src/lib.rs - ReadmeDoctests" || { echo "README doctests did not run"; exit 1; }
