#!/usr/bin/env bash
# Run a wasm32-wasip1 command module in node (V8): node-run.sh file.wasm [args...]
# Non-WASI imports (e.g. proxy-wasm's `env.proxy_*` in the filter's test binary) get stubs
# that return 0; code under test must not depend on them.
exec node --no-warnings -e '
const { WASI } = require("node:wasi"); const fs = require("node:fs");
const wasi = new WASI({ version: "preview1", args: ["bench", ...process.argv.slice(2)] });
const m = new WebAssembly.Module(fs.readFileSync(process.argv[1]));
const imports = wasi.getImportObject();
for (const i of WebAssembly.Module.imports(m)) {
  if (i.kind !== "function" || imports[i.module]?.[i.name]) continue;
  (imports[i.module] ??= {})[i.name] = () => 0;
}
const inst = new WebAssembly.Instance(m, imports);
// Cargo test binaries of a cdylib crate may also export `_initialize`; WASI.start refuses both.
wasi.start({ exports: { memory: inst.exports.memory, _start: inst.exports._start } });
' "$@"
