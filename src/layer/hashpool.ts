import { createHash, hash } from 'node:crypto';
import { closeSync, fstatSync, lstatSync, openSync, readSync, readdirSync, readlinkSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve as absolute } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { hashFileSync } from './filehash.js';
import { type ShareIo, type ShareOut, emptyShare, walkShare } from './sharewalk.js';
import { type StatFilesWriter, digestListing, encodeStatFiles, writeReplacing } from './statwrite.js';
import { writeStatFiles } from './statcache.js';
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
const encodeStatFiles = ${encodeStatFiles.toString()};
const digestListing = ${digestListing.toString()};
const writeReplacing = ${writeReplacing.toString()};
const { randomBytes } = require('node:crypto');
const { mkdirSync, writeFileSync, renameSync, rmSync } = require('node:fs');
const statIo = { createHash, digestListing, randomBytes, mkdirSync, writeFileSync, renameSync, rmSync };
// The stat cache's files (see writeStatFilesLater); ok false: the main thread writes them. A
// listing sent without its fingerprint waits here for it (a later message naming its job).
const waitingListings = new Map();
function writeStat({ id, statFiles, fingerprint, of }) {
  let ok = true;
  try {
    const job = fingerprint === undefined ? statFiles : { listing: { ...waitingListings.get(of), fingerprint } };
    waitingListings.delete(of);
    for (const f of encodeStatFiles(job, statIo)) {
      if (f.digest === undefined) writeReplacing(f.path, f.data, statIo);
      else waitingListings.set(id, { path: f.path, version: job.listing.version, digest: f.digest });
    }
  } catch {
    ok = false;
  }
  parentPort.postMessage({ id, done: [], bytes: 0, ok });
}
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
// A tree named on the command line, listed and hashed before the main thread has parsed its
// arguments (see prescoutTree): listed alone, then hashed with the main thread once it comes.
function early({ listId, hashId, base, flags, limit }) {
  const f = new Int32Array(flags);
  if (Atomics.compareExchange(f, 2, 0, 1) !== 0) return;
  const out = { rels: [], types: [], numbers: [], links: [], hashes: [], bytes: 0, bad: false };
  let level = [''];
  while (level.length > 0 && out.types.length < limit) {
    const next = [];
    walkShare({ ...io, read: false }, base, level, new Int32Array(2), out, next);
    if (out.bad) break;
    level = next;
  }
  // Not all listed (a tree of many entries is listed faster on two threads), or not listable
  // here: the main thread walks it as usual.
  if (out.bad || level.length > 0) return parentPort.postMessage({ id: listId, done: [], bytes: 0 });
  const files = [];
  for (let i = 0; i < out.types.length; i++) if (out.types[i] === 1) files.push(i);
  // Biggest first, so that the two threads end together, on small files.
  files.sort((a, b) => out.numbers[b * 6 + 1] - out.numbers[a * 6 + 1]);
  const numbers = new Float64Array(out.numbers);
  const types = new Uint8Array(out.types);
  const order = new Int32Array(files);
  const shared = { rels: out.rels.join('\0'), types, numbers, links: out.links.join('\0'), hashes: '', bad: false };
  const paths = files.map((i) => base + '/' + out.rels[i]);
  // The first (biggest) file is this thread's whatever the main thread does once it has the list.
  const first = Atomics.add(f, 0, 1);
  parentPort.postMessage({ id: listId, shared, order, bytes: 0, done: [] }, [numbers.buffer, types.buffer, order.buffer]);
  parentPort.postMessage({ id: hashId, ...hashClaimed(paths, f, first) });
}
// The files of \`paths\` this thread claims through claim[0] (and \`first\`, claimed before), hashed:
// index, sha256 hex, index...
function hashClaimed(paths, claim, first) {
  const done = [];
  let bytes = 0;
  for (let taken = first; ; taken = undefined) {
    const i = taken ?? Atomics.add(claim, 0, 1);
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
  return { done, bytes };
}
parentPort.on('message', (m) => {
  if (m.listId !== undefined) return early(m);
  if (m.dirs !== undefined) return share(m);
  if (m.statFiles !== undefined || m.fingerprint !== undefined) return writeStat(m);
  parentPort.postMessage({ id: m.id, ...hashClaimed(m.paths, new Int32Array(m.next)) });
});
`;

/** Below this much to hash, the worker's start-up (~35 ms of CPU) is not worth it. */
const MIN_BYTES = 8 << 20;
const MIN_FILES = 512;
/** Bytes the main thread hashes between turns of the event loop. */
const YIELD_BYTES = 4 << 20;

interface Reply {
  id: number;
  /** An early listing's files in the order they are claimed (see `prescoutTree`). */
  order?: Int32Array;
  /** index, sha256 hex, index, sha256 hex... */
  done: (number | string)[];
  bytes: number;
  /** A share of a walk's answer (see `walkTree`). */
  shared?: Posted;
  /** Whether the stat cache's files were written (see `writeStatFilesLater`). */
  ok?: boolean;
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
    const w = launched ?? new (process.getBuiltinModule('node:worker_threads').Worker)(WORKER_SOURCE, { eval: true });
    if (launched) {
      launched = undefined;
      w.postMessage({ kocacheWorkerSource: WORKER_SOURCE });
      traceAdd('file.hash.launched', 1);
    } else {
      // Each thread started here (a test counts them: one ended too soon is started again).
      traceAdd('file.hash.started', 1);
    }
    w.on('message', (r: Reply) => {
      waiting.get(r.id)?.(r);
      waiting.delete(r.id);
      if (waiting.size === 0) w.unref();
    });
    // A worker that dies leaves its files to the main thread: nothing is lost but time.
    const gone = () => {
      // A worker ended when idle had no jobs left, and those waiting now are another worker's.
      if (current !== w) return;
      current = undefined;
      worker = undefined;
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

/** A thread started before this module was loaded, that runs the worker's source once sent it. */
let launched: Worker | undefined;

/**
 * Starts the worker now, for a caller that knows a tree will soon be hashed for its key (a fresh
 * runner with a registry cache): its start-up then runs beside the process's own. Unused, it ends
 * after IDLE_MS and never holds the process open. `started`: a thread started for it even earlier
 * (src/cli/startup/launch.cts), that runs the worker's source (\`{ kocacheWorkerSource }\`) once sent.
 */
export function prestartHashWorker(started?: Worker): void {
  if (started && !worker) launched = started;
  else void started?.terminate();
  if (!canHashInParallel()) return;
  traceAdd('file.hash.prestart', 1);
  holdHashWorker()();
}

/** Beyond this many entries the worker stops listing a tree alone: two threads list it faster (walkTree). */
const EARLY_MAX_ENTRIES = 4096;

/** A tree's listing and hashing begun on the worker before the command had parsed its arguments. */
interface Early {
  /** Absolute. */
  root: string;
  /** When it was asked for: no stat of the tree was taken before (the stat cache's clock). */
  startedMs: number;
  /** The files' claim counter, -, and the start: 0 not yet, 1 started by the worker, 2 called off. */
  flags: Int32Array;
  listed: Promise<Reply | undefined>;
  hashed: Promise<Reply | undefined>;
  listId: number;
  hashId: number;
  release: (now?: boolean) => void;
}
let early: Early | undefined;

/**
 * Has the worker list the tree at `root` and start hashing its files at once, biggest first, for
 * a command that will fingerprint it (a fresh runner's, from its command line): the worker's
 * start-up, the listing and part of the hashing then run while this thread loads the command and
 * parses its arguments. `takeEarlyScout` finds it. Resolves once the worker has listed the tree
 * (or found it cannot).
 */
export async function prescoutTree(root: string): Promise<void> {
  if (!canHashInParallel()) return;
  const rootAbs = absolute(root);
  const flags = new Int32Array(new SharedArrayBuffer(12));
  const listId = nextId++;
  const hashId = nextId++;
  const listed = new Promise<Reply | undefined>((resolve) => waiting.set(listId, resolve));
  const hashed = new Promise<Reply | undefined>((resolve) => waiting.set(hashId, resolve));
  early = { root: rootAbs, startedMs: Date.now(), flags, listed, hashed, listId, hashId, release: holdHashWorker() };
  traceAdd('file.prescout', 1);
  const w = await startWorker();
  if (w) w.postMessage({ listId, hashId, base: rootAbs === '/' ? '' : rootAbs, flags: flags.buffer, limit: EARLY_MAX_ENTRIES });
  else for (const id of [listId, hashId]) waiting.get(id)?.(undefined);
  await listed;
}

/** What `prescoutTree` found of a tree: its entries as walkSource lists them, and a Scout for its hashes. */
export interface EarlyScout {
  entries: SourceEntry[];
  /** When the listing was asked for (for the stat cache, as a walk's start). */
  startedMs: number;
  scout: Scout;
}

/**
 * The early listing of `root` if the worker made one (undefined: the caller walks as usual);
 * `use: false` calls it off. A scout of another tree is left for its own layer.
 */
export async function takeEarlyScout(root: string, use = true): Promise<EarlyScout | undefined> {
  const e = early;
  if (!e || e.root !== absolute(root)) return undefined;
  early = undefined;
  if (!use) return callOff(e);
  // Not begun yet (a busy machine): this thread walks, and the worker is kept for the hashing
  // that follows (ended now, it would be started again, its start-up paid twice).
  if (Atomics.compareExchange(e.flags, 2, 0, 2) === 0) return callOff(e, false);
  const w = await worker;
  w?.ref();
  const r = await e.listed;
  // Held open again once a caller waits for the hashes (joinEarly), not before.
  if (waiting.size === 1 && waiting.has(e.hashId)) w?.unref();
  if (!r?.shared || !r.order) return callOff(e);
  const rootEntry = statRoot(root);
  if (rootEntry.type !== 'directory') return callOff(e);
  const base = e.root === '/' ? '' : e.root;
  const listed: SourceEntry[] = [];
  addEntries(fromPosted(r.shared, 0), base, listed, undefined);
  const files = Array.from(r.order, (i) => listed[i]!);
  traceAdd('walk.early', 1);
  const entries = sortEntries([rootEntry, ...listed]);
  return { entries, startedMs: e.startedMs, scout: { walk: async () => entries, stop: () => joinEarly(e, files), drop: () => void callOff(e) } };
}

/** `now` false: the worker is left to linger as any idle one (see holdHashWorker). */
function callOff(e: Early, now = true): undefined {
  Atomics.compareExchange(e.flags, 2, 0, 2);
  // Files not yet claimed are left unread, and nothing the worker still says is waited for.
  Atomics.store(e.flags, 0, 0x40000000);
  waiting.delete(e.listId);
  if (waiting.delete(e.hashId) && waiting.size === 0) current?.unref();
  e.release(now);
  return undefined;
}

/** This thread hashes the early scout's files with the worker, from the same counter. */
async function joinEarly(e: Early, files: readonly SourceEntry[]): Promise<Scouted> {
  const out = new Array<string | undefined>(files.length);
  try {
    await hashShared(files, e.flags, out, e.hashId, e.hashed);
    // What the worker could not read is read here, which reports the error if there is one.
    const hashes = new Map<SourceEntry, string>();
    files.forEach((f, k) => hashes.set(f, out[k] ?? hashFileSync(f.abs)));
    return { hash: (f) => hashes.get(f) };
  } finally {
    e.release();
  }
}

/**
 * The files this thread claims through `claim[0]`, hashed into `out` (with a turn of the event
 * loop every YIELD_BYTES: requests already asked for, the target's tag, a connection, go ahead
 * meanwhile instead of waiting for the last file); then the worker's answer `reply` (job `id`)
 * merged in. `mainThread` false (tests): none claimed here. Files neither thread hashed are left
 * undefined in `out`.
 */
async function hashShared(files: readonly FileToHash[], claim: Int32Array, out: (string | undefined)[], id: number, reply: Promise<Reply | undefined>, mainThread = true): Promise<void> {
  let mine = 0;
  let since = 0;
  while (mainThread) {
    const i = Atomics.add(claim, 0, 1);
    if (i >= files.length) break;
    out[i] = hashFileSync(files[i]!.abs, files[i]!.rawAbs);
    mine++;
    if ((since += files[i]!.size) >= YIELD_BYTES) {
      since = 0;
      await new Promise(setImmediate);
    }
  }
  const w = await worker;
  // All done here before the worker took any (it may still be starting): no need to wait for it.
  if (mine === files.length) {
    if (waiting.delete(id) && waiting.size === 0) w?.unref();
    return;
  }
  w?.ref();
  const r = await reply;
  if (!r) return;
  countWorkerHashed(r.bytes);
  for (let k = 0; k < r.done.length; k += 2) out[r.done[k] as number] = r.done[k + 1] as string;
}

/** The trace counters of file bytes the worker read and hashed. */
function countWorkerHashed(bytes: number): void {
  traceAdd('file.hash', bytes);
  traceAdd('file.read', bytes);
  traceAdd('file.hash.worker', bytes);
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
    // mainThread false (tests): the worker takes every file it can; the main thread only the rest.
    await hashShared(files, claim, out, id, reply, mainThread);
    // Not out.map: it skips the holes, which are the files left to do here.
    return Array.from(out, (h, i) => h ?? hashFileSync(files[i]!.abs, files[i]!.rawAbs));
  } finally {
    release();
  }
}

/**
 * Has the worker, if it is running, make and write the stat cache's files while this thread goes
 * on (a fresh runner's key is then looked up while they are written): undefined when there is no
 * worker, and they are written here (the job made `again`) if the worker fails. A job without its
 * fingerprint (StatCache.saveAhead) has its stamps written now and its listing once the returned
 * function gives the fingerprint. The process ends once they are written.
 */
export const writeStatFilesLater: StatFilesWriter = (job, again) => {
  if (!current) return undefined;
  const w = current;
  // The arrays are moved, not copied (the strings are copied: ~20 ms of this thread for 96k stamps).
  const moved = [job.stamps?.numbers?.buffer, job.stamps?.ofListing?.buffer, job.listing?.numbers?.buffer].filter((b): b is ArrayBuffer => b instanceof ArrayBuffer);
  const waits = job.listing !== undefined && job.listing.fingerprint === undefined;
  // Failed, a job waiting for its fingerprint is written here once that comes, with its listing.
  const first = askToWrite(w, { statFiles: job }, moved, waits ? () => {} : () => writeStatFiles(again()), !waits);
  if (!waits) return () => {};
  traceAdd('stat.written.ahead', 1);
  return (fingerprint) => {
    const listingOnly = () => writeStatFiles({ listing: again(fingerprint).listing! });
    track(first.then(async (ok) => {
      if (!ok) writeStatFiles(again(fingerprint));
      else if (current !== w) listingOnly();
      else await askToWrite(w, { fingerprint, of: first.id }, [], listingOnly);
    }));
  };
};

/**
 * One write job for the worker, held open until it answers (true when it wrote); `failed` runs if
 * it could not. `last`: the job's files are all written then (`stat.written.worker` counts those).
 */
function askToWrite(w: Worker, message: object, moved: ArrayBuffer[], failed: () => void, last = true): Promise<boolean> & { id: number } {
  const release = holdHashWorker();
  const id = nextId++;
  const answered = new Promise<boolean>((done) => {
    waiting.set(id, (r) => {
      release();
      if (!r?.ok) failed();
      else if (last) traceAdd('stat.written.worker', 1);
      done(r?.ok === true);
    });
  });
  track(answered.then(() => undefined));
  w.ref();
  w.postMessage({ id, ...message }, moved);
  return Object.assign(answered, { id });
}

function track(p: Promise<void>): void {
  writing.add(p);
  void p.finally(() => writing.delete(p));
}

const writing = new Set<Promise<void>>();

/** Resolves once the stat cache's files handed to the worker are written (for a caller that reads them next). */
export async function statFilesWritten(): Promise<void> {
  await Promise.all(writing);
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
  /** The second thread released, no hashes wanted. */
  drop(): void;
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
    drop: () => release(),
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
      countWorkerHashed(r.bytes);
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
