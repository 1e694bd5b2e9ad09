import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { errnoCode } from '../errors.js';
import { cacheFsError } from './damage.js';

/** A file, or a folder with the bytes of every file under it and the newest mtime there. */
export interface Totals {
  path: string;
  bytes: number;
  mtime: number;
}

/**
 * The names in a folder of the cache; none when it is missing or is not a folder (a file where a
 * folder belongs is damage the caller may repair). Other errors are one line naming the folder.
 */
export function listFolder(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw cacheFsError(err, dir, 'list');
  }
}

/** Totals of a path (a temp folder is as young as its youngest file); undefined when it is gone. */
export function totals(path: string): Totals | undefined {
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw cacheFsError(err, path, 'look at');
  }
  if (!st.isDirectory()) return { path, bytes: st.size, mtime: st.mtimeMs };
  let bytes = 0;
  let mtime = st.mtimeMs;
  for (const n of listFolder(path)) {
    const t = totals(join(path, n));
    if (!t) continue;
    bytes += t.bytes;
    mtime = Math.max(mtime, t.mtime);
  }
  return { path, bytes, mtime };
}

/** Bytes of every file under a folder (what gc --max-size bounds for the whole cache). */
export function treeSize(dir: string): number {
  return totals(dir)?.bytes ?? 0;
}
