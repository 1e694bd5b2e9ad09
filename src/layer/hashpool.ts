import { availableParallelism } from 'node:os';
import { resolve as absolute } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { hashFileSync } from './filehash.js';
import { traceAdd } from '../util/trace.js';

/**
 * Hashes many files on two threads: the main thread and one worker take the next file from a
 * shared counter, each reading synchronously into its own buffer (the fast path for many small
 * files: every async fs call is a thread-pool round trip, and reading on libuv's pool with
 * one-shot `crypto.subtle` digests cost ~3x the CPU of this; docs/registry-cache.md). The worker
 * is a thread, so it is used only where the work outweighs its start-up: a tree with no stat cache
 * (a fresh CI runner) whose fingerprint is needed before anything else can happen.
 */

// CommonJS, run with `eval`: the CLI is one bundled file, so there is no module path to start.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { openSync, readSync, closeSync, fstatSync, readdirSync } = require('node:fs');
const { createHash } = require('node:crypto');
const buf = Buffer.allocUnsafe(1 << 20);
const same = (a, b) => a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs && a.ino === b.ino && a.dev === b.dev;
// Walks a tree on its own, hashing every regular file, until told to stop: each hash comes with
// the file's stat, the same before and after the read, for the main thread to match to its walk.
function scout({ id, root, stop }) {
  const halt = new Int32Array(stop);
  const paths = [];
  const numbers = [];
  const hashes = [];
  let bytes = 0;
  const dirs = [root];
  while (dirs.length > 0 && Atomics.load(halt, 0) === 0) {
    const dir = dirs.pop();
    let list;
    try {
      list = readdirSync(dir, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const d of list) {
      if (Atomics.load(halt, 0) !== 0) break;
      const p = dir === '/' ? '/' + d.name : dir + '/' + d.name;
      if (d.isDirectory()) dirs.push(p);
      if (!d.isFile()) continue;
      try {
        const fd = openSync(p, 'r');
        try {
          const before = fstatSync(fd);
          if (!before.isFile()) continue;
          const h = createHash('sha256');
          let n = 0;
          for (;;) {
            const got = readSync(fd, buf, 0, buf.length, null);
            if (got === 0) break;
            h.update(buf.subarray(0, got));
            n += got;
          }
          bytes += n;
          const after = fstatSync(fd);
          if (!same(before, after)) continue;
          paths.push(p);
          numbers.push(after.size, after.mtimeMs, after.ctimeMs, after.ino, after.dev);
          hashes.push(h.digest('hex'));
        } finally {
          closeSync(fd);
        }
      } catch {}
    }
  }
  // Few big values rather than an object per file: cheap for the main thread to receive.
  const nums = new Float64Array(numbers);
  parentPort.postMessage({ id, scouted: { paths: paths.join('\0'), numbers: nums, hashes: hashes.join('') }, bytes, done: [] }, [nums.buffer]);
}
parentPort.on('message', (m) => {
  if (m.root !== undefined) return scout(m);
  const { id, paths, next } = m;
  const claim = new Int32Array(next);
  const done = [];
  let bytes = 0;
  for (;;) {
    const i = Atomics.add(claim, 0, 1);
    if (i >= paths.length) break;
    const p = paths[i];
    // A raw (non-UTF-8) path, or a file this thread cannot read: the main thread does it, and
    // reports the error if there is one.
    if (p === null) continue;
    try {
      const h = createHash('sha256');
      const fd = openSync(p, 'r');
      try {
        for (;;) {
          const n = readSync(fd, buf, 0, buf.length, null);
          if (n === 0) break;
          h.update(buf.subarray(0, n));
          bytes += n;
        }
      } finally {
        closeSync(fd);
      }
      done.push(i, h.digest('hex'));
    } catch {}
  }
  parentPort.postMessage({ id, done, bytes });
});
`;

/** Below this much to hash, the worker's start-up (~35 ms of CPU) is not worth it. */
const MIN_BYTES = 8 << 20;
const MIN_FILES = 512;

interface Reply {
  id: number;
  /** index, sha256 hex, index, sha256 hex... */
  done: (number | string)[];
  bytes: number;
  /** A scout's answer: absolute paths (NUL between), 5 stat numbers each, 64 hex digits each. */
  scouted?: { paths: string; numbers: Float64Array; hashes: string };
}

export interface FileToHash {
  abs: string;
  /** The path as raw bytes when it is not valid UTF-8 (see walk.ts); hashed on the main thread. */
  rawAbs?: Buffer | undefined;
  size: number;
}

let worker: Promise<Worker | undefined> | undefined;
let users = 0;
let nextId = 0;
const waiting = new Map<number, (r: Reply | undefined) => void>();

// worker_threads is loaded only here: a cache hit never needs it (a test holds it to that). Not
// import(): the bundled CLI runs as a script that has no dynamic import.
function startWorker(): Promise<Worker | undefined> {
  return (worker ??= Promise.resolve().then(() => {
    const { Worker } = process.getBuiltinModule('node:worker_threads');
    const w = new Worker(WORKER_SOURCE, { eval: true });
    w.on('message', (r: Reply) => {
      waiting.get(r.id)?.(r);
      waiting.delete(r.id);
      if (waiting.size === 0) w.unref();
    });
    // A worker that dies leaves its files to the main thread: nothing is lost but time.
    const gone = () => {
      if (current === w) {
        current = undefined;
        worker = undefined;
      }
      for (const resolve of waiting.values()) resolve(undefined);
      waiting.clear();
    };
    w.on('error', gone);
    w.on('exit', gone);
    // Held open only while a job waits for it (a 'message' listener refs it, so this comes after).
    w.unref();
    current = w;
    return w;
  }).catch(() => undefined));
}

/** The worker once started, for `gone` to tell whether it is the one that ended. */
let current: Worker | undefined;

/** Whether a second thread can help at all. */
export function canHashInParallel(): boolean {
  return availableParallelism() > 1;
}

/** A worker left idle this long ends (unref'd: it never holds a process open meanwhile). */
const IDLE_MS = 1000;
let idle: NodeJS.Timeout | undefined;

function holdHashWorker(): () => void {
  users++;
  if (idle) clearTimeout(idle);
  idle = undefined;
  void startWorker();
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    if (--users > 0) return;
    idle = setTimeout(() => {
      idle = undefined;
      if (users > 0 || !worker) return;
      const ending = worker;
      worker = undefined;
      current = undefined;
      void ending.then((w) => w?.terminate());
    }, IDLE_MS);
    idle.unref();
  };
}

/**
 * The sha256 hex of each file, in order. Errors are the same as hashFileSync's: a file the worker
 * could not read is read again here, which throws the error to report. `mainThread: false` leaves
 * the files to the worker (the main thread hashes only what it could not), for tests;
 * `secondThread: false` keeps them all on this thread (the caller knows the worker's start-up
 * would not be repaid).
 */
export async function hashFiles(files: readonly FileToHash[], opts: { mainThread?: boolean; secondThread?: boolean } = {}): Promise<string[]> {
  const out = new Array<string | undefined>(files.length);
  let bytes = 0;
  for (const f of files) bytes += f.size;
  const mainThread = opts.mainThread ?? true;
  if (mainThread && (opts.secondThread === false || !canHashInParallel() || (bytes < MIN_BYTES && files.length < MIN_FILES))) {
    return files.map((f) => hashFileSync(f.abs, f.rawAbs));
  }
  const release = holdHashWorker();
  try {
    const w = await startWorker();
    const next = new SharedArrayBuffer(4);
    const claim = new Int32Array(next);
    const id = nextId++;
    const reply = w
      ? new Promise<Reply | undefined>((resolve) => {
          waiting.set(id, resolve);
          w.ref();
          w.postMessage({ id, paths: files.map((f) => (f.rawAbs ? null : f.abs)), next });
        })
      : Promise.resolve(undefined);
    let mine = 0;
    // mainThread false (tests): the worker takes every file it can; the main thread only the rest.
    while (mainThread) {
      const i = Atomics.add(claim, 0, 1);
      if (i >= files.length) break;
      out[i] = hashFileSync(files[i]!.abs, files[i]!.rawAbs);
      mine++;
    }
    // All done here before the worker took any (it may still be starting): no need to wait for it.
    if (mine < files.length) {
      const r = await reply;
      if (r) {
        traceAdd('file.hash', r.bytes);
        traceAdd('file.read', r.bytes);
        traceAdd('file.hash.worker', r.bytes);
        for (let k = 0; k < r.done.length; k += 2) out[r.done[k] as number] = r.done[k + 1] as string;
      }
    } else if (waiting.delete(id) && waiting.size === 0) {
      w?.unref();
    }
    // Not out.map: it skips the holes, which are the files left to do here.
    return Array.from(out, (h, i) => h ?? hashFileSync(files[i]!.abs, files[i]!.rawAbs));
  } finally {
    release();
  }
}

/** What the worker learned walking a tree by itself (see `scoutTree`). */
export interface Scouted {
  /** The file's sha256 if the worker hashed it and it has the stat it had then. */
  hash(f: { abs: string; size: number; mtimeMs: number; ctimeMs: number; ino: number; dev: number }): string | undefined;
}

export interface Scout {
  /** Stops the walk and gives what was hashed so far. */
  stop(): Promise<Scouted>;
}

/**
 * Starts the worker walking `root` and hashing its files while the main thread walks it too
 * (synchronously, so the worker would otherwise wait): a fresh runner's tree is half hashed by the
 * time its listing is known. A hash is used only for a file whose stat, as the main thread's walk
 * took it, is the one the worker saw before and after reading it.
 */
export async function scoutTree(root: string): Promise<Scout | undefined> {
  if (!canHashInParallel()) return undefined;
  const release = holdHashWorker();
  const w = await startWorker();
  if (!w) {
    release();
    return undefined;
  }
  const stopFlag = new SharedArrayBuffer(4);
  const id = nextId++;
  // Not held open meanwhile: a build that ends another way (an error) must not wait for the walk.
  const reply = new Promise<Reply | undefined>((resolve) => {
    waiting.set(id, resolve);
    w.postMessage({ id, root: absolute(root), stop: stopFlag });
  });
  return {
    async stop() {
      Atomics.store(new Int32Array(stopFlag), 0, 1);
      if (waiting.has(id)) w.ref();
      const r = await reply;
      release();
      const byPath = new Map<string, number>();
      if (r?.scouted) {
        traceAdd('file.hash', r.bytes);
        traceAdd('file.read', r.bytes);
        traceAdd('file.hash.worker', r.bytes);
        const paths = r.scouted.paths === '' ? [] : r.scouted.paths.split('\0');
        paths.forEach((p, i) => byPath.set(p, i));
      }
      const n = r?.scouted?.numbers;
      return {
        hash(f) {
          const i = byPath.get(f.abs);
          if (i === undefined || !n) return undefined;
          const k = i * 5;
          if (n[k] !== f.size || n[k + 1] !== f.mtimeMs || n[k + 2] !== f.ctimeMs || n[k + 3] !== f.ino || n[k + 4] !== f.dev) return undefined;
          return r!.scouted!.hashes.slice(i * 64, i * 64 + 64);
        },
      };
    },
  };
}
