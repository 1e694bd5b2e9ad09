import { open, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { KocacheError, fsError } from '../errors.js';
import { isGzipMagic } from './inflate.js';

/** How an archive is packaged, told by its first bytes (a file name says nothing reliable). */
export type ArchiveFormat = 'tar' | 'gzip' | 'layout';

export interface ArchiveFileInfo {
  path: string;
  format: ArchiveFormat;
  stats: Stats;
}

const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

/** Looks at a path: an OCI layout directory, a tar, or a gzipped tar. Anything else is refused. */
export async function detectArchive(path: string): Promise<ArchiveFileInfo> {
  let stats: Stats;
  try {
    stats = await stat(path);
  } catch (err) {
    throw fsError(err, path, 'read archive');
  }
  if (stats.isDirectory()) return { path, format: 'layout', stats };
  if (!stats.isFile()) throw new KocacheError('archive', `${path} is not a file or an OCI layout directory`);
  const head = Buffer.alloc(512);
  let n: number;
  try {
    const fh = await open(path, 'r');
    try {
      n = (await fh.read(head, 0, 512, 0)).bytesRead;
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw fsError(err, path, 'read archive');
  }
  if (n === 0) throw new KocacheError('archive', `${path} is empty`);
  if (isGzipMagic(head.subarray(0, n))) return { path, format: 'gzip', stats };
  if (ZSTD_MAGIC.every((b, i) => head[i] === b)) {
    throw new KocacheError('archive', `${path} is zstd-compressed; kocache reads plain or gzipped tar archives (decompress it with zstd -d first)`);
  }
  // POSIX and GNU tar both put "ustar" at offset 257 of the first header.
  if (n === 512 && head.subarray(257, 262).toString('latin1') === 'ustar') return { path, format: 'tar', stats };
  throw new KocacheError('archive', `${path} is not a tar archive, a gzipped tar archive or an OCI layout directory`);
}

/** Whether a file is still the one that was hashed (an archive rewritten mid-import must not be recorded). */
export async function unchangedSince(path: string, before: Stats): Promise<boolean> {
  const now = await stat(path).catch(() => undefined);
  return now !== undefined && now.size === before.size && now.mtimeMs === before.mtimeMs && now.ino === before.ino;
}
