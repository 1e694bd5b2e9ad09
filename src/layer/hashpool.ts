import { createHash, hash } from 'node:crypto';
import { closeSync, fstatSync, lstatSync, openSync, readSync, readdirSync, readlinkSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve as absolute } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { hashFileSync } from './filehash.js';
import { type ShareIo, type ShareOut, emptyShare, walkShare } from './sharewalk.js';
import { type SourceEntry, sortEntries, statRoot, walkSource } from './walk.js';
import { traceAdd } from '../util/trace.js';

/**
 * Hashes many files on two threads: the main thread and one worker take the next file from a
 * shared counter, each reading synchronously into its own buffer (the fast path for many small
 * files: every async fs call is a thread-pool round trip, and reading on libuv's pool with
 * one-shot `crypto.subtle` digests cost ~3x the CPU of this; docs/registry-cache.md). The worker
 * is a thread, so it is used only where the work outweighs its start-up: a tree with no stat cache
 * (a fresh CI runner) whose fingerprint is needed before anything else can happen, and the walk of
 * a tree of many entries (walkShared).
 */

// CommonJS, run with `eval`: the CLI is one bundled file, so there is no module path to start.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { openSync, readSync, closeSync, fstatSync, lstatSync, readdirSync, readlinkSync } = require('node:fs');
const { createHash, hash } = require('node:crypto');
const buf = Buffer.allocUnsafe(1 << 20);
const walkShare = ${walkShare.toString()};
const io = { readdirSync, lstatSync, openSync, fstatSync, readSync, closeSync, readlinkSync, createHash, hash, buf, read: true };
// Its part of a tree being walked by both threads (see walkTree); none if the main thread finished
// the walk before this thread started on it.
function share({ id, base, dirs, flags, read }) {
  const f = new Int32Array(flags);
  const out = { rels: [], types: [], numbers: [], links: [], hashes: [], bytes: 0, bad: false };
  if (Atomics.compareExchange(f, 2, 0, 1) === 0) walkShare({ ...io, read }, base, dirs, f, out);
  // Few big values rather than an object per entry: cheap for the main thread to receive.
  const numbers = new Float64Array(out.numbers);
  const types = new Uint8Array(out.types);
  const shared = { rels: out.rels.join('\0'), types, numbers, links: out.links.join('\0'), hashes: out.hashes.join(''), bad: out.bad };
  parentPort.postMessage({ id, shared, bytes: out.bytes, done: [] }, [numbers.buffer, types.buffer]);
}
parentPort.on('message', (m) => {
  if (m.dirs !== undefined) return share(m);
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
/** Bytes the main thread hashes between turns of the event loop. */
const YIELD_BYTES = 4 << 20;

interface Reply {
  id: number;
  /** index, sha256 hex, index, sha256 hex... */
  done: (number | string)[];
  bytes: number;
  /** A share of a walk's answer (see `walkTree`). */
  shared?: Posted;
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

/** `now`: the worker ends at once if no one else holds it (its heap is not kept for a pack that follows). */
function holdHashWorker(): (now?: boolean) => void {
  users++;
  if (idle) clearTimeout(idle);
  idle = undefined;
  void startWorker();
  let held = true;
  return (now = false) => {
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
    }, now ? 0 : IDLE_MS);
    idle.unref();
  };
}

/**
 * Starts the worker now, for a caller that knows a tree will soon be hashed for its key (a fresh
 * runner with a registry cache): its start-up then runs beside the process's own. Unused, it ends
 * after IDLE_MS and never holds the process open.
 */
export function prestartHashWorker(): void {
  if (!canHashInParallel()) return;
  traceAdd('file.hash.prestart', 1);
  holdHashWorker()();
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
    let since = 0;
    // mainThread false (tests): the worker takes every file it can; the main thread only the rest.
    while (mainThread) {
      const i = Atomics.add(claim, 0, 1);
      if (i >= files.length) break;
      out[i] = hashFileSync(files[i]!.abs, files[i]!.rawAbs);
      mine++;
      // A turn of the event loop now and then: requests already asked for (the target's tag, a
      // connection) go ahead meanwhile instead of waiting for the last file.
      if ((since += files[i]!.size) >= YIELD_BYTES) {
        since = 0;
        await new Promise(setImmediate);
      }
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

/** The file hashes a two-thread walk took (see `scoutTree`). */
export interface Scouted {
  /** The file's sha256 if it was hashed as it was listed. */
  hash(f: SourceEntry): string | undefined;
}

export interface Scout {
  /** The tree's entries as walkSource lists them, the files hashed on the way, on two threads. */
  walk(): Promise<SourceEntry[]>;
  /** The hashes `walk` took, and the second thread released. */
  stop(): Promise<Scouted>;
}

/**
 * Starts the worker for a fresh runner's tree of many entries, to walk it with this thread (see
 * `walk`): each thread takes folders from a shared counter, lists them, and hashes each file as it
 * finds it, so the tree is listed once and its files opened once. Anything walkSource handles
 * in its own way (a name that is not UTF-8, a socket, an error) sends the tree back to walkSource
 * and the files to `hashFiles`.
 */
export async function scoutTree(root: string): Promise<Scout | undefined> {
  if (!canHashInParallel()) return undefined;
  const release = holdHashWorker();
  const w = await startWorker();
  if (!w) {
    release();
    return undefined;
  }
  const hashes = new Map<SourceEntry, string>();
  return {
    async walk() {
      const entries = await walkTree(w, root, hashes);
      if (entries) return entries;
      hashes.clear();
      return walkSource(root);
    },
    async stop() {
      release();
      return { hash: (f) => hashes.get(f) };
    },
  };
}

/**
 * walkSource's list of a tree of many entries (an edit's, a hit's), its folders shared with the
 * worker as a scout shares them, the files only lstat-ed: the stat cache knows their hashes.
 */
export async function walkShared(root: string): Promise<SourceEntry[]> {
  if (!canHashInParallel()) return walkSource(root);
  const release = holdHashWorker();
  try {
    const w = await startWorker();
    const entries = w && (await walkTree(w, root, undefined));
    if (entries) traceAdd('walk.shared', 1);
    return entries ?? walkSource(root);
  } finally {
    release(true);
  }
}

/** Folders listed breadth first on this thread until there are this many to share out. */
const SHARE_FOLDERS = 64;
let mainBuf: Buffer | undefined;

/** `hashes` undefined: the files are not read (walkShared). */
async function walkTree(w: Worker, root: string, hashes: Map<SourceEntry, string> | undefined): Promise<SourceEntry[] | undefined> {
  const rootEntry = statRoot(root);
  if (rootEntry.type !== 'directory') return undefined;
  const rootAbs = absolute(root);
  const base = rootAbs === '/' ? '' : rootAbs;
  const io: ShareIo = { readdirSync, lstatSync, openSync, fstatSync, readSync, closeSync, readlinkSync, createHash, hash, buf: (mainBuf ??= Buffer.allocUnsafe(1 << 20)), read: hashes !== undefined };
  const mine = emptyShare();
  let level = [''];
  while (level.length > 0 && level.length < SHARE_FOLDERS) {
    const next: string[] = [];
    walkShare(io, base, level, new Int32Array(2), mine, next);
    if (mine.bad) return undefined;
    level = next;
  }
  const out = [rootEntry];
  if (level.length > 0) {
    // claimed, stop, and the worker's start: 0 not yet, 1 started, 2 too late (all done here).
    const flags = new Int32Array(new SharedArrayBuffer(12));
    const id = nextId++;
    const reply = new Promise<Reply | undefined>((resolve) => {
      waiting.set(id, resolve);
      w.postMessage({ id, base, dirs: level, flags: flags.buffer, read: io.read });
    });
    walkShare(io, base, level, flags, mine);
    if (mine.bad) return undefined;
    // This thread's part is made into entries while the worker may still be on its last folders.
    addEntries(mine, base, out, hashes);
    if (Atomics.compareExchange(flags, 2, 0, 2) !== 0) {
      w.ref();
      const r = await reply;
      // A worker that died took folders with it: the tree is walked again here.
      if (!r?.shared || r.shared.bad) return undefined;
      addEntries(fromPosted(r.shared, r.bytes), base, out, hashes);
      traceAdd('walk.worker.entries', r.shared.types.length);
      traceAdd('file.hash.worker', r.bytes);
      traceAdd('file.hash', r.bytes);
      traceAdd('file.read', r.bytes);
    }
  } else {
    addEntries(mine, base, out, hashes);
  }
  traceAdd('file.hash', mine.bytes);
  traceAdd('file.read', mine.bytes);
  return sortEntries(out);
}

function addEntries(part: ShareOut, base: string, out: SourceEntry[], hashes: Map<SourceEntry, string> | undefined): void {
  let link = 0;
  let file = 0;
  for (let i = 0; i < part.types.length; i++) {
    const t = part.types[i]!;
    const n = i * 6;
    const rel = part.rels[i]!;
    const e: SourceEntry = {
      rel,
      abs: `${base}/${rel}`,
      type: t === 1 ? 'file' : t === 2 ? 'directory' : 'symlink',
      mode: part.numbers[n]!,
      size: part.numbers[n + 1]!,
      mtimeMs: part.numbers[n + 2]!,
      ctimeMs: part.numbers[n + 3]!,
      ino: part.numbers[n + 4]!,
      dev: part.numbers[n + 5]!,
    };
    if (t === 3) e.linkTarget = part.links[link++]!;
    else if (t === 1 && hashes) hashes.set(e, part.hashes[file++]!);
    out.push(e);
  }
}

/** The worker's columns as posted (see `share` in the worker's source). */
interface Posted {
  rels: string;
  types: Uint8Array;
  numbers: Float64Array;
  links: string;
  hashes: string;
  bad: boolean;
}

function fromPosted(p: Posted, bytes: number): ShareOut {
  const count = p.types.length;
  const hashes: string[] = [];
  for (let k = 0; k < p.hashes.length; k += 64) hashes.push(p.hashes.slice(k, k + 64));
  return {
    rels: count === 0 ? [] : p.rels.split('\0'),
    types: p.types as unknown as number[],
    numbers: p.numbers as unknown as number[],
    links: p.links === '' ? [] : p.links.split('\0'),
    hashes,
    bytes,
    bad: p.bad,
  };
}
