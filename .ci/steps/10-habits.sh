#!/usr/bin/env bash
# Habits of a maintained crate (issue 15):
#  1. every crate's rust-version is at least what its dependencies declare;
#  2. the docs build with warnings denied (broken intra-doc links fail);
#  3. wharf-core's optional `log` and `defmt` features build on the host.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TERM_COLOR=never

echo "-- rust-version against the locked dependency tree"
python3 .ci/tools/msrv.py --report

echo "-- cargo doc --workspace --no-deps (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features

echo "-- wharf-core features on the host: log, defmt, both"
cargo check -p wharf-core --features log
cargo check -p wharf-core --features defmt
cargo check -p wharf-core --features log,defmt
