import { lstatSync, statSync } from 'node:fs';
import { basename, posix, resolve } from 'node:path';
import { KocacheError, fsError } from '../errors.js';

/** What goes into one layer: a file or directory on disk and where it lands in the image. */
export interface LayerSource {
  /** Absolute path on disk. */
  src: string;
  /** Absolute path in the image, normalised, no trailing slash ('' for /). */
  dest: string;
}

/**
 * Parses `SRC[:DEST]`. The split is at the last `:` followed by `/`, since DEST is always absolute
 * and SRC may itself contain colons. A file with no DEST lands at /<its name>; a directory at /.
 * A DEST ending in `/` receives a file under its own name.
 */
export function parseLayerSource(spec: string, cwd = process.cwd()): LayerSource {
  if (!spec) throw new KocacheError('input', 'empty layer source: want SRC[:DEST]');
  const at = spec.lastIndexOf(':/');
  const rawSrc = at > 0 ? spec.slice(0, at) : spec;
  const rawDest = at > 0 ? spec.slice(at + 1) : undefined;
  const src = resolve(cwd, rawSrc);
  let isDir: boolean;
  try {
    const st = lstatSync(src);
    isDir = st.isDirectory() || (st.isSymbolicLink() && lstatIsDirFollow(src));
  } catch (err) {
    throw fsError(err, rawSrc, 'read layer source');
  }
  let dest = rawDest ?? (isDir ? '/' : `/${basename(src)}`);
  if (!isDir && dest.endsWith('/')) dest += basename(src);
  return { src, dest: normaliseDest(dest) };
}

function lstatIsDirFollow(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

export function normaliseDest(dest: string): string {
  if (!dest.startsWith('/')) throw new KocacheError('input', `destination ${JSON.stringify(dest)} must be an absolute path in the image`);
  if (dest.split('/').includes('..')) throw new KocacheError('input', `destination ${JSON.stringify(dest)} must not contain ..`);
  if (dest.includes('\0')) throw new KocacheError('input', 'destination must not contain NUL');
  const n = posix.normalize(dest).replace(/\/+$/, '');
  return n === '/' ? '' : n;
}
