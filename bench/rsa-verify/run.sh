#!/usr/bin/env bash
# Build the RS256 verify micro-benchmark natively and for wasm32-wasip1, run both (wasm in node = V8).
# Usage: bench/rsa-verify/run.sh [candidate-substring]   (RING=1 adds ring; needs clang-14)
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
feat=()
if [[ "${RING:-}" == 1 ]]; then
  feat=(--features ring)
  export CC_wasm32_wasip1=${CC_wasm32_wasip1:-clang-14} AR_wasm32_wasip1=${AR_wasm32_wasip1:-llvm-ar}
fi
cargo build -q --release "${feat[@]}"
cargo build -q --release --target wasm32-wasip1 "${feat[@]}"
echo "## native"; "$CARGO_TARGET_DIR/release/rsa-verify-bench" "$@"
echo "## wasm32-wasip1 in node $(node --version) (V8)"
node --no-warnings -e '
const { WASI } = require("node:wasi"); const fs = require("node:fs");
const wasi = new WASI({ version: "preview1", args: ["bench", ...process.argv.slice(2)] });
const m = new WebAssembly.Module(fs.readFileSync(process.argv[1]));
wasi.start(new WebAssembly.Instance(m, wasi.getImportObject()));
' "$CARGO_TARGET_DIR/wasm32-wasip1/release/rsa-verify-bench.wasm" "$@"
