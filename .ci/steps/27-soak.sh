#!/usr/bin/env bash
# The soak with faults on real loopback sockets (issue 16): 20,000 leases
# from 64 tasks against servers that refuse, hang, accept slowly, reset
# mid-lease and close idle connections, with cancellations at random points.
# Fails unless every lease was answered, nothing leaked (pool slots,
# connection objects, file descriptors) and no limit was exceeded (at the
# servers and in the wrapping connector). 10^6 leases: SOAK_LEASES=1000000.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TERM_COLOR=never

echo "-- soak (examples/soak.rs, ${SOAK_LEASES:-20000} leases)"
out=$(timeout 300 bash -c '. .ci/tools/example.sh; example soak -p wharf-tokio')
echo "$out" | tail -n 16
summary=$(echo "$out" | tail -n 1)
python3 - "$summary" <<'PY'
import sys
line = sys.argv[1]
if not line.startswith("summary: "):
    sys.exit(f"no summary line: {line!r}")
f = dict(kv.split("=", 1) for kv in line.split()[1:])
need = ["leases", "granted", "failed", "unanswered", "leaked_slots", "leaked_fds", "over_limit"]
missing = [k for k in need if k not in f]
if missing:
    sys.exit(f"summary lacks {missing}")
bad = {k: f[k] for k in ["unanswered", "leaked_slots", "leaked_fds", "over_limit"] if int(f[k]) != 0}
if bad or int(f["leases"]) == 0 or int(f["granted"]) == 0:
    sys.exit(f"soak failed: {line}")
print(f"soak: {line}")
PY
