#!/usr/bin/env bash
# Embedded checks (issue 5), on a fresh Debian machine as root:
#  1. builds the Cortex-M4 firmware example (wharf-embassy + defmt) and prints
#     its flash and static RAM;
#  2. runs the core's behaviour scenarios on a Cortex-M4 under QEMU
#     (mps2-an386) and fails unless the summary line says 0 failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TERM_COLOR=never

echo "-- toolchain: thumbv7em-none-eabihf, thumbv6m-none-eabi"
rustup target add thumbv7em-none-eabihf thumbv6m-none-eabi

echo "-- qemu-system-arm"
if ! command -v qemu-system-arm >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends qemu-system-arm >/dev/null
fi
qemu-system-arm --version | head -n 1

echo "-- wharf-embassy for thumbv7em-none-eabihf (no_std, defmt)"
# (run from the crate's folder: its .cargo/config.toml sets the target and linker scripts)
(cd examples/firmware && CARGO_TARGET_DIR="$ROOT/examples/firmware/target" cargo build --release)
ELF="$ROOT/examples/firmware/target/thumbv7em-none-eabihf/release/wharf-firmware-example"
echo "firmware example ($ELF):"
python3 examples/firmware/tools/elf_size.py "$ELF" --wharf-state WHARF_STATE_SIZES

echo "-- wharf-embassy for Cortex-M0 (thumbv6m-none-eabi: no compare-and-swap atomics)"
cargo check -p wharf-embassy --target thumbv6m-none-eabi

echo "-- wharf-core scenarios on Cortex-M4 (qemu mps2-an386)"
OUT=$(mktemp)
status=0
(
  cd firmware-tests
  CARGO_TARGET_DIR="$ROOT/firmware-tests/target" timeout 300 cargo run --release
) 2>&1 | tee "$OUT" || status=$?
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$OUT" | tail -n 1 || true)
rm -f "$OUT"
if [ -z "$summary" ]; then
  echo "QEMU scenarios: no summary line (crash or hang?)" >&2
  exit 1
fi
failed=$(echo "$summary" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed$/\1/')
if [ "$failed" -gt 0 ] || [ "$status" -ne 0 ]; then
  echo "QEMU scenarios failed: $summary (exit $status)" >&2
  exit 1
fi
echo "QEMU scenarios OK (exit 0, none failed)"
