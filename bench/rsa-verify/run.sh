#!/usr/bin/env bash
# Build the RS256 verification micro-benchmark natively and for wasm32-wasip1, then run both
# (the wasm one in node, i.e. V8, like Envoy's wasm runtime). See README.md.
# Usage: bench/rsa-verify/run.sh [candidate-substring]
#   ROUNDS=5     interleaved rounds per candidate (the minimum and median are printed)
#   CPUBITS=64   build the wasm with --cfg cpubits="64" (crypto-bigint's own wasm32 choice);
#                unset, the repository's .cargo/config.toml applies (32-bit limbs, as the filter)
#   RING=1       add ring 0.17 (needs clang-14 and llvm-ar for the wasm build)
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/../../target/rsa-verify-bench}
feat=()
if [[ "${RING:-}" == 1 ]]; then
  feat=(--features ring)
  export CC_wasm32_wasip1=${CC_wasm32_wasip1:-clang-14} AR_wasm32_wasip1=${AR_wasm32_wasip1:-llvm-ar}
fi
cargo build -q --release "${feat[@]}"
wasm_dir=$CARGO_TARGET_DIR
if [[ -n "${CPUBITS:-}" ]]; then
  wasm_dir=$CARGO_TARGET_DIR/cpubits$CPUBITS
  RUSTFLAGS="--cfg cpubits=\"$CPUBITS\"" CARGO_TARGET_DIR=$wasm_dir \
    cargo build -q --release --target wasm32-wasip1 "${feat[@]}"
else
  cargo build -q --release --target wasm32-wasip1 "${feat[@]}"
fi
echo "## native"
"$CARGO_TARGET_DIR/release/rsa-verify-bench" "$@"
echo "## wasm32-wasip1${CPUBITS:+ (cpubits $CPUBITS)} in node $(node --version) (V8)"
./node-run.sh "$wasm_dir/wasm32-wasip1/release/rsa-verify-bench.wasm" "$@"
