import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { lstatSync, readdirSync, renameSync, rmSync, unlinkSync } from 'node:fs';
import { basename, join, relative, sep } from 'node:path';
import type { CacheObject } from 'cacache';
import { KocacheError, errnoCode } from '../errors.js';
import { type Digest, integrityToDigest } from '../oci/digest.js';
import { type Cacache, loadCacache } from './cacache.js';
import { JOURNAL_KEY, drainJournal } from './journal.js';
import { acquireGcLock, scanLeases } from './lease.js';
import { cacheFsError, dropFolderBuckets, ensureOwnFolder } from './damage.js';
import { totals, treeSize } from './folders.js';
import { isMetadataKey, pinnedDigests } from './pins.js';
import { STAMP_DIR } from './stamp.js';
import { CODE_CACHE_DIR, bundleStamp, judgeCodeCacheEntry, listCodeCacheDir } from './codecaches.js';
import { type CacheStore, isRecordLine, trashPath } from './store.js';

export interface GcOptions {
  /** Bytes the whole cache folder may occupy. */
  maxSize?: number | undefined;
  /** Content and stat files unused for longer than this (ms) are removed. */
  maxAge?: number | undefined;
  /** Re-hash every blob and drop the corrupt ones; with `unpack`, drop diffid records a layer does not unpack to. */
  verify?: boolean | undefined;
  /**
   * Under --verify: a layer blob's uncompressed bytes, or undefined where this Node cannot unpack
   * its media type (the record is then kept). The caller's: unpacking lives above the cache.
   */
  unpack?: ((blob: AsyncIterable<Uint8Array>, mediaType: string) => AsyncIterable<Uint8Array> | undefined) | undefined;
  dryRun?: boolean | undefined;
  /** Temp files younger than this (ms) are left alone even without any lease: a writer may not have taken one. */
  tmpGraceMs?: number | undefined;
  now?: number | undefined;
  /** The running bundle (its run-time code caches stay); without it, only leftovers of the code cache folder go. */
  bundle?: string | undefined;
  /** How long evicted blobs stay parked under their trash name before they are unlinked. */
  trashGraceMs?: number | undefined;
}

export type RemovalKind = 'blob' | 'record' | 'tmp' | 'stat' | 'lease' | 'trash' | 'code';
export type RemovalReason = 'unreferenced' | 'expired' | 'size' | 'corrupt' | 'dead' | 'duplicate' | 'stale' | 'leftover';

export interface Removal {
  kind: RemovalKind;
  /** A path relative to the cache for files, the key for records. */
  what: string;
  bytes: number;
  reason: RemovalReason;
}

export interface GcReport {
  dryRun: boolean;
  removed: Removal[];
  /** Counts per kind, for the summary line. */
  counts: Record<RemovalKind, number>;
  bytesFreed: number;
  sizeBefore: number;
  sizeAfter: number;
  /** Files gc had to spare because a live lease may be using them. */
  protectedBytes: number;
  liveLeases: number;
  /** Blobs gc chose to evict but found in use when it came to it, and kept. */
  rescued: number;
}

/** Slack for file systems whose mtimes are coarser than the clock (and for clock steps). */
const MTIME_SLACK_MS = 2_000;
const DEFAULT_TMP_GRACE_MS = 10 * 60 * 1000;
const DEFAULT_TRASH_GRACE_MS = 1_000;

interface BlobFile {
  digest: Digest;
  path: string;
  bytes: number;
  mtime: number;
}

interface PlainFile {
  path: string;
  bytes: number;
  mtime: number;
}

/** What one gc run knows and decides, handed from step to step. */
interface Gc {
  cache: CacheStore;
  dir: string;
  opts: GcOptions;
  dryRun: boolean;
  now: number;
  removed: Removal[];
  /** Nothing with an mtime at or after this is removed: the oldest live lease's start, or gc's own. */
  cutoff: number;
  tmpCutoff: number;
  ageCutoff: number | undefined;
  sizeBefore: number;
  liveLeases: number;
  protectedBytes: number;
  rescued: number;
  /** Stat files kept so far: the last thing --max-size removes. */
  statFiles: PlainFile[];
  /** Blobs on disk and not (yet) removed. */
  blobs: Map<Digest, BlobFile>;
  /** Every index record's newest line, as cacache lists them (the journal left out). */
  records: CacheObject[];
  /** Diffid records whose layer unpacks to another diffid (--verify): key -> the line's time. */
  wrongDiffids: Map<string, number | undefined>;
  /** Which keys point at each blob: the references that keep content. */
  keysByDigest: Map<Digest, string[]>;
  evict: Map<Digest, RemovalReason>;
  cacache: Cacache;
}

