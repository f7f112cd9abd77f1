# Sourced by CI steps. `example NAME [cargo run args...] -- [program args...]`
# runs the example binary the workspace's test run (`cargo test --workspace
# --release`, run before the steps) already built in target/release/examples/,
# so a step does not rebuild the dependency tree with another feature set;
# without it (a step run on its own), it falls back to `cargo run --release`.
example() {
  local name=$1; shift
  local cargo_args=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do cargo_args+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  local dir=${CARGO_TARGET_DIR:-target}/release/examples
  if [ -x "$dir/$name" ] && [ -z "${CI_REBUILD_EXAMPLES:-}" ]; then
    "$dir/$name" "$@"
  else
    cargo run --release "${cargo_args[@]}" --example "$name" -- "$@"
  fi
}
