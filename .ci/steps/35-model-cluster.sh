#!/usr/bin/env bash
# Differential test of the cluster layer and the host hooks (SEMANTICS.md §12)
# against the reference models in pool-core/tests/common/ (the shared harness
# with its cluster layer).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test --release -p wharf-core --test model_cluster -- --nocapture