/**
 * Collects garbage in the cache: temp files of crashed writers, unreferenced content, dead and
 * duplicate index lines, and — under --max-age/--max-size — least recently used content.
 *
 * Safety with running commands rests on one rule: nothing whose mtime is at or after the cutoff
 * (the oldest live lease's start, or gc's own start) is deleted, because every process with a
 * lease writes new files and touches what it uses. A blob is evicted by renaming it to its trash
 * name, checking its mtime once more, and only then unlinking it; a use in between takes it back
 * (CacheStore.touchBlob). Two gcs never run at once (gc.lock).
 *
 * The work is a list of named steps (STEPS), run in order under the lock, each reading and adding
 * to what the ones before it found.
 */
export async function collectGarbage(cache: CacheStore, opts: GcOptions = {}): Promise<GcReport> {
  const dryRun = Boolean(opts.dryRun);
  const unlock = dryRun ? () => {} : acquireGcLock(cache.dir);
  let report: GcReport;
  try {
    const gc = await begin(cache, opts, dryRun);
    for (const step of STEPS) await step(gc);
    report = summarise(gc);
  } finally {
    unlock();
  }
  // Measured once the lock file is gone, so the figure is what the cache now occupies.
  if (!dryRun) report.sizeAfter = treeSize(cache.dir);
  return report;
}

const STEPS: ((gc: Gc) => void | Promise<void>)[] = [
  markLeases,
  sweepTemp,
  sweepStatFiles,
  sweepCodeCaches,
  listBlobs,
  readIndex,
  verifyBlobs,
  verifyDiffids,
  markUnused,
  markForSize,
  evictBlobs,
  sweepStamps,
  compactIndex,
];

async function begin(cache: CacheStore, opts: GcOptions, dryRun: boolean): Promise<Gc> {
  const now = opts.now ?? Date.now();
  return {
    cache, dir: cache.dir, opts, dryRun, now, removed: [],
    cutoff: now, tmpCutoff: now, ageCutoff: opts.maxAge === undefined ? undefined : now - opts.maxAge,
    sizeBefore: 0, liveLeases: 0, protectedBytes: 0, rescued: 0,
    statFiles: [], blobs: new Map(), records: [], keysByDigest: new Map(), evict: new Map(), wrongDiffids: new Map(),
    cacache: await loadCacache(),
  };
}

function rel(gc: Gc, path: string): string {
  return relative(gc.dir, path).split(sep).join('/');
}

function note(gc: Gc, kind: RemovalKind, what: string, bytes: number, reason: RemovalReason): void {
  gc.removed.push({ kind, what, bytes, reason });
}

/**
 * Removes a file or folder unless this is a dry run, and notes it as removed. `leaveReadOnly`: one
 * the file system will not let go (a read-only folder) is left and not noted, instead of failing gc.
 */
function remove(gc: Gc, f: PlainFile, kind: RemovalKind, reason: RemovalReason, leaveReadOnly = false): void {
  if (!gc.dryRun) {
    try {
      rmSync(f.path, { recursive: true, force: true });
    } catch (err) {
      const code = errnoCode(err);
      if (leaveReadOnly && (code === 'EACCES' || code === 'EPERM' || code === 'EROFS')) return;
      throw err;
    }
  }
  note(gc, kind, rel(gc, f.path), f.bytes, reason);
}

/** Stale leases go; the live ones set the cutoff. The cache's size is taken here, before anything goes. */
function markLeases(gc: Gc): void {
  const leases = scanLeases(gc.dir, gc.now);
  for (const l of leases.stale) remove(gc, { path: l.path, bytes: 0, mtime: 0 }, 'lease', 'stale');
  gc.liveLeases = leases.live.length;
  gc.cutoff = Math.min(gc.now, ...leases.live.map((l) => l.start)) - MTIME_SLACK_MS;
  gc.tmpCutoff = Math.min(gc.cutoff, gc.now - (gc.opts.tmpGraceMs ?? DEFAULT_TMP_GRACE_MS));
  gc.sizeBefore = treeSize(gc.dir);
}

