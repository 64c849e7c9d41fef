#!/usr/bin/env bash
# Run a wasm32-wasip1 command module in node (V8): node-run.sh file.wasm [args...]
exec node --no-warnings -e '
const { WASI } = require("node:wasi"); const fs = require("node:fs");
const wasi = new WASI({ version: "preview1", args: ["bench", ...process.argv.slice(2)] });
const m = new WebAssembly.Module(fs.readFileSync(process.argv[1]));
wasi.start(new WebAssembly.Instance(m, wasi.getImportObject()));
' "$@"
