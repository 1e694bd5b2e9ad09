import { constants, lstatSync, readdirSync, readlinkSync, statSync, type Stats } from 'node:fs';
import { resolve } from 'node:path';
import { KocacheError, fsError } from '../errors.js';

export type EntryType = 'file' | 'directory' | 'symlink';

/** One file-system entry below a source root, as the layer and the fingerprint see it. */
export interface SourceEntry {
  /** Path relative to the source root, `/`-separated; '' for the root itself. */
  rel: string;
  abs: string;
  type: EntryType;
  /** Permission bits as on disk (mode & 0o7777). */
  mode: number;
  size: number;
  linkTarget?: string;
  /**
   * When the path is not valid UTF-8 (a Latin-1 name on disk): its bytes relative to the root,
   * and the whole path as bytes for the file system. `rel` then holds the bytes read as Latin-1,
   * for sorting and the stat cache. The tar keeps the bytes, as GNU tar does.
   */
  rawRel?: Buffer;
  rawAbs?: Buffer;
  /**
   * For the stat cache: what must be unchanged for a cached content hash to be trusted. Plain
   * numbers, not BigInts: lstat with `bigint` makes 18 BigInts per call, a measurable part of a
   * hit (docs/performance.md). Times are ms with a fraction, exact to ~0.25 us
   * today; the stat cache re-hashes anything changed within 2 s of a walk, so two states of a
   * file it trusts are seconds apart. An inode above 2^53 loses its low bits, and is still one
   * of five fields that must all match.
   */
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  dev: number;
}

function toEntry(rel: string, abs: string, st: Stats, raw?: { rel: Buffer; abs: Buffer }): SourceEntry {
  let type: EntryType;
  let linkTarget: string | undefined;
  const format = st.mode & constants.S_IFMT;
  if (format === constants.S_IFREG) type = 'file';
  else if (format === constants.S_IFDIR) type = 'directory';
  else if (format === constants.S_IFLNK) {
    type = 'symlink';
    try {
      linkTarget = readlinkSync(raw?.abs ?? abs, 'utf8');
    } catch (err) {
      throw fsError(err, abs, 'read link');
    }
  } else {
    const kind = format === constants.S_IFSOCK ? 'a socket' : format === constants.S_IFIFO ? 'a named pipe' : 'a device';
    throw new KocacheError('input', `cannot put ${abs} in a layer: it is ${kind}`);
  }
  const entry: SourceEntry = {
    rel,
    abs,
    type,
    mode: st.mode & 0o7777,
    size: type === 'file' ? st.size : 0,
    mtimeMs: st.mtimeMs,
    ctimeMs: st.ctimeMs,
    ino: st.ino,
    dev: st.dev,
  };
  if (linkTarget !== undefined) entry.linkTarget = linkTarget;
  if (raw) {
    entry.rawRel = raw.rel;
    entry.rawAbs = raw.abs;
  }
  return entry;
}

const UTF16_ORDER_DIFFERS = /[\uD800-\uFFFF]/;

/**
 * Lists a file or a directory tree, sorted by path. Symbolic links are listed as links and never
 * followed, so nothing outside the tree ends up in a layer. Synchronous on purpose: for thousands
 * of small files readdirSync + lstatSync is far faster than the promise API, whose every call is a
 * libuv thread-pool round trip (docs/performance.md).
 */