/**
 * A temp file (a writer killed mid-write), once old enough that no running writer can own it. A
 * younger one is being written, so it counts as protected: a cache over --max-size while builds
 * run is then said to be in use, not left unexplained.
 */
function sweepTempFile(gc: Gc, f: PlainFile): void {
  if (f.mtime < gc.tmpCutoff) remove(gc, f, 'tmp', 'leftover');
  else gc.protectedBytes += f.bytes;
}

/** cacache's tmp/. */
function sweepTemp(gc: Gc): void {
  for (const f of listEntries(join(gc.dir, 'tmp'))) sweepTempFile(gc, f);
}

/** The stat cache: its temp files like tmp/'s; its stamps past --max-age; the rest kept for markForSize. */
function sweepStatFiles(gc: Gc): void {
  for (const f of listEntries(join(gc.dir, 'stat'), gc.dryRun)) {
    if (f.path.endsWith('.tmp')) {
      sweepTempFile(gc, f);
    } else if (f.path.endsWith('.json') || f.path.endsWith('.stamps')) {
      if (expired(gc, f.mtime)) remove(gc, f, 'stat', 'expired');
      else gc.statFiles.push(f);
    }
  }
}

/**
 * The launcher's code cache folder: caches made for another bundle (an older or newer kocache),
 * Node's compile-cache folders older kocaches left, and temp files of a killed write. Only past
 * the temp files' grace: another kocache sharing the cache folder may be writing them now. The
 * running bundle's caches stay, for every V8. One that cannot be removed (read-only) is left.
 */
function sweepCodeCaches(gc: Gc): void {
  const dir = join(gc.dir, CODE_CACHE_DIR);
  const stamp = gc.opts.bundle === undefined ? undefined : bundleStamp(gc.opts.bundle);
  for (const e of listCodeCacheDir(dir)) {
    const verdict = judgeCodeCacheEntry(e.name, e.isDir, stamp);
    if (verdict === 'current' || verdict === 'unknown') continue;
    const f = totals(join(dir, e.name));
    if (!f || f.mtime >= gc.tmpCutoff) continue;
    remove(gc, f, 'code', verdict === 'temp' ? 'leftover' : 'stale', true);
  }
}

/** Every blob file of the content store; a blob left parked by a gc that died is unlinked now. */
function listBlobs(gc: Gc): void {
  for (const { path, digest } of gc.cache.contentFiles()) {
    const f = statFile(path);
    if (!f) continue;
    if (path.endsWith('.gc')) {
      // Left by a gc that died between rename and unlink: the eviction had been decided.
      if (f.mtime < gc.cutoff) remove(gc, f, 'trash', 'leftover');
      continue;
    }
    if (digest !== undefined) gc.blobs.set(digest, { digest, ...f });
  }
}

/** The index as cacache lists it: which blobs records point at. Metadata records point at none. */
async function readIndex(gc: Gc): Promise<void> {
  let all: Record<string, CacheObject>;
  try {
    all = await gc.cacache.ls(gc.dir);
  } catch (err) {
    if (!dropFolderBuckets(gc.dir, err)) throw cacheFsError(err, gc.dir, 'read the index in');
    return readIndex(gc);
  }
  // A line kocache could not have written (a key or integrity that is not text, no time, no whole
  // size) is no record: it keeps no blob (du counts by the same rule) and goes at compaction.
  gc.records = Object.values(all).filter((e) => isRecordLine(e) && e.key !== JOURNAL_KEY);
  for (const r of gc.records) {
    for (const d of pinnedDigests(r.key, digestOf(r.integrity), r.metadata)) {
      const list = gc.keysByDigest.get(d) ?? [];
      list.push(r.key);
      gc.keysByDigest.set(d, list);
    }
  }
}

/** --verify: every blob re-hashed; a corrupt one is dropped (a dry run only hashes). */
async function verifyBlobs(gc: Gc): Promise<void> {
  if (!gc.opts.verify) return;
  for (const blob of gc.blobs.values()) {
    const state = gc.dryRun ? await gc.cache.checkBlob(blob.digest) : await gc.cache.verifyBlob(blob.digest);
    if (state === 'corrupt') {
      note(gc, 'blob', rel(gc, blob.path), blob.bytes, 'corrupt');
      gc.blobs.delete(blob.digest);
    }
  }
}

/** A diffid record's key (`<namespace>/diffid/<diffid>/<compression>`): the diffid it names. */
const DIFFID_KEY = /(?:^|\/)diffid\/(sha256:[0-9a-f]{64})\/[^/]+$/;

