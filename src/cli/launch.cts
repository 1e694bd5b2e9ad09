#!/usr/bin/env node
// The `kocache` program, started by dist/bin/kocache (src/cli/kocache.sh). It prepares the process,
// then runs the bundled CLI (dist/bin/cli.cjs) from V8's code cache.
//
// CommonJS on purpose: it runs before anything has touched libuv's thread pool, which is created on
// first use with UV_THREADPOOL_SIZE threads (4 by default) and never resized. Compression runs on
// that pool (src/compress/gzip.ts), so with the default a 16-core machine would gzip on 4. A value
// the user set is kept.
import { readFileSync, writeFileSync } from 'node:fs';
import Module from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { Script } from 'node:vm';

/** Threads for libuv's pool: a block per core in flight plus one queued, and room for file I/O. */
export function threadPoolSize(cores: number): number {
  return Math.min(1024, Math.max(4, cores + 2));
}

/**
 * Runs the bundle with the code cache written beside it at build time (scripts/bundle-cli.mjs):
 * V8 then skips parsing and compiling the functions a run uses. Node 20 has no compile cache of its
 * own. Measured on a cache hit (median of 9): ~200 ms run as a plain CommonJS file, ~150 ms from
 * the code cache, ~205 ms as the ES-module bundle it replaced (Node's ESM loader is itself ~20
 * modules to load).
 * A cache V8 rejects (another Node, other V8 flags) costs nothing but the speed: V8 compiles as usual.
 */
export function runBundle(file: string, cacheFile: string, writeCache: boolean): void {
  // ASCII by construction (scripts/bundle-cli.mjs checks): Latin-1 makes a one-byte string directly.
  const source = readFileSync(file, 'latin1');
  let cachedData: Buffer | undefined;
  if (!writeCache) {
    try {
      cachedData = readFileSync(cacheFile);
    } catch {
      // no cache (a build without one): compile as usual
    }
  }
  const script = new Script(Module.wrap(source), { filename: file, ...(cachedData ? { cachedData } : {}) });
  // Seen by KOCACHE_TRACE (src/util/trace.ts keeps its counters on this symbol).
  const trace = new Map<string, number>([[cachedData && !script.cachedDataRejected ? 'codecache.used' : 'codecache.compiled', 1]]);
  (globalThis as Record<symbol, unknown>)[Symbol.for('kocache.trace')] = trace;
  // V8's cache tag: a hash of its version and flags. Equal to a plain `node`'s when no V8 flag was
  // set, which is what lets V8 take Node's code cache of its built-in modules (see below); traced
  // at exit, before the trace is printed, so tests can hold every command that needs no flag to it.
  if (process.env['KOCACHE_TRACE']) process.once('exit', () => trace.set('v8.tag', (require('node:v8') as typeof import('node:v8')).cachedDataVersionTag()));
  const mod = new Module(file, module);
  mod.filename = file;
  mod.paths = (Module as unknown as { _nodeModulePaths(dir: string): string[] })._nodeModulePaths(dirname(file));
  const wrapper = script.runInThisContext() as (exports: unknown, require: NodeJS.Require, module: Module, filename: string, dirname: string) => void;
  // The cache is written at exit, once the run has compiled the functions it needed.
  if (writeCache) process.once('exit', () => writeFileSync(cacheFile, script.createCachedData()));
  wrapper.call(mod.exports, mod.exports, Module.createRequire(file), mod, file, dirname(file));
}

if (require.main === module) {
  process.env['UV_THREADPOOL_SIZE'] ??= String(threadPoolSize(availableParallelism()));
  // The shell launcher (kocache.sh) kept NODE_EXTRA_CA_CERTS from Node's start-up; programs
  // kocache runs (credential helpers) still get it. src/remote/extra-ca.ts loads it when needed.
  const deferredCa = process.env['KOCACHE_DEFERRED_CA_CERTS'];
  if (deferredCa) process.env['NODE_EXTRA_CA_CERTS'] ??= deferredCa;
  // No V8 flags here or in the shell launcher: V8 takes a code cache only when its flags are the
  // ones the cache was made with, and that holds for Node's own cache of its built-in modules
  // too. With one flag given (--liftoff-only, which only registry commands set now, and later:
  // src/cli/wasm.ts), each built-in was compiled from source: loading crypto and fs/promises took
  // ~12 ms instead of ~4.5 ms.
  const writeCache = process.env['KOCACHE_WRITE_CODE_CACHE'] === '1';
  delete process.env['KOCACHE_WRITE_CODE_CACHE'];
  runBundle(join(__dirname, 'cli.cjs'), join(__dirname, 'cli.cjs.codecache'), writeCache);
}
