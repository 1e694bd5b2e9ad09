import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { ensureOwnFolder } from '../cache/damage.js';
import { join } from 'node:path';
import { FINGERPRINT_FORMAT } from './formats.js';
import { hashFileSync } from './filehash.js';
import type { SourceEntry } from './walk.js';

// A file whose mtime or ctime is this close to the moment its stat was taken may be written again
// within the same timestamp tick without either changing (the "racy git" problem); such a file
// is always re-hashed. 2 s covers the coarsest common granularity (FAT, some network mounts).
const RACY_MS = 2000;
const VERSION = 2;
// Of the listing file's own layout; the fingerprint's format is hashed into each listing.
const LISTING_VERSION = 1;

/**
 * What a file had when its content hashed to `sha256`: size, mtime, ctime (ms), inode, device.
 * A tuple rather than an object, keyed by relative path: every cache hit reads this file, and
 * tuples make it a third smaller (docs/performance.md).
 */
type Stamp = [size: number, mtimeMs: number, ctimeMs: number, ino: number, dev: number, sha256: string];

interface StatFile {
  version: number;
  /** Keyed by the entry's path relative to the root ('' for a file given as the root). */
  entries: Record<string, Stamp>;
}

/** The last fingerprint of a whole tree and the listing it was taken of (see `knownFingerprint`). */
interface ListingFile {
  version: number;
  listing: string;
  fingerprint: string;
}

/**
 * Remembers the content hash of each file of a source tree by (size, mtime, ctime, inode, device),
 * so a second fingerprint of an unchanged tree reads no file contents. One small JSON file per
 * source root under `<cache>/stat/`, written to a temp name and renamed into place; beside it
 * `<id>.listing.json`, the whole tree's last fingerprint, which spares a hit reading the first.
 */
export class StatCache {
  private readonly path: string;
  private readonly listingPath: string;
  private loaded: Record<string, Stamp> | undefined;
  // No prototype: a file named __proto__ is a key like any other.
  private readonly next: Record<string, Stamp> = Object.create(null) as Record<string, Stamp>;
  private changed = false;

  constructor(cacheDir: string, root: string, private readonly takenAtMs: number) {
    const id = createHash('sha256').update(root).digest('hex').slice(0, 32);
    this.path = join(cacheDir, 'stat', `${id}.json`);
    this.listingPath = join(cacheDir, 'stat', `${id}.listing.json`);
  }

  /** Read when first needed: a hit answered by `knownFingerprint` never needs it. */
  private get old(): Record<string, Stamp> {
    return (this.loaded ??= loadStatFile(this.path));
  }

  /**
   * The fingerprint last taken of this tree, if every entry's stat (path, type, mode, size, link
   * target, mtime, ctime, inode, device) is what it was then, and every file's stamp was trusted
   * then: each stamp would hold now and give the hash it gave, so the fingerprint is the same.
   * A hit then reads a file of one line instead of every file's stamp, and hashes one listing
   * instead of building and hashing the fingerprint's.
   */
  knownFingerprint(entries: readonly SourceEntry[]): string | undefined {
    const known = loadListingFile(this.listingPath);
    return known?.listing === listingDigest(entries) ? known.fingerprint : undefined;
  }

  /** Whether stamps were ever saved for this tree (none on a fresh runner: every file is hashed). */
  hasStamps(): boolean {
    return existsSync(this.path);
  }

  /** The cached hash if the file is unchanged and not racy; undefined otherwise. */
  lookup(e: SourceEntry): string | undefined {
    const s = Object.hasOwn(this.old, e.rel) ? this.old[e.rel] : undefined;
    // Anything but a stamp of this shape (a damaged file) is no stamp: the file is hashed again.
    if (!Array.isArray(s) || typeof s[5] !== 'string') return undefined;
    if (s[0] !== e.size || s[1] !== e.mtimeMs || s[2] !== e.ctimeMs || s[3] !== e.ino || s[4] !== e.dev) return undefined;
    this.next[e.rel] = s;
    return s[5];
  }

