#!/usr/bin/env bash
# Tokio backend checks (issue 4), after the workspace's fmt/clippy/tests:
#  1. (clippy with the optional features: 25-http.sh, all of them at once);
#  2. the quickstart (the HTTP client against loopback hyper servers that
#     close connections) runs and its machine-readable summary line says
#     errors=0, reuse >= 0.99, requests >= 20000 and h2_max_streams_in_use >= 2.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TERM_COLOR=never
. .ci/tools/example.sh

echo "-- facade with the tokio feature"
cargo check -p wharf --features tokio

echo "-- quickstart (HTTP/1.1 and HTTP/2 servers closing connections, loopback)"
out=$(timeout 120 bash -c '. .ci/tools/example.sh; example quickstart')
echo "$out" | tail -n 12
summary=$(echo "$out" | grep '^summary: ' | tail -n 1)
[ -n "$summary" ] || { echo "no summary line"; exit 1; }
python3 - "$summary" <<'PY'
import sys
fields = dict(kv.split("=", 1) for kv in sys.argv[1].split()[1:])
errors, reuse, requests = int(fields["errors"]), float(fields["reuse"]), int(fields["requests"])
streams = int(fields["h2_max_streams_in_use"])
print(f"quickstart: requests={requests} errors={errors} reuse={reuse} h2_max_streams_in_use={streams}")
if errors != 0 or reuse < 0.99 or requests < 20000 or streams < 2:
    sys.exit("quickstart summary out of bounds")
PY
