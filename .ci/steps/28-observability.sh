#!/usr/bin/env bash
# wharf-tokio's observability features (issue 18.4), which the workspace's
# default test run leaves off:
#  1. clippy with `tracing` and `metrics` together;
#  2. the metrics test (a recorder's values against the pool's own counts)
#     and the tracing test (captured events of a scripted run);
#  3. the warm path still allocates nothing with both features on.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TERM_COLOR=never

# (clippy with these features: 25-http.sh, with every optional feature.)
echo "-- metrics, tracing and allocation tests with the features on"
cargo test --release -p wharf-tokio --features tracing,metrics \
  --test metrics --test tracing --test alloc --test cluster_alloc