export function walkSource(root: string): SourceEntry[] {
  const rootEntry = statRoot(root);
  const out: SourceEntry[] = [rootEntry];
  if (rootEntry.type !== 'directory') return out;
  // Paths joined by hand from a normalised root: path.join per entry showed in a hit (docs/performance.md).
  const rootAbs = resolve(root);
  const base = rootAbs === '/' ? '' : rootAbs; // so that `${base}/${name}` is right under / too
  const stack: { rel: string; raw?: { rel: Buffer; abs: Buffer } | undefined }[] = [{ rel: '' }];
  while (stack.length > 0) {
    const { rel, raw } = stack.pop()!;
    const prefix = rel === '' ? base : `${base}/${rel}`;
    const dirAbs = prefix || '/';
    let names: string[];
    try {
      names = raw ? [] : readdirSync(dirAbs);
    } catch (err) {
      throw fsError(err, dirAbs, 'read directory');
    }
    // A name that is not UTF-8 comes back with U+FFFD in it: that folder is read again as bytes.
    if (raw || names.some((n) => n.includes('\uFFFD'))) {
      for (const child of rawChildren(raw?.abs ?? Buffer.from(dirAbs), raw?.rel ?? Buffer.from(rel), dirAbs)) {
        const e = toEntry(child.rel, child.absText, rawLstat(child.abs), child.raw);
        out.push(e);
        if (e.type === 'directory') stack.push({ rel: e.rel, raw: child.raw });
      }
      continue;
    }
    for (const name of names) {
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const abs = `${prefix}/${name}`;
      let st: Stats;
      try {
        st = lstatSync(abs);
      } catch (err) {
        throw fsError(err, abs, 'read');
      }
      const e = toEntry(childRel, abs, st);
      out.push(e);
      if (e.type === 'directory') stack.push({ rel: childRel });
    }
  }
  return sortEntries(out);
}

/** The root's own entry ('' for `rel`); a root that is a link is followed (a `result` symlink from Nix, say). */
export function statRoot(root: string): SourceEntry {
  let rootStat: Stats;
  try {
    rootStat = lstatSync(root);
    if (rootStat.isSymbolicLink()) rootStat = statSync(root);
  } catch (err) {
    if (err instanceof KocacheError) throw err;
    throw fsError(err, root, 'read');
  }
  return toEntry('', root, rootStat);
}

/** Entries in walkSource's order, sorting `out` in place. */
export function sortEntries(out: SourceEntry[]): SourceEntry[] {
  // Sorted as UTF-8 bytes, so the order is the same under every locale and on every machine.
  // JavaScript compares UTF-16 code units, which orders like UTF-8 unless a string holds a
  // surrogate pair or a character from U+E000 up; only then are byte keys made (once, not in the
  // comparator: Buffer.from per comparison showed in a hit, docs/performance.md).
  if (!out.some((e) => e.rawRel || UTF16_ORDER_DIFFERS.test(e.rel))) return out.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  const keyed = out.map((e) => ({ key: e.rawRel ?? Buffer.from(e.rel), e }));
  keyed.sort((a, b) => Buffer.compare(a.key, b.key));
  return keyed.map((k) => k.e);
}

interface RawChild {
  rel: string;
  abs: Buffer;
  /** For messages (and the file system, when the path is UTF-8). */
  absText: string;
  /** Set when the path (this name or a folder above it) is not valid UTF-8. */
  raw?: { rel: Buffer; abs: Buffer } | undefined;
}

/** A folder's entries read as bytes: names that are UTF-8 become strings as usual, others keep their bytes. */
function rawChildren(dirAbs: Buffer, dirRel: Buffer, shown: string): RawChild[] {
  let names: Buffer[];
  try {
    names = readdirSync(dirAbs, { encoding: 'buffer' });
  } catch (err) {
    throw fsError(err, shown, 'read directory');
  }
  const slash = Buffer.from('/');
  return names.map((name) => {
    const relBytes = dirRel.length ? Buffer.concat([dirRel, slash, name]) : name;
    const abs = Buffer.concat([dirAbs.length === 1 && dirAbs[0] === 0x2f ? Buffer.alloc(0) : dirAbs, slash, name]);
    const text = relBytes.toString('utf8');
    const utf8 = Buffer.from(text).equals(relBytes);
    return utf8 ? { rel: text, abs, absText: abs.toString('utf8') } : { rel: relBytes.toString('latin1'), abs, absText: abs.toString('latin1'), raw: { rel: relBytes, abs } };
  });
}

function rawLstat(path: Buffer): Stats {
  try {
    return lstatSync(path);
  } catch (err) {
    throw fsError(err, path.toString('latin1'), 'read');
  }
}