/**
 * --verify: each layer a diffid record points at is unpacked once and hashed; a record naming
 * another diffid goes (compactIndex), so a lookup misses and the layer is built and recorded again
 * instead of an image being given a wrong rootfs. The build-id records that lead to it stay: they
 * lead nowhere once it is gone.
 */
async function verifyDiffids(gc: Gc): Promise<void> {
  const unpack = gc.opts.unpack;
  if (!gc.opts.verify || !unpack) return;
  const byBlob = new Map<Digest, { key: string; diffid: string; time: number | undefined; mediaType: string }[]>();
  for (const r of gc.records) {
    const m = DIFFID_KEY.exec(r.key);
    const digest = digestOf(r.integrity);
    if (!m || digest === undefined || !gc.blobs.has(digest) || isMetadataKey(r.key)) continue;
    const mediaType = (r.metadata as { descriptor?: { mediaType?: unknown } } | undefined)?.descriptor?.mediaType;
    const list = byBlob.get(digest) ?? [];
    list.push({ key: r.key, diffid: m[1]!, time: r.time, mediaType: typeof mediaType === 'string' ? mediaType : '' });
    byBlob.set(digest, list);
  }
  for (const [digest, records] of byBlob) {
    const tar = unpack(gc.cache.readBlob(digest), records[0]!.mediaType);
    if (!tar) continue;
    const hash = createHash('sha256');
    let diffid: string | undefined;
    try {
      for await (const chunk of tar) hash.update(chunk);
      diffid = `sha256:${hash.digest('hex')}`;
    } catch (err) {
      // Not a layer at all (its blob hashed right above): no diffid can be right. A blob that
      // could not be read (gone since, a file error) says nothing of its records.
      if (!(err instanceof KocacheError && err.code === 'archive')) continue;
    }
    for (const r of records) if (r.diffid !== diffid) gc.wrongDiffids.set(r.key, r.time);
  }
}

/** Blobs no record points at, and (under --max-age) those unused for longer. */
function markUnused(gc: Gc): void {
  for (const blob of gc.blobs.values()) {
    if (!gc.keysByDigest.has(blob.digest)) {
      if (blob.mtime < gc.cutoff) gc.evict.set(blob.digest, 'unreferenced');
    } else if (expired(gc, blob.mtime)) {
      gc.evict.set(blob.digest, 'expired');
    }
  }
}

/**
 * Size pressure: cheapest-to-lose first. Uncompressed tars and base-image blobs can be
 * regenerated or refetched; built layers cost a build; the stat files that let a build skip
 * hashing its inputs are tiny and go last.
 */
function markForSize(gc: Gc): void {
  const max = gc.opts.maxSize;
  if (max === undefined) return;
  let size = gc.sizeBefore - gc.removed.reduce((n, r) => n + r.bytes, 0);
  for (const d of gc.evict.keys()) size -= gc.blobs.get(d)?.bytes ?? 0;
  const removable = (f: { mtime: number; bytes: number }) => {
    if (f.mtime < gc.cutoff) return true;
    gc.protectedBytes += f.bytes;
    return false;
  };
  const tierOf = (d: Digest) => ((gc.keysByDigest.get(d) ?? []).every((k) => k.startsWith('tar/') || k.startsWith('img/')) ? 0 : 1);
  const candidates = [...gc.blobs.values()]
    .filter((b) => !gc.evict.has(b.digest))
    .sort((a, b) => tierOf(a.digest) - tierOf(b.digest) || a.mtime - b.mtime);
  const recordBytes = recordBytesByDigest(gc);
  for (const b of candidates) {
    if (size <= max) break;
    if (!removable(b)) continue;
    gc.evict.set(b.digest, 'size');
    size -= b.bytes + (recordBytes.get(b.digest) ?? 0);
  }
  for (const f of [...gc.statFiles].sort((a, b) => a.mtime - b.mtime)) {
    if (size <= max) break;
    if (!removable(f)) continue;
    remove(gc, f, 'stat', 'size');
    size -= f.bytes;
  }
}

/**
 * Evicts in two steps with a pause between: park every victim under its trash name, wait, then
 * unlink only those nobody took back or touched meanwhile. A process that looked at a blob just
 * before it was parked (a build's hit, a writer whose identical blob was already stored) gets
 * the whole pause to touch it and keep it.
 */
