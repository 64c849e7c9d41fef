#!/usr/bin/env bash
# Run the RS256 verification micro-benchmark inside Envoy's own V8 (the runtime the filter uses):
# the bench lib built as a proxy-wasm plugin, loaded as a singleton bootstrap WasmService; it
# logs its table at startup, then Envoy is stopped.
# Usage: bench/rsa-verify/envoy.sh [candidate-substring|all] [rounds]
#   (the candidate filter is one word: e.g. `crypto-bigint`, `ring`, `0.9`)
#   ENVOY_BIN (default: the repository's .venv/bin/envoy); CPUBITS=64 and RING=1 as in run.sh.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/rsa-verify-bench}
dir=$CARGO_TARGET_DIR/envoy${CPUBITS:+-cpubits$CPUBITS}
features=envoy
if [[ "${RING:-}" == 1 ]]; then
  features=envoy,ring
  export CC_wasm32_wasip1=${CC_wasm32_wasip1:-clang-14} AR_wasm32_wasip1=${AR_wasm32_wasip1:-llvm-ar}
fi
if [[ -n "${CPUBITS:-}" ]]; then
  export RUSTFLAGS="--cfg cpubits=\"$CPUBITS\""
fi
CARGO_TARGET_DIR=$dir cargo build -q --release --lib --target wasm32-wasip1 --features $features
wasm=$dir/wasm32-wasip1/release/rsa_verify_bench.wasm
envoy=${ENVOY_BIN:-$root/.venv/bin/envoy}
work=$(mktemp -d)
cat > "$work/bench.yaml" <<YAML
bootstrap_extensions:
- name: envoy.bootstrap.wasm
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.wasm.v3.WasmService
    singleton: true
    config:
      name: rsa_verify_bench
      vm_config:
        vm_id: rsa_verify_bench
        runtime: envoy.wasm.runtime.v8
        code: { local: { filename: "$wasm" } }
        configuration:
          "@type": type.googleapis.com/google.protobuf.StringValue
          value: "${1:-all} ${2:-5}"
YAML
"$envoy" -c "$work/bench.yaml" --concurrency 1 -l warning --disable-hot-restart --base-id $((RANDOM + 1000)) \
  > "$work/envoy.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 600); do
  grep -q "rsa-verify-bench: done" "$work/envoy.log" && break
  kill -0 $pid 2>/dev/null || { cat "$work/envoy.log"; exit 1; }
  sleep 1
done
echo "## Envoy $("$envoy" --version | grep -o '[0-9a-f]*/[0-9.]*/[A-Za-z]*/[A-Z]*' | head -1), V8, wall clock${CPUBITS:+ (cpubits $CPUBITS)}"
sed -n 's/.*rsa-verify-bench: //p' "$work/envoy.log" | grep '^|'
