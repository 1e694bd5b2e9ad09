import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { errnoCode } from '../errors.js';
import { type Digest, integrityToDigest } from '../oci/digest.js';

/**
 * cacache's index, read and rewritten without cacache: gc needs every line of every bucket
 * (cacache.ls hides tombstones and duplicates, which are exactly what compaction removes) and a
 * rewrite that notices a concurrent append instead of silently dropping it.
 *
 * A bucket is `index-v5/<2 hex>/<2 hex>/<60 hex>` (sha256 of the key); each line is
 * `<sha1 of json>\t<json>`, appended, newest last; a null integrity deletes the key.
 */
export interface IndexLine {
  key: string;
  integrity: string | null;
  time: number;
  size?: number;
  metadata?: unknown;
  /** The raw line as stored (without the newline), reused when it is kept. */
  raw: string;
}

export interface Bucket {
  path: string;
  /** Size when read; a rewrite first checks it is unchanged. */
  bytes: number;
  lines: IndexLine[];
  /** Lines whose checksum failed (torn appends); compaction drops them. */
  torn: number;
}

export interface LiveRecord {
  key: string;
  digest: Digest;
  size: number;
  time: number;
  bucket: string;
}

export function indexDir(cacheDir: string): string {
  return join(cacheDir, 'index-v5');
}

function sha1(s: string): string {
  return createHash('sha1').update(s).digest('hex');
}

export function parseBucket(path: string, text: string): Bucket {
  const lines: IndexLine[] = [];
  let torn = 0;
  for (const raw of text.split('\n')) {
    if (raw === '') continue;
    const tab = raw.indexOf('\t');
    const json = tab < 0 ? '' : raw.slice(tab + 1);
    if (tab < 0 || sha1(json) !== raw.slice(0, tab)) {
      torn++;
      continue;
    }
    try {
      const e = JSON.parse(json) as Omit<IndexLine, 'raw'>;
      // A line is input like any other: one with a right checksum but wrong fields counts as torn.
      if (typeof e !== 'object' || e === null || typeof e.key !== 'string' || typeof e.time !== 'number') throw new Error('bad line');
      if (e.integrity !== null && e.integrity !== undefined && typeof e.integrity !== 'string') throw new Error('bad line');
      if (e.size !== undefined && (typeof e.size !== 'number' || !Number.isSafeInteger(e.size) || e.size < 0)) throw new Error('bad line');
      lines.push({ ...e, integrity: e.integrity ?? null, raw });
    } catch {
      torn++;
    }
  }
  return { path, bytes: Buffer.byteLength(text), lines, torn };
}

/** Every bucket file under index-v5, read synchronously (thousands of small files: see notes). */
export function readBuckets(cacheDir: string): Bucket[] {
  const out: Bucket[] = [];
  for (const path of listFiles(indexDir(cacheDir), 3)) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') continue;
      throw err;
    }
    out.push(parseBucket(path, text));
  }
  return out;
}

/** The newest line per key, as cacache's `find` resolves it; undefined when the newest is a deletion. */
export function liveLines(bucket: Bucket): IndexLine[] {
  const latest = new Map<string, IndexLine>();
  for (const line of bucket.lines) latest.set(line.key, line);
  return [...latest.values()].filter((l) => l.integrity !== null);
}

export function toLiveRecord(line: IndexLine, bucket: string): LiveRecord | undefined {
  if (!line.integrity) return undefined;
  let digest: Digest;
  try {
    digest = integrityToDigest(line.integrity);
  } catch {
    return undefined; // a sha512 entry from some other cacache user: not ours to judge
  }
  return { key: line.key, digest, size: line.size ?? 0, time: line.time, bucket };
}

/**
 * Rewrites a bucket with only `keep`. If the bucket grew since it was read (a concurrent insert
 * appended a line), nothing is written and false is returned so the caller can re-read and redo
 * it: losing an append would silently lose a record. An empty result removes the file but never
 * its folder, because cacache's insert does mkdir and then append, and a folder removed between
 * the two makes the insert fail quietly.
 */
export function rewriteBucket(cacheDir: string, bucket: Bucket, keep: IndexLine[]): boolean {
  const body = keep.length === 0 ? '' : `\n${keep.map((l) => l.raw).join('\n')}`;
  const current = sizeOf(bucket.path);
  if (current !== bucket.bytes) return false;
  if (keep.length === 0) {
    try {
      unlinkSync(bucket.path);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
    return true;
  }
  const tmpDir = join(cacheDir, 'tmp');
  mkdirSync(tmpDir, { recursive: true });
  const tmp = join(tmpDir, `gc-bucket-${randomBytes(6).toString('hex')}`);
  writeFileSync(tmp, body, { flag: 'wx' });
  try {
    if (sizeOf(bucket.path) !== bucket.bytes) return false;
    renameSync(tmp, bucket.path);
    return true;
  } finally {
    rmSync(tmp, { force: true });
  }
}

function sizeOf(path: string): number | undefined {
  try {
    return statSync(path).size;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/** Files exactly `depth` folders below `root` (cacache's fan-out); missing folders are empty. */
export function listFiles(root: string, depth: number): string[] {
  let level = [root];
  for (let d = 0; d < depth; d++) {
    const next: string[] = [];
    for (const dir of level) {
      let names: string[];
      try {
        names = readdirSync(dir);
      } catch (err) {
        const code = errnoCode(err);
        if (code === 'ENOENT' || code === 'ENOTDIR') continue;
        throw err;
      }
      for (const n of names) next.push(join(dir, n));
    }
    level = next;
  }
  return level;
}
