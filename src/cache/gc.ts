import { setTimeout as sleep } from 'node:timers/promises';
import { lstatSync, readdirSync, renameSync, rmSync, unlinkSync } from 'node:fs';
import { basename, join, relative, sep } from 'node:path';
import { errnoCode } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { type Bucket, type IndexLine, listFiles, liveLines, readBuckets, rewriteBucket, toLiveRecord } from './buckets.js';
import { acquireGcLock, scanLeases } from './lease.js';
import { cacheFsError, ensureOwnFolder } from './damage.js';
import { STAMP_DIR } from './stamp.js';
import { type CacheStore, trashPath } from './store.js';

export interface GcOptions {
  /** Bytes the whole cache folder may occupy. */
  maxSize?: number | undefined;
  /** Content and stat files unused for longer than this (ms) are removed. */
  maxAge?: number | undefined;
  /** Re-hash every blob and drop the corrupt ones. */
  verify?: boolean | undefined;
  dryRun?: boolean | undefined;
  /** Temp files younger than this (ms) are left alone even without any lease: a writer may not have taken one. */
  tmpGraceMs?: number | undefined;
  now?: number | undefined;
  /** How long evicted blobs stay parked under their trash name before they are unlinked. */
  trashGraceMs?: number | undefined;
}

export type RemovalKind = 'blob' | 'record' | 'tmp' | 'stat' | 'lease' | 'trash';
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

/**
 * Collects garbage in the cache: temp files of crashed writers, unreferenced content, dead and
 * duplicate index lines, and — under --max-age/--max-size — least recently used content.
 *
 * Safety with running commands rests on one rule: nothing whose mtime is at or after the cutoff
 * (the oldest live lease's start, or gc's own start) is deleted, because every process with a
 * lease writes new files and touches what it uses. A blob is evicted by renaming it to its trash
 * name, checking its mtime once more, and only then unlinking it; a use in between takes it back
 * (CacheStore.touchBlob). Two gcs never run at once (gc.lock).
 */
export async function collectGarbage(cache: CacheStore, opts: GcOptions = {}): Promise<GcReport> {
  const dir = cache.dir;
  const dryRun = Boolean(opts.dryRun);
  const unlock = dryRun ? () => {} : acquireGcLock(dir);
  let report: GcReport;
  try {
    report = await run(cache, opts, dryRun);
  } finally {
    unlock();
  }
  // Measured once the lock file is gone, so the figure is what the cache now occupies.
  if (!dryRun) report.sizeAfter = treeSize(dir);
  return report;
}

