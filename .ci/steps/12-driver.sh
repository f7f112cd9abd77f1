#!/usr/bin/env bash
# Issue 11: the driver both backends build on (pool-driver/).
#  1. its conformance suite against a scripted fake I/O (also part of the
#     workspace tests; run here on its own so its count is visible);
#  2. it builds for Cortex-M0 (thumbv6m-none-eabi: no compare-and-swap
#     atomics, no alloc) and, with defmt, for Cortex-M4F.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TERM_COLOR=never

echo "-- wharf-driver: conformance suite"
cargo test --release -p wharf-driver --test conformance

echo "-- wharf-driver for thumbv6m-none-eabi (no_std, no alloc, no CAS atomics)"
rustup target add thumbv6m-none-eabi thumbv7em-none-eabihf
cargo build -p wharf-driver --no-default-features --target thumbv6m-none-eabi
cargo build -p wharf-driver --features defmt --target thumbv7em-none-eabihf
