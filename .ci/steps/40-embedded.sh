#!/usr/bin/env bash
# Embedded checks (issue 5), on a fresh Debian machine as root:
#  1. builds the Cortex-M4 firmware example (wharf-embassy + defmt) and prints
#     its flash and static RAM;
#  2. runs the core's behaviour scenarios on a Cortex-M4 under QEMU
#     (mps2-an386) and fails unless the summary line says 0 failed;
#  3. runs wharf-embassy itself under QEMU (firmware-backend/: two
#     embassy-net stacks in one image, the pool's runner, leases; issue 17)
#     the same way, and prints its image size.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TERM_COLOR=never
# The firmware images keep their profiles' debug info (defmt, size reports).
unset CARGO_PROFILE_RELEASE_DEBUG

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
cargo check -p wharf-embassy --features nal --target thumbv6m-none-eabi

# Runs a QEMU image's crate with `cargo run --release` from its folder and
# fails unless it exits 0 with a summary line `<n> passed, 0 failed`.
qemu_run() {
  local dir=$1 what=$2 out status=0 summary failed
  out=$(mktemp)
  (
    cd "$dir"
    CARGO_TARGET_DIR="$ROOT/$dir/target" timeout 300 cargo run --release
  ) 2>&1 | tee "$out" || status=$?
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1 || true)
  rm -f "$out"
  if [ -z "$summary" ]; then
    echo "$what: no summary line (crash or hang?)" >&2
    exit 1
  fi
  failed=$(echo "$summary" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed$/\1/')
  if [ "$failed" -gt 0 ] || [ "$status" -ne 0 ]; then
    echo "$what failed: $summary (exit $status)" >&2
    exit 1
  fi
  echo "$what OK (exit 0, none failed)"
}

echo "-- wharf-core scenarios on Cortex-M4 (qemu mps2-an386)"
qemu_run firmware-tests "QEMU core scenarios"

echo "-- wharf-embassy backend scenarios on Cortex-M4 (qemu mps2-an386)"
start=$(date +%s)
qemu_run firmware-backend "QEMU backend scenarios"
echo "backend scenarios: build and run took $(( $(date +%s) - start )) s"
ELF="$ROOT/firmware-backend/target/thumbv7em-none-eabihf/release/qemu-backend"
echo "backend scenario image ($ELF):"
python3 examples/firmware/tools/elf_size.py "$ELF"