  /** The file's sha256: the cached one if it holds, else read and hashed now (and remembered). */
  hash(e: SourceEntry): string {
    const known = this.lookup(e);
    if (known) return known;
    const sha256 = hashFileSync(e.abs, e.rawAbs);
    this.record(e, sha256);
    return sha256;
  }

  record(e: SourceEntry, sha256: string): void {
    if (Math.max(e.mtimeMs, e.ctimeMs) + RACY_MS > this.takenAtMs) return; // too fresh to trust next time
    this.next[e.rel] = [e.size, e.mtimeMs, e.ctimeMs, e.ino, e.dev, sha256];
    this.changed = true;
  }

  /**
   * Writes the stamps seen in this walk (dropping files that are gone), if anything changed. Given
   * the tree's fingerprint, also the listing file, if every file in the tree has a trusted stamp
   * after this walk (none too fresh to trust): the condition under which each stamp would answer.
   */
  save(tree?: { entries: readonly SourceEntry[]; fingerprint: string }): void {
    if (this.changed || Object.keys(this.next).length !== Object.keys(this.old).length) {
      const body: StatFile = { version: VERSION, entries: this.next };
      writeAtomically(this.path, JSON.stringify(body));
    }
    if (!tree || tree.entries.some((e) => e.type === 'file' && !Object.hasOwn(this.next, e.rel))) return;
    const body: ListingFile = { version: LISTING_VERSION, listing: listingDigest(tree.entries), fingerprint: tree.fingerprint };
    writeAtomically(this.listingPath, JSON.stringify(body));
  }
}

function writeAtomically(path: string, text: string): void {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(tmp, text);
    renameSync(tmp, path);
  } catch {
    // The stat cache only saves time; failing to write it must never fail a build. A file put
    // where its folder belongs is replaced (it holds hints only) and the write tried once more.
    try {
      rmSync(tmp, { force: true });
      if (!ensureOwnFolder(join(path, '..'))) return;
      writeFileSync(tmp, text);
      renameSync(tmp, path);
    } catch {
      try {
        rmSync(tmp, { force: true });
      } catch {
        /* nothing was written */
      }
    }
  }
}

/**
 * sha256 of every entry's stat, in walk order, after the fingerprint's format and the number of
 * entries (which also marks where the numbers end and the names begin): the numbers as one array of doubles (this machine's
 * byte order: the file never leaves it in a form another machine could match, inode and device
 * differ anyway), the paths and link targets as one string: the numbers as strings cost a hit
 * several times more (docs/performance.md).
 */
function listingDigest(entries: readonly SourceEntry[]): string {
  const FIELDS = 7;
  const numbers = new Float64Array(entries.length * FIELDS);
  let names = '';
  let i = 0;
  for (const e of entries) {
    numbers[i] = e.type === 'file' ? 1 : e.type === 'directory' ? 2 : 3;
    numbers[i + 1] = e.mode;
    numbers[i + 2] = e.size;
    numbers[i + 3] = e.mtimeMs;
    numbers[i + 4] = e.ctimeMs;
    numbers[i + 5] = e.ino;
    numbers[i + 6] = e.dev;
    i += FIELDS;
    // NUL ends each: it cannot occur in a path or a link target.
    names += `${e.rel}\0${e.linkTarget ?? ''}\0`;
  }
  return createHash('sha256')
    .update(`fingerprint ${FINGERPRINT_FORMAT}, ${entries.length} entries\n`)
    .update(new Uint8Array(numbers.buffer))
    .update(names)
    .digest('hex');
}

function loadListingFile(path: string): ListingFile | undefined {
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as ListingFile;
    if (parsed?.version === LISTING_VERSION && typeof parsed.listing === 'string' && typeof parsed.fingerprint === 'string') return parsed;
  } catch {
    // Missing or unreadable: no known fingerprint.
  }
  return undefined;
}

function loadStatFile(path: string): Record<string, Stamp> {
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as StatFile;
    if (parsed && parsed.version === VERSION && parsed.entries && typeof parsed.entries === 'object') return parsed.entries;
  } catch {
    // Missing or unreadable: start empty. A corrupt file is simply rewritten.
  }
  return {};
}
