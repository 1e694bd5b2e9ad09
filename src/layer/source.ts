import { existsSync, lstatSync, statSync } from 'node:fs';
import { basename, posix, resolve } from 'node:path';
import { KocacheError, fsError, usageError } from '../errors.js';
import type { ExcludeFilter } from './exclude.js';
import type { LayerModePolicy } from './tarspec.js';

/** What goes into one layer: a file or directory on disk and where it lands in the image. */
export interface LayerSource {
  /** Absolute path on disk. */
  src: string;
  /** Absolute path in the image, normalised, no trailing slash ('' for /). */
  dest: string;
  /** Owner of the layer's entries (`SRC:DEST:UID:GID`, or --owner); default 0:0. */
  owner?: { uid: number; gid: number } | undefined;
  /** Permission bits: normalised (default) or kept as on disk (--mode keep). */
  mode?: LayerModePolicy | undefined;
  /** Paths under SRC left out (--exclude, --exclude-from). */
  exclude?: ExcludeFilter | undefined;
}

/**
 * Parses `SRC[:DEST]`. The split is at the last `:` followed by `/`, since DEST is always absolute
 * and SRC may itself contain colons. A file with no DEST lands at /<its name>; a directory at /.
 * A DEST ending in `/` receives a file under its own name.
 */
export function parseLayerSource(spec: string, cwd = process.cwd()): LayerSource {
  if (!spec) throw usageError('empty layer source: want SRC[:DEST]');
  const { src: rawSrc, dest: rawDest, owner } = parseLayerSpecText(spec);
  const src = resolve(cwd, rawSrc);
  let isDir: boolean;
  try {
    const st = lstatSync(src);
    isDir = st.isDirectory() || (st.isSymbolicLink() && lstatIsDirFollow(src));
  } catch (err) {
    throw relativeDest(spec, cwd) ?? fsError(err, rawSrc, 'read layer source');
  }
  let dest = rawDest ?? (isDir ? '/' : `/${basename(src)}`);
  if (!isDir && dest.endsWith('/')) dest += basename(src);
  return owner ? { src, dest: normaliseDest(dest), owner } : { src, dest: normaliseDest(dest) };
}

/** `./out:app` names no file; when `./out` is one, the DEST was meant and lacks its leading `/`. */
export function relativeDest(spec: string, cwd: string): KocacheError | undefined {
  if (existsSync(resolve(cwd, spec))) return undefined;
  const colon = spec.lastIndexOf(':');
  if (colon <= 0 || colon === spec.length - 1 || spec[colon + 1] === '/') return undefined;
  try {
    lstatSync(resolve(cwd, spec.slice(0, colon)));
  } catch {
    return undefined;
  }
  const dest = spec.slice(colon + 1);
  return usageError(`in ${JSON.stringify(spec)}, DEST ${JSON.stringify(dest)} must be an absolute path in the image: ${spec.slice(0, colon)}:/${dest}`);
}

/**
 * A DEST ending in two `:` fields that read as user or group names or ids, not both ids (those are
 * an owner): an owner given by name. A DEST whose last name really ends so cannot be written.
 */
const OWNER_NAME = '(?:[A-Za-z_][A-Za-z0-9_.-]*\\$?|\\d+)';
const OWNER_NAMES = new RegExp(`^(.*?):(${OWNER_NAME}):(${OWNER_NAME})$`);

/** Splits `SRC[:DEST]` at the last `:` followed by `/` (see parseLayerSource); nothing is looked at on disk. */
export function parseLayerSpecText(spec: string): { src: string; dest?: string; owner?: { uid: number; gid: number } } {
  const at = spec.lastIndexOf(':/');
  if (at <= 0) return { src: spec };
  const src = spec.slice(0, at);
  const dest = spec.slice(at + 1);
  // SRC:DEST:UID:GID, containerify's --layerOwner per layer.
  const owned = /^(.*?):(\d+):(\d+)$/.exec(dest);
  if (!owned) {
    // `/app:nonroot:nonroot` would be a folder of that name: names in the owner's place are refused.
    const named = OWNER_NAMES.exec(dest);
    if (named) throw usageError(`in ${JSON.stringify(spec)}, the owner ${JSON.stringify(`${named[2]}:${named[3]}`)} must be numeric UID:GID (names are not looked up in the image), e.g. ${src}:${named[1]}:65532:65532`);
    return { src, dest };
  }
  return { src, dest: owned[1]!, owner: parseOwner(`${owned[2]}:${owned[3]}`) };
}

/** `UID:GID` as numbers (names cannot be resolved without the image's /etc/passwd). */
export function parseOwner(s: string): { uid: number; gid: number } {
  const m = /^(\d+):(\d+)$/.exec(s);
  const uid = m ? Number(m[1]) : NaN;
  const gid = m ? Number(m[2]) : NaN;
  // ustar's 7 octal digits hold ids up to 2097151; tar-stream writes no base-256 ids.
  if (!m || uid > 0o7777777 || gid > 0o7777777) throw usageError(`owner ${JSON.stringify(s)}: want UID:GID as numbers up to 2097151, e.g. 65532:65532`);
  return { uid, gid };
}

function lstatIsDirFollow(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

export function normaliseDest(dest: string): string {
  if (!dest.startsWith('/')) throw usageError(`destination ${JSON.stringify(dest)} must be an absolute path in the image`);
  if (dest.split('/').includes('..')) throw usageError(`destination ${JSON.stringify(dest)} must not contain ..`);
  if (dest.includes('\0')) throw usageError('destination must not contain NUL');
  const n = posix.normalize(dest).replace(/\/+$/, '');
  return n === '/' ? '' : n;
}
