import { lstatSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { KocacheError, errnoAdvice, errnoCode } from '../errors.js';

/**
 * What the cache does about a file-system error it cannot work around: one line that names the
 * path, says what went wrong in words, and what to do about it. The cache is a folder people can
 * reach into (a full disk, a folder replaced by a file, a permission changed by hand), so these
 * are the operator's errors to fix, not kocache's bugs.
 */
export function cacheFsError(err: unknown, path: string, doing: string): KocacheError {
  if (err instanceof KocacheError) return err;
  const code = errnoCode(err);
  const [why, todo] =
    code === 'ENOSPC' ? ['no space left on the device', errnoAdvice(code)]
    : code === 'EDQUOT' ? ['the disk quota is used up', errnoAdvice(code)]
    : code === 'EACCES' || code === 'EPERM' ? ['permission denied', 'give this user write access to the cache folder, or point KOCACHE elsewhere']
    : code === 'EROFS' ? ['read-only file system', 'point KOCACHE at a writable folder']
    : code === 'ENOTDIR' ? ['a folder on the way is a file', 'remove that file (or the whole cache folder: it only holds what kocache can redo)']
    : code === 'EISDIR' ? ['it is a folder', 'remove it (or the whole cache folder: it only holds what kocache can redo)']
    : code === 'EEXIST' ? ['something else is in the way', 'remove it (or the whole cache folder: it only holds what kocache can redo)']
    : code === 'EIO' ? ['input/output error', 'check the disk']
    : code === 'EMFILE' || code === 'ENFILE' ? ['too many open files', errnoAdvice(code)]
    : [err instanceof Error ? err.message.replace(/\s+/g, ' ') : String(err), 'check the cache folder, or run kocache gc --verify'];
  return new KocacheError('cache', `cannot ${doing} ${path} in the cache: ${why}; ${todo}`, { cause: err });
}

/**
 * Makes sure one of kocache's own folders in the cache (built/, verified/, stat/, leases/) is a
 * folder. Something else in its place (a file, a link) is replaced: everything under these
 * folders is a hint kocache can redo, so removing what is in the way loses nothing. Returns
 * whether the folder is there now; a failure (a read-only cache) is left to the caller's write.
 */
export function ensureOwnFolder(dir: string): boolean {
  try {
    if (lstatSync(dir).isDirectory()) return true;
    rmSync(dir, { recursive: true, force: true });
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') return false;
  }
  try {
    mkdirSync(dir, { recursive: true });
    return true;
  } catch {
    return false;
  }
}

/**
 * After an EISDIR from cacache's index: bucket files of the index (`index-v5/xx/yy/<hash>`) that
 * are folders (put there by hand or another program) are damage like a bad line, so they are
 * removed and their keys miss. True when one was, and the index call may be made again.
 */
export function dropFolderBuckets(cache: string, err: unknown): boolean {
  if (errnoCode(err) !== 'EISDIR') return false;
  const index = join(cache, 'index-v5');
  let dropped = false;
  const folders = (dir: string) => {
    try {
      return readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(dir, e.name));
    } catch {
      return [];
    }
  };
  for (const bucket of folders(index).flatMap(folders).flatMap(folders)) {
    try {
      rmSync(bucket, { recursive: true, force: true });
      dropped = true;
    } catch {
      // Left: the index call fails again, with the one line it would have given.
    }
  }
  return dropped;
}