async function evictBlobs(gc: Gc): Promise<void> {
  const parked: { blob: BlobFile; reason: RemovalReason }[] = [];
  for (const [digest, reason] of gc.evict) {
    const blob = gc.blobs.get(digest);
    if (!blob) continue;
    if (gc.dryRun) {
      note(gc, 'blob', rel(gc, blob.path), blob.bytes, reason);
      gc.blobs.delete(digest);
      continue;
    }
    // Looked at again right before it is parked: the plan is as old as the scan (and a --verify
    // pass may have taken minutes since), and a command that used the blob meanwhile keeps it.
    const now = statFile(blob.path);
    if (!now) continue;
    if (now.mtime !== blob.mtime || now.mtime >= gc.cutoff) {
      gc.rescued++;
      continue;
    }
    if (parkBlob(blob.path)) parked.push({ blob, reason });
  }
  if (parked.length > 0) await sleep(gc.opts.trashGraceMs ?? DEFAULT_TRASH_GRACE_MS);
  for (const { blob, reason } of parked) {
    if (!finishEviction(blob.path, gc.cutoff)) {
      gc.rescued++;
      continue;
    }
    note(gc, 'blob', rel(gc, blob.path), blob.bytes, reason);
    gc.blobs.delete(blob.digest);
  }
}

/**
 * Verified stamps (src/cache/stamp.ts) of blobs that are gone: a small file each, of no use now.
 * The blob is looked up again on disk, so a stamp written for a blob stored after the scan stays.
 */
function sweepStamps(gc: Gc): void {
  for (const f of listEntries(join(gc.dir, STAMP_DIR), gc.dryRun)) {
    const hex = basename(f.path);
    if (!/^[a-f0-9]{64}$/.test(hex)) continue;
    if (present(gc, `sha256:${hex}`)) continue;
    remove(gc, f, 'stat', 'unreferenced');
  }
}

/**
 * Compaction, key by key with cacache's `index.compact`: the keys the journal names (written or
 * removed since the last gc, so possibly holding older lines), the records whose blob is gone
 * (every writer stores the blob before the record, so one without its blob is dead at any age),
 * expired metadata records, and under --verify every key. Of each, the newest line stays if it
 * is live; a key left with no line loses its bucket file. A dry run reads no bucket whole: it
 * reports the dead and expired records, not the older lines.
 */
async function compactIndex(gc: Gc): Promise<void> {
  const keys = new Set<string>(gc.opts.verify ? gc.records.map((r) => r.key) : []);
  for (const r of gc.records) {
    const reason = lineVerdict(gc, r, new Set());
    if (reason === undefined) continue;
    if (gc.dryRun) note(gc, 'record', r.key, lineBytes(r), reason);
    keys.add(r.key);
  }
  if (gc.dryRun) return;
  for (const k of await drainJournal(gc.cacache, gc.dir)) keys.add(k);
  for (const key of [...keys].sort()) await compactKey(gc, key);
}

async function compactKey(gc: Gc, key: string): Promise<void> {
  // cacache hands the lines newest first; `seen` tells a key's newest line from its older ones.
  const seen = new Set<string>();
  const dropped: Removal[] = [];
  const validateEntry = (line: CacheObject) => {
    const reason = lineVerdict(gc, line, seen);
    if (reason !== undefined) dropped.push({ kind: 'record', what: line.key, bytes: lineBytes(line), reason });
    return reason === undefined;
  };
  let kept: CacheObject[];
  try {
    kept = await gc.cacache.index.compact(gc.dir, key, (a, b) => a.key === b.key, { validateEntry });
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return; // no bucket: nothing to compact
    throw cacheFsError(err, gc.dir, 'compact the index in');
  }
  if (kept.length === 0) await removeBucket(gc.cacache, gc.dir, key);
  gc.removed.push(...dropped);
}

/**
 * Why an index line goes, or undefined if it stays: an older line of a key already met, a
 * removal, a metadata record past --max-age, a record whose blob is gone. `seen` is updated.
 */
