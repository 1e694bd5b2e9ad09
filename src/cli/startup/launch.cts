#!/usr/bin/env node
// The `kocache` program, started by dist/bin/kocache (src/cli/startup/kocache.sh). It prepares the
// process, then runs the bundled CLI (dist/bin/cli.cjs) with compiled code from a cache: V8's code
// cache made at build time, or for a bundle another Node line built, one made at run time by a hit.
// What each saves, and when it can go: docs/performance.md.
//
// CommonJS on purpose: it runs before anything has touched libuv's thread pool, which is created on
// first use with UV_THREADPOOL_SIZE threads (4 by default) and never resized. Compression runs on
// that pool (src/compress/), so with the default a 16-core machine would compress on 4. A value
// the user set is kept.
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
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
 * The folder for code caches made at run time: `node-compile-cache` in the kocache cache folder, found as
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

/** The build-time code cache's file: V8 takes a cache only from its own version. */
export function codeCacheFile(dir: string, v8Version = process.versions.v8): string {
  return join(dir, `cli.cjs.v8-${v8Version}.codecache`);
}

/**
 * Runs the bundle with `cachedData`, V8's code cache of it made by the same V8: V8 then skips
 * parsing and compiling the functions a run uses. A cache V8 rejects (other V8 flags) costs
 * nothing but the speed: V8 compiles as usual. `before` gets the script before the bundle runs:
 * its `createCachedData()` holds what the run has compiled so far.
 */
export function runBundle(file: string, cachedData: Buffer | undefined, before?: (script: Script) => void): void {
  // ASCII by construction (scripts/bundle-cli.mjs checks): Latin-1 makes a one-byte string directly.
  const source = readFileSync(file, 'latin1');
  const script = new Script(Module.wrap(source), { filename: file, ...(cachedData ? { cachedData } : {}) });
  startTrace(cachedData && !script.cachedDataRejected ? 'codecache.used' : 'codecache.compiled');
  const mod = new Module(file, module);
  mod.filename = file;
  const wrapper = script.runInThisContext() as (exports: unknown, require: NodeJS.Require, module: Module, filename: string, dirname: string) => void;
  before?.(script);
  wrapper.call(mod.exports, mod.exports, Module.createRequire(file), mod, file, dirname(file));
}

/** Whole or not at all, whatever runs beside it; a cache that cannot be written is no error. */
function writeAtomically(file: string, data: Buffer): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(tmp, data);
    renameSync(tmp, file);
  } catch {
    removeIfThere(tmp);
  }
}

function removeIfThere(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // not there, or not ours to remove: either way it is not read again by this run
  }
}

/**
 * The code caches this V8 makes of this bundle at run time, for a bundle another Node line built:
 * in the kocache cache folder, named by V8 version and the bundle file (size and mtime), so an
 * upgraded kocache or another Node never takes another's. `hit` is made by a cache hit, `first`
 * by whatever ran first (replaced by a hit's: see below). Undefined for a throwaway cache or
 * where NODE_DISABLE_COMPILE_CACHE says so.
 */
export function runTimeCodeCacheFiles(bundle: string, argv: readonly string[], env: NodeJS.ProcessEnv): { hit: string; first: string } | undefined {
  if (env['NODE_DISABLE_COMPILE_CACHE']) return undefined;
  const dir = compileCacheDir(argv, env);
  if (!dir) return undefined;
  try {
    const st = statSync(bundle);
    const base = join(dir, `cli.cjs.v8-${process.versions.v8}-${st.size}-${Math.trunc(st.mtimeMs)}`);
    return { hit: `${base}.hit.codecache`, first: `${base}.first.codecache` };
  } catch {
    return undefined;
  }
}

/**
 * A bundle another Node line built, run from a code cache made at run time. Which run makes it
 * decides what it is worth (docs/performance.md, "Node lines"): one made by a cold build made
 * hits slower on Node 24, one made by a hit faster. So the first successful run leaves one, and
 * the first hit (a layer answered from the cache, nothing tarred) replaces it with its own, once.
 */
function runWithRunTimeCache(bundle: string, files: { hit: string; first: string }): void {
  const fromHit = readIfThere(files.hit);
  const fromFirst = fromHit ? undefined : readIfThere(files.first);
  runBundle(bundle, fromHit ?? fromFirst, (script) => {
    const taken = !script.cachedDataRejected;
    let done = false;
    const keep = (hit: boolean) => {
      if (done) return;
      done = true;
      if (hit && !(fromHit && taken)) {
        writeAtomically(files.hit, script.createCachedData());
        removeIfThere(files.first);
      } else if (!hit && !fromHit && !(fromFirst && taken)) {
        writeAtomically(files.first, script.createCachedData());
      }
    };
    // A cache made after a V8 flag changed carries the new flags, and V8 refuses it to a run that
    // starts without them: a registry command (src/cli/startup/wasm.ts) leaves its cache just
    // before it sets one, and none after.
    (globalThis as Record<symbol, unknown>)[Symbol.for('kocache.beforeV8Flags')] = () => keep(false);
    process.once('exit', (code) => {
      if (code !== 0) return;
      const trace = (globalThis as Record<symbol, Map<string, number> | undefined>)[Symbol.for('kocache.trace')];
      keep(Boolean(trace?.get('layer.cached')) && !trace?.get('tar.out'));
    });
  });
}