async function run(cache: CacheStore, opts: GcOptions, dryRun: boolean): Promise<GcReport> {
  const dir = cache.dir;
  const now = opts.now ?? Date.now();
  const removed: Removal[] = [];
  const rel = (p: string) => relative(dir, p).split(sep).join('/');
  const note = (kind: RemovalKind, what: string, bytes: number, reason: RemovalReason) => removed.push({ kind, what, bytes, reason });

  const leases = scanLeases(dir, now);
  for (const l of leases.stale) {
    note('lease', rel(l.path), 0, 'stale');
    if (!dryRun) rmSync(l.path, { recursive: true, force: true });
  }
  const cutoff = Math.min(now, ...leases.live.map((l) => l.start)) - MTIME_SLACK_MS;
  const tmpCutoff = Math.min(cutoff, now - (opts.tmpGraceMs ?? DEFAULT_TMP_GRACE_MS));
  const ageCutoff = opts.maxAge === undefined ? undefined : now - opts.maxAge;
  const sizeBefore = treeSize(dir);
  let protectedBytes = 0;

  // Temp files: cacache's tmp/ (a writer killed mid-blob) and the stat cache's *.tmp, once old enough
  // that no running writer can own them.
  for (const f of listEntries(join(dir, 'tmp'))) {
    if (f.mtime < tmpCutoff) {
      note('tmp', rel(f.path), f.bytes, 'leftover');
      if (!dryRun) rmSync(f.path, { recursive: true, force: true });
    }
  }
  const statFiles: PlainFile[] = [];
  for (const f of listEntries(join(dir, 'stat'), dryRun)) {
    if (f.path.endsWith('.tmp')) {
      if (f.mtime < tmpCutoff) {
        note('tmp', rel(f.path), f.bytes, 'leftover');
        if (!dryRun) rmSync(f.path, { recursive: true, force: true });
      }
    } else if (f.path.endsWith('.json')) {
      if (ageCutoff !== undefined && f.mtime < ageCutoff && f.mtime < cutoff) {
        note('stat', rel(f.path), f.bytes, 'expired');
        if (!dryRun) rmSync(f.path, { recursive: true, force: true });
      } else {
        statFiles.push(f);
      }
    }
  }

  // Content, and the index that refers to it.
  const blobs = new Map<Digest, BlobFile>();
  for (const path of listFiles(join(dir, 'content-v2', 'sha256'), 3)) {
    const f = statFile(path);
    if (!f) continue;
    if (path.endsWith('.gc')) {
      // Left by a gc that died between rename and unlink: the eviction had been decided.
      if (f.mtime < cutoff) {
        note('trash', rel(path), f.bytes, 'leftover');
        if (!dryRun) rmSync(path, { force: true });
      }
      continue;
    }
    const parts = rel(path).split('/');
    const hex = parts.slice(-3).join('');
    if (!/^[a-f0-9]{64}$/.test(hex)) continue;
    blobs.set(`sha256:${hex}`, { digest: `sha256:${hex}`, ...f });
  }
  const buckets = readBuckets(dir);
  const keysByDigest = new Map<Digest, string[]>();
  for (const b of buckets) {
    for (const line of liveLines(b)) {
      const r = toLiveRecord(line, b.path);
      if (!r || isMetadataKey(r.key)) continue;
      const list = keysByDigest.get(r.digest) ?? [];
      list.push(r.key);
      keysByDigest.set(r.digest, list);
    }
  }

  const evict = new Map<Digest, RemovalReason>();
  if (opts.verify) {
    for (const blob of blobs.values()) {
      // verifyBlob drops a corrupt blob itself, so a dry run hashes a copy of the decision only.
      const state = dryRun ? await cache.checkBlob(blob.digest) : await cache.verifyBlob(blob.digest);
      if (state === 'corrupt') {
        note('blob', rel(blob.path), blob.bytes, 'corrupt');
        blobs.delete(blob.digest);
      }
    }
  }
  const removable = (b: { mtime: number; bytes: number }) => {
    if (b.mtime < cutoff) return true;
    protectedBytes += b.bytes;
    return false;
  };
  for (const blob of blobs.values()) {
    if (!keysByDigest.has(blob.digest)) {
      if (blob.mtime < cutoff) evict.set(blob.digest, 'unreferenced');
    } else if (ageCutoff !== undefined && blob.mtime < ageCutoff && blob.mtime < cutoff) {
      evict.set(blob.digest, 'expired');
    }
  }

  // Size pressure: cheapest-to-lose first. Uncompressed tars and base-image blobs can be
  // regenerated or refetched; built layers cost a build; the stat files that let a build skip
  // hashing its inputs are tiny and go last.
  if (opts.maxSize !== undefined) {
    let size = sizeBefore - removed.reduce((n, r) => n + r.bytes, 0) - sumBytes(blobs, evict);
    const tierOf = (d: Digest) => ((keysByDigest.get(d) ?? []).every((k) => k.startsWith('tar/') || k.startsWith('img/')) ? 0 : 1);
    const candidates = [...blobs.values()]
      .filter((b) => !evict.has(b.digest))
      .sort((a, b) => tierOf(a.digest) - tierOf(b.digest) || a.mtime - b.mtime);
    for (const b of candidates) {
      if (size <= opts.maxSize) break;
      if (!removable(b)) continue;
      evict.set(b.digest, 'size');
      size -= b.bytes + recordBytes(buckets, keysByDigest.get(b.digest) ?? []);
    }
    for (const f of [...statFiles].sort((a, b) => a.mtime - b.mtime)) {
      if (size <= opts.maxSize) break;
      if (!removable(f)) continue;
      note('stat', rel(f.path), f.bytes, 'size');
      if (!dryRun) rmSync(f.path, { recursive: true, force: true });
      size -= f.bytes;
    }
  }

  // Evict in two steps with a pause between: park every victim under its trash name, wait, then
  // unlink only those nobody took back or touched meanwhile. A process that looked at a blob just
  // before it was parked (a build's hit, a writer whose identical blob was already stored) gets
  // the whole pause to touch it and keep it.
  let rescued = 0;
  const parked: { digest: Digest; blob: BlobFile; reason: RemovalReason }[] = [];
  for (const [digest, reason] of evict) {
    const blob = blobs.get(digest);
    if (!blob) continue;
    if (dryRun) {
      note('blob', rel(blob.path), blob.bytes, reason);
      blobs.delete(digest);
      continue;
    }
    // Looked at again right before it is parked: the plan is as old as the scan (and a --verify
    // pass may have taken minutes since), and a command that used the blob meanwhile keeps it.
    const now = statFile(blob.path);
    if (!now) continue;
    if (now.mtime !== blob.mtime || now.mtime >= cutoff) {
      rescued++;
      continue;
    }
    if (parkBlob(blob.path)) parked.push({ digest, blob, reason });
  }
  if (parked.length > 0) await sleep(opts.trashGraceMs ?? DEFAULT_TRASH_GRACE_MS);
  for (const { digest, blob, reason } of parked) {
    if (!finishEviction(blob.path, cutoff)) {
      rescued++;
      continue;
    }
    note('blob', rel(blob.path), blob.bytes, reason);
    blobs.delete(digest);
  }

  // Verified stamps (src/cache/stamp.ts) of blobs that are gone: a small file each, of no use now.
  // The blob is looked up again on disk, so a stamp written for a blob stored after the scan stays.
  for (const f of listEntries(join(dir, STAMP_DIR), dryRun)) {
    const hex = basename(f.path);
    if (!/^[a-f0-9]{64}$/.test(hex)) continue;
    const digest: Digest = `sha256:${hex}`;
    if (blobs.has(digest) || (!dryRun && statFile(cache.blobPath(digest)) !== undefined)) continue;
    note('stat', rel(f.path), f.bytes, 'unreferenced');
    if (!dryRun) rmSync(f.path, { recursive: true, force: true });
  }

  // Compaction: per bucket keep the newest line of each key whose blob is still here. Every
  // writer stores the blob before the record, so a record without its blob is dead at any age.
  // A blob stored after the scan (its record may be in a bucket re-read below) counts as present.
  const present = (d: Digest) => blobs.has(d) || (!dryRun && statFile(cache.blobPath(d)) !== undefined);
  for (let b of buckets) {
    for (let attempt = 0; attempt < 3; attempt++) {
      const { keep, dropped } = compactBucket(b, present, cutoff, ageCutoff);
      if (dropped.length === 0) break;
      if (dryRun || attempt === 2) {
        for (const d of dropped) note('record', d.key, d.bytes, d.reason);
        break;
      }
      if (rewriteBucket(dir, b, keep)) {
        for (const d of dropped) note('record', d.key, d.bytes, d.reason);
        break;
      }
      const again = readBuckets(dir).find((x) => x.path === b.path);
      if (!again) break;
      b = again;
    }
  }

  const counts: Record<RemovalKind, number> = { blob: 0, record: 0, tmp: 0, stat: 0, lease: 0, trash: 0 };
  for (const r of removed) counts[r.kind]++;
  const bytesFreed = removed.reduce((n, r) => n + r.bytes, 0);
  const sizeAfter = Math.max(0, sizeBefore - bytesFreed);
  return { dryRun, removed, counts, bytesFreed, sizeBefore, sizeAfter, protectedBytes, liveLeases: leases.live.length, rescued };
}

