// Loaded here, before the flag: undici loads node:tls at its first TLS connection, and after a V8
// flag change Node's code cache for it is refused (the register in docs/performance.md).
import 'node:tls';
import { setFlagsFromString } from 'node:v8';
import { traceAdd } from '../../util/trace.js';

/**
 * undici parses HTTP with llhttp compiled to WebAssembly (at the first connection). V8 compiles it
 * with its baseline compiler, then re-compiles hot functions in the background, and a process does
 * not exit until those jobs finish, for parsing a few dozen small responses (what that cost: the
 * register in docs/performance.md). Baseline code is what a short run uses anyway.
 *
 * Called once the command's modules, undici among them, are loaded, for the commands that talk to
 * registries (and for --help or a mistyped command, which load every command): after a V8 flag
 * changes, V8 refuses Node's code cache for the built-in modules loaded from then on (see
 * src/cli/startup/launch.cts). The CLI's choice, not the library's: a V8 flag applies to the whole process.
 */
export function baselineWasmOnly(): void {
  // The build's code-cache run (scripts/bundle-cli.mjs) publishes too, so that its cache holds the
  // registry path; a cache made after a flag is refused at every later start, so that run sets none.
  if ((globalThis as Record<symbol, unknown>)[Symbol.for('kocache.makingCodeCache')]) return;
  // The launcher's last chance to keep a code cache V8 will take at the next start (launch.cts).
  ((globalThis as Record<symbol, unknown>)[Symbol.for('kocache.beforeV8Flags')] as (() => void) | undefined)?.();
  setFlagsFromString('--liftoff-only');
  traceAdd('wasm.baseline', 1);
}