function readIfThere(file: string): Buffer | undefined {
  try {
    return readFileSync(file);
  } catch {
    return undefined;
  }
}

/**
 * Whether this looks like a fresh runner's publish or build (a registry cache, a cache folder with
 * no stat cache): one that lists and hashes a whole tree before anything else. A first look, from
 * the raw command line; src/cli/startup/hashworker.ts decides, and ends a worker it does not want.
 */
export function looksFresh(argv: readonly string[], env: NodeJS.ProcessEnv): boolean {
  if (argv[0] !== 'publish' && argv[0] !== 'build') return false;
  const end = argv.indexOf('--');
  const flags = end < 0 ? argv : argv.slice(0, end);
  if (!env['KOCACHE_REPO'] && !flags.some((a) => /^--cache-(from|repo)(=|$)/.test(a))) return false;
  const codeCache = compileCacheDir(argv, env);
  return codeCache === undefined || !existsSync(join(dirname(codeCache), 'stat'));
}

/**
 * The hashing worker (src/layer/hashpool.ts) started before the bundle is even read, so that its
 * start-up runs beside the bundle's load: it waits for its source, which hashpool.ts sends. Found
 * by the bundle under a global symbol.
 */
function launchHashWorker(): void {
  if (availableParallelism() < 2) return;
  const { Worker } = require('node:worker_threads') as typeof import('node:worker_threads');
  const boot = `const { parentPort } = require('node:worker_threads');
let booted = false;
parentPort.on('message', (m) => {
  if (booted || typeof m?.kocacheWorkerSource !== 'string') return;
  booted = true;
  new Function('require', m.kocacheWorkerSource)(require);
});`;
  const w = new Worker(boot, { eval: true });
  w.unref();
  (globalThis as Record<symbol, unknown>)[Symbol.for('kocache.hashWorker')] = w;
}

if (require.main === module) {
  process.env['UV_THREADPOOL_SIZE'] ??= String(threadPoolSize(availableParallelism()));
  if (looksFresh(process.argv.slice(2), process.env)) launchHashWorker();
  // The shell launcher (kocache.sh) kept NODE_EXTRA_CA_CERTS from Node's start-up; programs
  // kocache runs (credential helpers) still get it. src/remote/extra-ca.ts loads it when needed.
  const deferredCa = process.env['KOCACHE_DEFERRED_CA_CERTS'];
  if (deferredCa) process.env['NODE_EXTRA_CA_CERTS'] ??= deferredCa;
  // No V8 flags here or in the shell launcher: V8 takes a code cache only when its flags are the
  // ones the cache was made with, and that holds for Node's own cache of its built-in modules
  // too (src/cli/startup/wasm.ts sets the one flag registry commands need, late).
  const writeCache = process.env['KOCACHE_WRITE_CODE_CACHE'] === '1';
  delete process.env['KOCACHE_WRITE_CODE_CACHE'];
  // Seen by src/cli/startup/wasm.ts: no V8 flag in the run that makes the build-time cache.
  if (writeCache) (globalThis as Record<symbol, unknown>)[Symbol.for('kocache.makingCodeCache')] = true;
  const bundle = join(__dirname, 'cli.cjs');
  const codeCache = codeCacheFile(__dirname);
  // The build-time cache when this V8 made it; else one this V8 made of the bundle at run time,
  // kept in the cache folder. Both hold what a whole run compiled, where Node's own compile cache
  // (22.1+) holds only what V8 compiled before the code ran (docs/performance.md).
  const cachedData = writeCache ? undefined : readIfThere(codeCache);
  const runTime = writeCache || cachedData ? undefined : runTimeCodeCacheFiles(bundle, process.argv.slice(2), process.env);
  if (runTime) {
    runWithRunTimeCache(bundle, runTime);
  } else {
    // The build-time cache, made at the exit of a run of a build (scripts/bundle-cli.mjs).
    runBundle(bundle, cachedData, writeCache ? (script) => process.once('exit', () => writeFileSync(codeCache, script.createCachedData())) : undefined);
  }
}
