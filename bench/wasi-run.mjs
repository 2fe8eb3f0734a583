// Runs a wasm32-wasip1 program (examples/stages.rs) under Node's V8 for `make bench-stages`.
// Usage: node --no-liftoff bench/wasi-run.mjs <module.wasm> [args...]
//
// The library linked into the program carries jwt-guard's Envoy adapter, which imports
// proxy-wasm host calls and exports `_initialize`; the stages never make a host call, so
// each import is a function that throws, and only `_start` and `memory` go to WASI.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';

const wasi = new WASI({ version: 'preview1', args: process.argv.slice(2), env: {} });
const module = await WebAssembly.compile(await readFile(process.argv[2]));
const imports = wasi.getImportObject();
imports.env = {};
for (const { module: from, name } of WebAssembly.Module.imports(module)) {
  if (from === 'env') {
    imports.env[name] = () => {
      throw new Error(`unexpected host call ${name}`);
    };
  }
}
const instance = await WebAssembly.instantiate(module, imports);
const { _start, memory } = instance.exports;
wasi.start({ exports: { _start, memory } });
