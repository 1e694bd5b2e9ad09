import { readFileSync, rmSync, unlinkSync, writeFileSync, type BigIntStats } from 'node:fs';
import { join } from 'node:path';
import { ensureOwnFolder } from './damage.js';
import { type Digest, digestHex } from '../oci/digest.js';

/**
 * Verified stamps: `<cache>/verified/<hex>` holds the (size, inode, mtime, ctime) a blob file had
 * when its bytes last hashed to its digest. While the file still has exactly that stat, nothing
 * has written to it since (any write, chmod or utimes moves ctime, which no caller can set back),
 * so a cache hit need not re-read it: re-hashing a 48 MB layer was ~40 ms of a ~500 ms hit.
 * Bytes that are served (uploaded, exported) are still hashed as they stream; `kocache gc
 * --verify` re-hashes everything regardless of stamps, for damage that leaves the stat alone.
 *
 * A stamp is only a hint that saves work: a missing, torn or stale one means "hash it again".
 */
export const STAMP_DIR = 'verified';

export function stampPath(cacheDir: string, digest: Digest): string {
  return join(cacheDir, STAMP_DIR, digestHex(digest));
}

function render(st: BigIntStats): string {
  return `${st.size} ${st.ino} ${st.mtimeNs} ${st.ctimeNs}\n`;
}

export function stampMatches(cacheDir: string, digest: Digest, st: BigIntStats): boolean {
  try {
    return readFileSync(stampPath(cacheDir, digest), 'utf8') === render(st);
  } catch {
    return false;
  }
}

export function writeStamp(cacheDir: string, digest: Digest, st: BigIntStats): void {
  const path = stampPath(cacheDir, digest);
  try {
    replaceFile(path, render(st));
  } catch {
    // No folder yet, or something in its place (or in the stamp's): made right, then once more.
    // Without a stamp the next hit hashes the blob again; nothing is wrong.
    try {
      if (ensureOwnFolder(join(cacheDir, STAMP_DIR))) rmSync(path, { recursive: true, force: true });
      writeFileSync(path, render(st));
    } catch {
      /* see above */
    }
  }
}

/**
 * A new file in place of the old one, not the old one truncated: truncating a file on ext4 starts
 * writing its blocks to disk, and the next truncate of it waits for that write (every hit rewrites
 * its blob's stamp, so back-to-back hits waited on the disk; docs/performance.md).
 */
function replaceFile(path: string, text: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  writeFileSync(path, text);
}

export function dropStamp(cacheDir: string, digest: Digest): void {
  try {
    rmSync(stampPath(cacheDir, digest), { recursive: true, force: true });
  } catch {
    // A stamp left behind is harmless: it only vouches for a file with exactly its stat.
  }
}
