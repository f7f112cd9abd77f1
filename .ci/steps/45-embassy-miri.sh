#!/usr/bin/env bash
# Issue 11: Miri over wharf-embassy's unsafe code (all of it in
# backend-embassy/src/state.rs). `tests/miri.rs` exercises every unsafe block
# (the state's MaybeUninit tables and shared part written by `new`, socket
# buffers lent on every connect and given back on every close) over two real
# embassy-net stacks. Installs what it needs (nightly's miri + rust-src).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TERM_COLOR=never

echo "-- miri: toolchain"
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
rustup +nightly component add miri rust-src
cargo +nightly miri setup

echo "-- miri: wharf-embassy unsafe paths (tests/miri.rs)"
# The state and the stacks' resources are leaked on purpose (firmware keeps
# them in statics), and embassy-time's std driver keeps its alarm thread:
# leaks are not errors here. Stacked Borrows (Miri's default) is checked.
start=$(date +%s)
MIRIFLAGS="${MIRIFLAGS:-} -Zmiri-ignore-leaks" \
  cargo +nightly miri test -p wharf-embassy --test miri
echo "miri (wharf-embassy) took $(( $(date +%s) - start )) s"
