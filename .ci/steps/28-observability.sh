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
# The workspace's test run has `tracing` and `metrics` on for wharf-tokio (the
# facade's dev-dependency): its log shows these tests ran; run on its own
# (no log), this step runs them.
log=${CARGO_TARGET_DIR:-target}/ci-tests.log
if [ -f "$log" ] && grep -q 'features = \["http", "rustls", "tracing", "metrics"\]' Cargo.toml; then
  for t in metrics tracing alloc cluster_alloc; do
    grep -q "Running tests/$t.rs" "$log" || { echo "tests/$t.rs did not run in the workspace's test run"; exit 1; }
  done
  echo "metrics, tracing, alloc and cluster_alloc ran with tracing,metrics in the workspace's test run"
else
  cargo test --release -p wharf-tokio --features tracing,metrics \
    --test metrics --test tracing --test alloc --test cluster_alloc
fi
