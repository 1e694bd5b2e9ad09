#!/usr/bin/env node
// The `kocache` program, started by dist/bin/kocache (src/cli/startup/kocache.sh). It prepares the
// process, then runs the bundled CLI (dist/bin/cli.cjs) with compiled code from a cache: Node's
// own compile cache where Node has one (22.1 and later), else V8's code cache made at build time.
// What each saves, and when it can go: docs/performance.md.
//
// CommonJS on purpose: it runs before anything has touched libuv's thread pool, which is created on
// first use with UV_THREADPOOL_SIZE threads (4 by default) and never resized. Compression runs on
// that pool (src/compress/), so with the default a 16-core machine would compress on 4. A value
// the user set is kept.
import { readFileSync, writeFileSync } from 'node:fs';
import Module from 'node:module';
import { availableParallelism, homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Script } from 'node:vm';

/** Threads for libuv's pool: a block per core in flight plus one queued, and room for file I/O. */
export function threadPoolSize(cores: number): number {
  return Math.min(1024, Math.max(4, cores + 2));
}

const OFF_VALUES = new Set(['off', 'none', 'false', '0']);

/**
 * The folder for Node's compile cache: `node-compile-cache` in the kocache cache folder, found as
 * src/cache/location.ts finds it ($KOCACHE, else --cache-dir, else $XDG_CACHE_HOME/kocache or
 * ~/.cache/kocache). Undefined for a throwaway cache (KOCACHE=off, --no-cache): nothing is kept.
 */
export function compileCacheDir(argv: readonly string[], env: NodeJS.ProcessEnv): string | undefined {
  if (argv.includes('--no-cache')) return undefined;
  const fromEnv = env['KOCACHE'];
  if (fromEnv !== undefined && OFF_VALUES.has(fromEnv.toLowerCase())) return undefined;
  let dir: string | undefined = fromEnv || undefined;
  for (let i = 0; !dir && i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if (a === '--cache-dir' && argv[i + 1]) dir = argv[i + 1];
    else if (a.startsWith('--cache-dir=')) dir = a.slice('--cache-dir='.length);
  }
  if (!dir) {
    const xdg = env['XDG_CACHE_HOME'];
    dir = join(xdg && xdg.startsWith('/') ? xdg : join(homedir(), '.cache'), 'kocache');
  }
  return join(resolve(dir), 'node-compile-cache');
}

type Trace = Map<string, number>;

function startTrace(name: string): Trace {
  // Seen by KOCACHE_TRACE (src/util/trace.ts keeps its counters on this symbol).
  const trace = new Map<string, number>([[name, 1]]);
  (globalThis as Record<symbol, unknown>)[Symbol.for('kocache.trace')] = trace;
  // V8's cache tag: a hash of its version and flags. Equal to a plain `node`'s when no V8 flag was
  // set, which is what lets V8 take Node's code cache of its built-in modules (see below); traced
  // at exit, before the trace is printed, so tests can hold every command that needs no flag to it.
  if (process.env['KOCACHE_TRACE']) process.once('exit', () => trace.set('v8.tag', (require('node:v8') as typeof import('node:v8')).cachedDataVersionTag()));
  return trace;
}

/**
 * Node 22.1+: its compile cache, kept in the kocache cache folder (made by the first run of each
 * Node version, then read by every run). True when it is on; then the bundle is an ordinary
 * `require`. Off where Node has none, where NODE_DISABLE_COMPILE_CACHE says so, or where the
 * folder cannot be used: then the build-time code cache serves.
 */
function nodeCompileCache(dir: string | undefined): boolean {
  const enable = (Module as { enableCompileCache?: (dir?: string) => { status: number } }).enableCompileCache;
  if (!dir || typeof enable !== 'function') return false;
  const constants = (Module as unknown as { constants?: { compileCacheStatus?: Record<string, number> } }).constants?.compileCacheStatus;
  const { status } = enable(dir);
  return status === constants?.['ENABLED'] || status === constants?.['ALREADY_ENABLED'];
}

/** The build-time code cache's file: V8 takes a cache only from its own version. */
export function codeCacheFile(dir: string, v8Version = process.versions.v8): string {
  return join(dir, `cli.cjs.v8-${v8Version}.codecache`);
}

/**
 * Runs the bundle with `cachedData`, the code cache made at build time (scripts/bundle-cli.mjs)
 * by the same V8: V8 then skips parsing and compiling the functions a run uses. A cache V8
 * rejects (other V8 flags) costs nothing but the speed: V8 compiles as usual. With
 * `writeCacheTo`, the cache is made by this run instead, at its exit.
 */
export function runBundle(file: string, cachedData: Buffer | undefined, writeCacheTo?: string): void {
  // ASCII by construction (scripts/bundle-cli.mjs checks): Latin-1 makes a one-byte string directly.
  const source = readFileSync(file, 'latin1');
  const script = new Script(Module.wrap(source), { filename: file, ...(cachedData ? { cachedData } : {}) });
  startTrace(cachedData && !script.cachedDataRejected ? 'codecache.used' : 'codecache.compiled');
  const mod = new Module(file, module);
  mod.filename = file;
  const wrapper = script.runInThisContext() as (exports: unknown, require: NodeJS.Require, module: Module, filename: string, dirname: string) => void;
  // The cache is written at exit, once the run has compiled the functions it needed.
  if (writeCacheTo) process.once('exit', () => writeFileSync(writeCacheTo, script.createCachedData()));
  wrapper.call(mod.exports, mod.exports, Module.createRequire(file), mod, file, dirname(file));
}

function readIfThere(file: string): Buffer | undefined {
  try {
    return readFileSync(file);
  } catch {
    return undefined;
  }
}

if (require.main === module) {
  process.env['UV_THREADPOOL_SIZE'] ??= String(threadPoolSize(availableParallelism()));
  // The shell launcher (kocache.sh) kept NODE_EXTRA_CA_CERTS from Node's start-up; programs
  // kocache runs (credential helpers) still get it. src/remote/extra-ca.ts loads it when needed.
  const deferredCa = process.env['KOCACHE_DEFERRED_CA_CERTS'];
  if (deferredCa) process.env['NODE_EXTRA_CA_CERTS'] ??= deferredCa;
  // No V8 flags here or in the shell launcher: V8 takes a code cache only when its flags are the
  // ones the cache was made with, and that holds for Node's own cache of its built-in modules
  // too (src/cli/startup/wasm.ts sets the one flag registry commands need, late).
  const writeCache = process.env['KOCACHE_WRITE_CODE_CACHE'] === '1';
  delete process.env['KOCACHE_WRITE_CODE_CACHE'];
  const bundle = join(__dirname, 'cli.cjs');
  const codeCache = codeCacheFile(__dirname);
  // The build-time cache when this V8 made it (measured faster than Node's compile cache, which
  // holds only what V8 compiled before the code ran); else Node's compile cache where Node has one.
  const cachedData = writeCache ? undefined : readIfThere(codeCache);
  if (!writeCache && !cachedData && nodeCompileCache(compileCacheDir(process.argv.slice(2), process.env))) {
    startTrace('compilecache.on');
    require(bundle);
  } else {
    runBundle(bundle, cachedData, writeCache ? codeCache : undefined);
  }
}