interface DroppedLine {
  key: string;
  bytes: number;
  reason: RemovalReason;
}

/**
 * Records that describe something elsewhere rather than a blob here (`seen/`: which remote
 * repositories hold a digest, for mounts). Their digest is usually not in the content store, so
 * they are neither references that keep content alive nor dead when it is absent; only
 * --max-age ends them.
 */
export function isMetadataKey(key: string): boolean {
  return key.startsWith('seen/');
}

function compactBucket(
  b: Bucket,
  present: (d: Digest) => boolean,
  cutoff: number,
  ageCutoff: number | undefined,
): { keep: IndexLine[]; dropped: DroppedLine[] } {
  const latest = new Map<string, IndexLine>();
  for (const line of b.lines) latest.set(line.key, line);
  const keep: IndexLine[] = [];
  const dropped: DroppedLine[] = [];
  for (const line of b.lines) {
    const bytes = Buffer.byteLength(line.raw) + 1;
    if (latest.get(line.key) !== line) {
      dropped.push({ key: line.key, bytes, reason: 'duplicate' });
      continue;
    }
    if (line.integrity === null) {
      dropped.push({ key: line.key, bytes, reason: 'dead' });
      continue;
    }
    if (isMetadataKey(line.key)) {
      if (ageCutoff !== undefined && line.time < ageCutoff && line.time < cutoff) {
        dropped.push({ key: line.key, bytes, reason: 'expired' });
        continue;
      }
    } else {
      const r = toLiveRecord(line, b.path);
      if (r && !present(r.digest)) {
        dropped.push({ key: line.key, bytes, reason: 'dead' });
        continue;
      }
    }
    keep.push(line);
  }
  // Torn lines are not records, but dropping them is part of the rewrite.
  if (b.torn > 0 && dropped.length === 0) dropped.push({ key: '(torn index line)', bytes: 0, reason: 'dead' });
  return { keep, dropped };
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

function sumBytes(blobs: Map<Digest, BlobFile>, evict: Map<Digest, RemovalReason>): number {
  let n = 0;
  for (const d of evict.keys()) n += blobs.get(d)?.bytes ?? 0;
  return n;
}

function recordBytes(buckets: Bucket[], keys: string[]): number {
  if (keys.length === 0) return 0;
  const want = new Set(keys);
  let n = 0;
  for (const b of buckets) for (const l of b.lines) if (want.has(l.key)) n += Buffer.byteLength(l.raw) + 1;
  return n;
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
    const t = walkTotals(join(dir, n));
    if (t) out.push(t);
  }
  return out;
}

function walkTotals(path: string): PlainFile | undefined {
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  if (!st.isDirectory()) return { path, bytes: st.size, mtime: st.mtimeMs };
  let bytes = 0;
  let mtime = st.mtimeMs;
  for (const n of safeReaddir(path)) {
    const t = walkTotals(join(path, n));
    if (!t) continue;
    bytes += t.bytes;
    mtime = Math.max(mtime, t.mtime);
  }
  return { path, bytes, mtime };
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw err;
  }
}

/** Bytes of every file under the cache folder: what --max-size bounds. */
export function treeSize(dir: string): number {
  return walkTotals(dir)?.bytes ?? 0;
}

