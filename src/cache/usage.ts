import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import { errnoCode } from '../errors.js';
import { listFolder, treeSize } from './folders.js';
import { CODE_CACHE_DIR } from './codecaches.js';
import { pinnedDigests } from './pins.js';
import type { CacheStore } from './store.js';

/** What the cache holds, by the kind of key that points at it (src/cache/keys.ts). */
export type UsageKind = 'layers' | 'tars' | 'base-images' | 'archives' | 'other';

export interface KindUsage {
  /** Index records of this kind. */
  records: number;
  /** Distinct blobs they keep (pins.ts; a blob kept by two kinds counts for the first). */
  blobs: number;
  bytes: number;
}

export interface CacheUsage {
  dir: string;
  /** Every byte under the cache folder. */
  total: number;
  kinds: Record<UsageKind, KindUsage>;
  /** The index itself (cacache's index-v5 buckets). */
  index: { records: number; bytes: number };
  /** Blobs no record keeps (base-image content written by an older version, gc's to remove). */
  unreferenced: { blobs: number; bytes: number };
  /** Stat stamps and listings that let a hit skip hashing (src/layer/statcache.ts). */
  stat: { bytes: number };
  /** V8 code caches the launcher makes at run time (gc prunes other bundles'). */
  codeCache: { bytes: number };
  /** Temp files: writes in progress, or left by a killed process (gc removes them). */
  temp: { files: number; bytes: number };
}

// First match wins, so a blob both built and seen in a base image counts as a layer.
const KIND_ORDER: UsageKind[] = ['layers', 'tars', 'base-images', 'archives', 'other'];

function kindOf(key: string): UsageKind | undefined {
  const top = key.slice(0, key.indexOf('/'));
  switch (top) {
    case 'tree':
    case 'bin':
    case 'layer':
      return 'layers';
    case 'tar':
      return 'tars';
    case 'img':
      return 'base-images';
    case 'archive':
      return 'archives';
    case 'seen':
      return undefined; // where a blob was seen: the record is not the blob's owner
    default:
      return 'other';
  }
}

/** Sizes of the cache by kind, read from its index and folders; changes nothing. */
export async function cacheUsage(cache: CacheStore): Promise<CacheUsage> {
  const records = await cache.listRecords();
  const kinds = Object.fromEntries(KIND_ORDER.map((k) => [k, { records: 0, blobs: 0, bytes: 0 }])) as Record<UsageKind, KindUsage>;
  const owner = new Map<string, UsageKind>();
  for (const r of records) {
    const kind = kindOf(r.key);
    if (kind === undefined) continue;
    kinds[kind].records++;
    for (const d of pinnedDigests(r.key, r.digest, r.metadata)) {
      const had = owner.get(d);
      if (had === undefined || KIND_ORDER.indexOf(kind) < KIND_ORDER.indexOf(had)) owner.set(d, kind);
    }
  }
  const onDisk = new Map<string, number>();
  for (const { path, digest } of cache.contentFiles()) {
    const size = digest === undefined ? undefined : fileSize(path);
    if (digest !== undefined && size !== undefined) onDisk.set(digest, size);
  }
  let unrefBlobs = 0;
  let unrefBytes = 0;
  for (const [digest, size] of onDisk) {
    const kind = owner.get(digest);
    if (kind === undefined) {
      unrefBlobs++;
      unrefBytes += size;
    } else {
      kinds[kind].blobs++;
      kinds[kind].bytes += size;
    }
  }
  let tempFiles = 0;
  let tempBytes = 0;
  walk(join(cache.dir, 'tmp'), (_, size) => {
    tempFiles++;
    tempBytes += size;
  });
  return {
    dir: cache.dir,
    total: treeSize(cache.dir),
    kinds,
    index: { records: records.length, bytes: treeSize(join(cache.dir, 'index-v5')) },
    unreferenced: { blobs: unrefBlobs, bytes: unrefBytes },
    stat: { bytes: treeSize(join(cache.dir, 'stat')) },
    codeCache: { bytes: treeSize(join(cache.dir, CODE_CACHE_DIR)) },
    temp: { files: tempFiles, bytes: tempBytes },
  };
}

/** A regular file's size; undefined for anything else, or when it is gone (gc). */
function fileSize(path: string): number | undefined {
  try {
    const st = lstatSync(path);
    return st.isFile() ? st.size : undefined;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/** Every regular file under `dir` with its size; a folder that vanishes meanwhile (gc) is skipped. */
function walk(dir: string, visit: (path: string, size: number) => void): void {
  for (const name of listFolder(dir)) {
    const path = join(dir, name);
    let st;
    try {
      st = lstatSync(path);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') continue;
      throw err;
    }
    if (st.isDirectory()) walk(path, visit);
    else if (st.isFile()) visit(path, st.size);
  }
}
