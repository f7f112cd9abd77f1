#!/usr/bin/env bash
# The HTTP client (issue 13): wharf-tokio's features `http` and `rustls`.
#  1. clippy with every optional feature of wharf-tokio, the facade with them;
#  2. (the HTTP tests on loopback, HTTP/1.1, HTTP/2, TLS and the retry rules,
#     the module's unit tests and doc-tests, run in the workspace's test run);
#  3. the README's HTTP snippet is the code of backend-tokio/examples/http_client.rs
#     (with the facade's path `wharf::tokio` for `wharf_tokio`), and it runs;
#  4. the comparison with hyper-util's legacy Client runs at a small size
#     (its table in docs/PERFORMANCE.md is measured at full size).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TERM_COLOR=never
. .ci/tools/example.sh
start=$(date +%s)

echo "-- wharf-tokio with every optional feature (http, rustls, tracing, metrics): clippy"
cargo clippy -p wharf-tokio --all-targets --features http,rustls,tracing,metrics -- -D warnings
echo "-- facade with http and rustls"
cargo check -p wharf --features rustls

# The HTTP tests (http_h1, http_h2, http_tls, http_retry), the module's unit
# tests and doc-tests ran in the workspace's test run: the facade's
# dev-dependency turns `http` and `rustls` on for it. Here, only a check
# that they did not compile to nothing.
grep -q 'features = \["http", "rustls"' Cargo.toml || { echo "the workspace test run no longer has http and rustls"; exit 1; }

echo "-- README snippet = backend-tokio/examples/http_client.rs"
python3 - <<'PY'
import re, sys
code = open("backend-tokio/examples/http_client.rs").read()
snippet = code.split("// readme-http begin\n", 1)[1].split("// readme-http end", 1)[0]
snippet = snippet.replace("wharf_tokio::", "wharf::tokio::")
readme = open("README.md").read()
m = re.search(r"<!-- readme-http[^\n]*-->\n```rust\n(.*?)```", readme, re.S)
if not m:
    sys.exit("README: no readme-http block")
if m.group(1) != snippet:
    sys.exit("README's HTTP snippet differs from backend-tokio/examples/http_client.rs")
print("README snippet matches backend-tokio/examples/http_client.rs")
PY
example http_client -p wharf-tokio --features http,rustls

echo "-- Wharf vs hyper-util (small size)"
out=$(timeout 300 bash -c '. .ci/tools/example.sh; example http_vs_hyper_util -p wharf-tokio --features http,rustls -- --rounds 3 --secs 0.2')
echo "$out"
echo "$out" | grep -q '^| HTTP/2.0 | 256 | hyper-util' || { echo "comparison table incomplete"; exit 1; }

echo "-- 25-http took $(( $(date +%s) - start )) s"
