#!/usr/bin/env bash
# Differential test of the cluster layer and the host hooks (SEMANTICS.md §12)
# against the reference models in pool-core/tests/common/ (the shared harness
# with its cluster layer).
set -euo pipefail
cd "$(dirname "$0")/../.."
# A fixed seed, as the pool model's in 30-model-miri.sh (a failure reproduces;
# other seeds: set WHARF_CLUSTER_MODEL_SEED).
WHARF_CLUSTER_MODEL_SEED="${WHARF_CLUSTER_MODEL_SEED:-20261121}" \
  cargo test --release -p wharf-core --test model_cluster -- --nocapture