function lineVerdict(gc: Gc, line: Pick<CacheObject, 'key' | 'integrity' | 'time' | 'size'>, seen: Set<string>): RemovalReason | undefined {
  if (typeof line.key !== 'string' || (line.integrity !== null && line.integrity !== undefined && !isRecordLine(line))) return 'corrupt';
  if (seen.has(line.key)) return 'duplicate';
  seen.add(line.key);
  if (!line.integrity) return 'dead';
  if (gc.wrongDiffids.has(line.key) && gc.wrongDiffids.get(line.key) === line.time) return 'corrupt';
  if (isMetadataKey(line.key)) return typeof line.time === 'number' && expired(gc, line.time) ? 'expired' : undefined;
  const digest = digestOf(line.integrity);
  // A sha512 entry from some other cacache user is not ours to judge.
  return digest !== undefined && !present(gc, digest) ? 'dead' : undefined;
}

/** A key's bucket file, removed when compaction left it empty (cacache's documented `removeFully`). */
async function removeBucket(cacache: Cacache, dir: string, key: string): Promise<void> {
  const rmEntry = cacache.rm.entry as (cache: string, key: string, opts: { removeFully: boolean }) => Promise<unknown>;
  await rmEntry(dir, key, { removeFully: true });
}

/** Whether a blob is still in the store: found by the scan, or (not in a dry run) stored since. */
function present(gc: Gc, digest: Digest): boolean {
  return gc.blobs.has(digest) || (!gc.dryRun && statFile(gc.cache.blobPath(digest)) !== undefined);
}

function expired(gc: Gc, mtime: number): boolean {
  return gc.ageCutoff !== undefined && mtime < gc.ageCutoff && mtime < gc.cutoff;
}

function digestOf(integrity: string | null | undefined): Digest | undefined {
  if (!integrity) return undefined;
  try {
    return integrityToDigest(integrity);
  } catch {
    return undefined;
  }
}

/** About what a line takes in its bucket: its JSON, a sha1 in hex, a tab and a newline. */
function lineBytes(line: object): number {
  return Buffer.byteLength(JSON.stringify(line)) + 42;
}

/** Index bytes that go with each blob's records (what evicting it also frees). */
function recordBytesByDigest(gc: Gc): Map<Digest, number> {
  const out = new Map<Digest, number>();
  for (const r of gc.records) {
    const d = digestOf(r.integrity);
    if (d !== undefined && !isMetadataKey(r.key)) out.set(d, (out.get(d) ?? 0) + lineBytes(r));
  }
  return out;
}

function summarise(gc: Gc): GcReport {
  const counts: Record<RemovalKind, number> = { blob: 0, record: 0, tmp: 0, stat: 0, lease: 0, trash: 0, code: 0 };
  for (const r of gc.removed) counts[r.kind]++;
  const bytesFreed = gc.removed.reduce((n, r) => n + r.bytes, 0);
  return {
    dryRun: gc.dryRun, removed: gc.removed, counts, bytesFreed, sizeBefore: gc.sizeBefore,
    sizeAfter: Math.max(0, gc.sizeBefore - bytesFreed), protectedBytes: gc.protectedBytes,
    liveLeases: gc.liveLeases, rescued: gc.rescued,
  };
}

/** Moves a blob to its trash name; false if it was already gone. */
function parkBlob(path: string): boolean {
  try {
    renameSync(path, trashPath(path));
    return true;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw err;
  }
}

/**
 * Unlinks a parked blob unless it was used meanwhile: taken back by a reader (gone from the trash
 * name) or touched after the cutoff (put back). Returns whether it was removed.
 */
function finishEviction(path: string, cutoff: number): boolean {
  const trash = trashPath(path);
  const f = statFile(trash);
  if (!f) return false;
  if (f.mtime >= cutoff) {
    try {
      renameSync(trash, path);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
    return false;
  }
  try {
    unlinkSync(trash);
    return true;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw err;
  }
}

function statFile(path: string): PlainFile | undefined {
  try {
    const st = lstatSync(path);
    if (!st.isFile()) return undefined;
    return { path, bytes: st.size, mtime: st.mtimeMs };
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Top-level entries of a folder with their total size and newest mtime (a temp folder is as young
 * as its youngest file). kocache's own folders hold hints only, so one that is not a folder (a
 * file put there by hand) is made a folder again.
 */
function listEntries(dir: string, dryRun = true): PlainFile[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT') return [];
    if (code === 'ENOTDIR') {
      if (!dryRun) ensureOwnFolder(dir);
      return [];
    }
    throw cacheFsError(err, dir, 'list');
  }
  const out: PlainFile[] = [];
  for (const n of names) {
    const t = totals(join(dir, n));
    if (t) out.push(t);
  }
  return out;
}
