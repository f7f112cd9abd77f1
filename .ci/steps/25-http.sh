#!/usr/bin/env bash
# The HTTP client (issue 13): wharf-tokio's features `http` and `rustls`.
#  1. clippy with the features (and with `tracing`), the facade with them;
#  2. the HTTP tests on loopback (HTTP/1.1, HTTP/2, TLS, the retry rules),
#     the module's unit tests and doc-tests;
#  3. the README's HTTP snippet is the code of backend-tokio/examples/http_client.rs
#     (with the facade's path `wharf::tokio` for `wharf_tokio`), and it runs;
#  4. the comparison with hyper-util's legacy Client runs at a small size
#     (its table in docs/PERFORMANCE.md is measured at full size).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TERM_COLOR=never
start=$(date +%s)

echo "-- wharf-tokio with http, rustls (and tracing): clippy"
cargo clippy -p wharf-tokio --all-targets --features http,rustls -- -D warnings
cargo clippy -p wharf-tokio --all-targets --features http,rustls,tracing -- -D warnings
echo "-- facade with http and rustls"
cargo check -p wharf --features rustls

echo "-- HTTP tests (loopback servers of wharf-test-servers)"
cargo test --release -p wharf-tokio --features http,rustls \
  --lib --test http_h1 --test http_h2 --test http_tls --test http_retry
cargo test --release -p wharf-tokio --features http,rustls --doc http

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
cargo run --release -p wharf-tokio --example http_client --features http,rustls

echo "-- Wharf vs hyper-util (small size)"
out=$(timeout 300 cargo run --release -p wharf-tokio --features http,rustls --example http_vs_hyper_util -- --rounds 3 --secs 0.2)
echo "$out"
echo "$out" | grep -q '^| HTTP/2.0 | 256 | hyper-util' || { echo "comparison table incomplete"; exit 1; }

echo "-- 25-http took $(( $(date +%s) - start )) s"
