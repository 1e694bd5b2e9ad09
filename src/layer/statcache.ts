import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { ensureOwnFolder } from '../cache/damage.js';
import { join } from 'node:path';
import { FINGERPRINT_FORMAT } from './formats.js';
import { hashFileSync } from './filehash.js';
import { type StatFilesJob, type StatFilesWriter, type StatWriteIo, digestListing, encodeStatFiles, writeReplacing } from './statwrite.js';
import type { SourceEntry } from './walk.js';

// A file whose mtime or ctime is this close to the moment its stat was taken may be written again
// within the same timestamp tick without either changing (the "racy git" problem); such a file
// is always re-hashed. 2 s covers the coarsest common granularity (FAT, some network mounts).
const RACY_MS = 2000;
// Of the stamps file's layout (see `Stamps`); 2 was one JSON object of stamps, now ignored.
const VERSION = 3;
// Of the listing file's own layout; the fingerprint's format is hashed into each listing.
const LISTING_VERSION = 1;
/** Stat numbers per stamp: size, mtime (ms), ctime (ms), inode, device. */
const FIELDS = 5;
const HEX = 64;
const HEADER = 64;

/**
 * The stamps of one walk: what each file had (the 5 numbers above) when its content hashed to
 * its sha256, in columns rather than an object per file: a 96,000-file node_modules made a JSON
 * file whose parse, per-path lookups and rewrite showed in an edit build (docs/performance.md).
 * On disk: a 64-byte text header, the numbers as doubles (this machine's byte order: the file
 * never leaves it), the sha256s as hex, the paths as UTF-8 with NUL after each.
 */
interface Stamps {
  paths: string[];
  numbers: Float64Array;
  /** 64 hex digits per path, one after another. */
  hex: string;
  /** Paths in ascending order of UTF-16 code units, each once. */
  sorted: boolean;
}

const NO_STAMPS: Stamps = { paths: [], numbers: new Float64Array(0), hex: '', sorted: true };

/** The last fingerprint of a whole tree and the listing it was taken of (see `knownFingerprint`). */
interface ListingFile {
  version: number;
  listing: string;
  fingerprint: string;
}

/** Whether any tree's stamps were ever saved in this cache folder (a fresh runner's has none). */
export function hasAnyStamps(cacheDir: string): boolean {
  return existsSync(join(cacheDir, 'stat'));
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
  private loaded: Stamps | undefined;
  /** Path -> index in `old`, made only when the paths are not asked in the order they were saved. */
  private index: Map<string, number> | undefined;
  private cursor = 0;
  private listing: { entries: readonly SourceEntry[]; digest: string } | undefined;
  /** 1 for each of the old stamps that held in this walk. */
  private kept: Uint8Array | undefined;
  private keptCount = 0;
  // Stamps taken in this walk, in the order they were recorded (the walk's).
  private readonly newPaths: string[] = [];
  private readonly newNumbers: number[] = [];
  private readonly newHex: string[] = [];
  private bulk: { entries: readonly SourceEntry[]; hashes: readonly (string | undefined)[]; which: Uint8Array } | undefined;
  private writer: StatFilesWriter | undefined;
  /** A first walk's files handed to the writer before the fingerprint (saveAhead): how to finish them. */
  private ahead: { entries: readonly SourceEntry[]; finish: (fingerprint: string) => void } | undefined;

  constructor(cacheDir: string, root: string, private readonly takenAtMs: number) {
    const id = createHash('sha256').update(root).digest('hex').slice(0, 32);
    this.path = join(cacheDir, 'stat', `${id}.stamps`);
    this.listingPath = join(cacheDir, 'stat', `${id}.listing.json`);
  }

  /** Read when first needed: a hit answered by `knownFingerprint` never needs it. */
  private get old(): Stamps {
    return (this.loaded ??= loadStamps(this.path));
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
    // None on a fresh runner: no digest to take then (0.1 s of the 96,000-file node_modules).
    return known !== undefined && known.listing === this.listingOf(entries) ? known.fingerprint : undefined;
  }

  /** listingDigest of `entries`, taken once for knownFingerprint and save when they are given the same list. */
  private listingOf(entries: readonly SourceEntry[]): string {
    if (this.listing?.entries !== entries) this.listing = { entries, digest: listingDigest(entries) };
    return this.listing.digest;
  }

  /**
   * How many files the last saved walk stamped, from the stamps file's header (0 without one): the
   * size of a tree known before it is listed, with one read rather than listing its folders.
   */
  stampedFiles(): number {
    if (this.loaded) return this.loaded.paths.length;
    const head = Buffer.alloc(HEADER);
    let n = 0;
    try {
      const fd = openSync(this.path, 'r');
      try {
        n = readSync(fd, head, 0, HEADER, 0);
      } finally {
        closeSync(fd);
      }
    } catch {
      return 0;
    }
    return stampsHeader(head.subarray(0, n))?.count ?? 0;
  }

  /** Whether stamps were ever saved for this tree (none on a fresh runner: every file is hashed). */
  hasStamps(): boolean {
    return existsSync(this.path);
  }

  /**
   * Where `rel`'s old stamp is, or -1. A walk asks in the order the stamps were saved, so the next
   * one is tried first; else a binary search when the paths are sorted (as a rule), or a map.
   */
  private find(rel: string): number {
    const old = this.old;
    const paths = old.paths;
    if (paths[this.cursor] === rel) return this.cursor++;
    let i: number | undefined;
    if (old.sorted) {
      let lo = 0;
      let hi = paths.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (paths[mid]! < rel) lo = mid + 1;
        else hi = mid;
      }
      i = paths[lo] === rel ? lo : undefined;
    } else {
      if (!this.index) {
        this.index = new Map();
        for (let k = 0; k < paths.length; k++) this.index.set(paths[k]!, k);
      }
      i = this.index.get(rel);
    }
    if (i === undefined) return -1;
    this.cursor = i + 1;
    return i;
  }

  /** The cached hash if the file is unchanged and not racy; undefined otherwise. */
  lookup(e: SourceEntry): string | undefined {
    const i = this.find(e.rel);
    if (i < 0) return undefined;
    const { numbers: n, hex } = this.old;
    const k = i * FIELDS;
    if (n[k] !== e.size || n[k + 1] !== e.mtimeMs || n[k + 2] !== e.ctimeMs || n[k + 3] !== e.ino || n[k + 4] !== e.dev) return undefined;
    const kept = (this.kept ??= new Uint8Array(this.old.paths.length));
    if (kept[i] === 0) {
      kept[i] = 1;
      this.keptCount++;
    }
    return hex.slice(i * HEX, i * HEX + HEX);
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
    this.spill();
    if (this.tooFresh(e)) return; // too fresh to trust next time
    this.newPaths.push(e.rel);
    this.newNumbers.push(e.size, e.mtimeMs, e.ctimeMs, e.ino, e.dev);
    this.newHex.push(sha256);
  }

  private tooFresh(e: SourceEntry): boolean {
    return Math.max(e.mtimeMs, e.ctimeMs) + RACY_MS > this.takenAtMs;
  }

  /**
   * `record` of each file `i` of `entries` with `which[i]` 1, its hash `hashes[i]`, in order. A
   * first walk's (no stamps before, none recorded yet) are kept as given until saved: a fresh
   * runner's ~96k stamps then cost no copy here, and go to the stamps file by way of the listing.
   */
  recordAll(entries: readonly SourceEntry[], hashes: readonly (string | undefined)[], which: Uint8Array): void {
    if (this.newPaths.length === 0 && !this.bulk && this.old.paths.length === 0) {
      this.bulk = { entries, hashes, which };
      return;
    }
    for (let i = 0; i < entries.length; i++) if (which[i] === 1) this.record(entries[i]!, hashes[i]!);
  }

  /** The stamps `recordAll` kept, recorded one by one (for anything but a first walk's save). */
  private spill(): void {
    const b = this.bulk;
    if (!b) return;
    this.bulk = undefined;
    for (let i = 0; i < b.entries.length; i++) if (b.which[i] === 1) this.record(b.entries[i]!, b.hashes[i]!);
  }

  /**
   * A first walk's files as the listing and the stamps taken from it, when every file of the tree
   * was recorded by `recordAll` and none is too fresh to trust (else undefined: see saveJob).
   */
  private firstWalkJob(tree: { entries: readonly SourceEntry[]; fingerprint?: string }): StatFilesJob | undefined {
    const b = this.bulk;
    if (!b || b.entries !== tree.entries) return undefined;
    const { entries, hashes, which } = b;
    const stamped = new Uint8Array(entries.length);
    const hex: string[] = [];
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (e.type !== 'file') continue;
      if (which[i] !== 1 || this.tooFresh(e)) return undefined;
      stamped[i] = 1;
      hex.push(hashes[i]!);
    }
    const stamps = { path: this.path, header: `kocache stamps ${VERSION} ${hex.length}`, headerBytes: HEADER, hex: hex.join(''), ofListing: stamped };
    const listing = { path: this.listingPath, version: LISTING_VERSION, ...listingParts(entries) };
    return { stamps, listing: tree.fingerprint === undefined ? listing : { ...listing, fingerprint: tree.fingerprint } };
  }

  /**
   * Hands `save`'s files to `writer`, which writes them later (on the hashing worker; see
   * StatFilesWriter), and returns undefined when it cannot take them: they are then written here,
   * as without it.
   */
  writeWith(writer: StatFilesWriter): void {
    this.writer = writer;
  }

  /**
   * A first walk's files handed to the writer as soon as every file is recorded, before the
   * tree's fingerprint is worked out: the stamps are written meanwhile, and `save` with that
   * fingerprint finishes the listing. Nothing happens without a writer or for another walk.
   */
  saveAhead(entries: readonly SourceEntry[]): void {
    const job = this.writer && this.firstWalkJob({ entries });
    const finish = job && this.writer!(job, (fingerprint) => this.saveJob(fingerprint === undefined ? undefined : { entries, fingerprint }));
    if (finish) this.ahead = { entries, finish };
  }

  /** Drops this tree's stamps and listing (once any write of them is done): shown wrong, they are not used again. */
  forget(): void {
    for (const p of [this.path, this.listingPath]) rmSync(p, { force: true });
    this.loaded = undefined;
  }

  /**
   * Writes the stamps seen in this walk (dropping files that are gone), if anything changed. Given
   * the tree's fingerprint, also the listing file, if every file in the tree has a trusted stamp
   * after this walk (none too fresh to trust): the condition under which each stamp would answer.
   */
  save(tree?: { entries: readonly SourceEntry[]; fingerprint: string }): void {
    const ahead = this.ahead;
    this.ahead = undefined;
    if (ahead && tree?.entries === ahead.entries) return ahead.finish(tree.fingerprint);
    const job = this.saveJob(tree);
    if (!job.stamps && !job.listing) return;
    if (this.writer?.(job, () => this.saveJob(tree))) return;
    writeStatFiles(job);
  }

  private saveJob(tree?: { entries: readonly SourceEntry[]; fingerprint: string }): StatFilesJob {
    const first = tree && this.firstWalkJob(tree);
    if (first) return first;
    this.spill();
    const next = this.merged();
    const job: StatFilesJob = {};
    if (this.newPaths.length > 0 || this.keptCount !== this.old.paths.length) job.stamps = { path: this.path, ...stampsParts(next) };
    if (tree && everyFileIn(tree.entries, next.paths)) {
      const listed = this.listing?.entries === tree.entries ? { digest: this.listing.digest } : listingParts(tree.entries);
      job.listing = { path: this.listingPath, version: LISTING_VERSION, fingerprint: tree.fingerprint, ...listed };
    }
    return job;
  }

  /** The old stamps that held and the new ones, merged in path order (a new one wins). */
  private merged(): { paths: string[]; numbers: number[]; hex: string[] } {
    const old = this.old;
    const kept = this.kept;
    const fresh = { paths: this.newPaths, numbers: this.newNumbers };
    // No old stamps (a first walk, a fresh runner): the new ones as recorded, unless one was
    // recorded twice; copying 96k stamps one number at a time showed in a fresh runner's profile.
    if (old.paths.length === 0 && !repeatsAdjacent(fresh.paths)) return { paths: fresh.paths, numbers: fresh.numbers, hex: this.newHex };
    const out = { paths: [] as string[], numbers: [] as number[], hex: [] as string[] };
    const take = (from: { paths: string[]; numbers: ArrayLike<number> }, i: number, hex: string) => {
      out.paths.push(from.paths[i]!);
      for (let f = 0; f < FIELDS; f++) out.numbers.push(from.numbers[i * FIELDS + f]!);
      out.hex.push(hex);
    };
    const nOld = old.paths.length;
    const nNew = fresh.paths.length;
    let i = 0;
    let j = 0;
    // Both lists are in walk order, so the merge keeps the file in the order the next walk asks.
    while (i < nOld || j < nNew) {
      if (i < nOld && kept?.[i] !== 1) i++;
      else if (j + 1 < nNew && fresh.paths[j + 1] === fresh.paths[j]) j++; // recorded twice: the later one
      else if (j >= nNew || (i < nOld && old.paths[i]! < fresh.paths[j]!)) {
        take(old, i, old.hex.slice(i * HEX, i * HEX + HEX));
        i++;
      } else {
        if (i < nOld && old.paths[i] === fresh.paths[j]) i++; // the new stamp replaces the old
        take(fresh, j, this.newHex[j]!);
        j++;
      }
    }
    return out;
  }
}

function repeatsAdjacent(paths: readonly string[]): boolean {
  for (let j = 1; j < paths.length; j++) if (paths[j] === paths[j - 1]) return true;
  return false;
}

/** Whether every file of `entries` is in `paths` (both in walk order, as a rule: a set only if not). */
function everyFileIn(entries: readonly SourceEntry[], paths: readonly string[]): boolean {
  let k = 0;
  let all: Set<string> | undefined;
  for (const e of entries) {
    if (e.type !== 'file') continue;
    if (paths[k] === e.rel) k++;
    else if (!(all ??= new Set(paths)).has(e.rel)) return false;
  }
  return true;
}

/** A stamps file's parts (see `Stamps`), made into bytes by encodeStatFiles. */
function stampsParts({ paths, numbers, hex }: { paths: string[]; numbers: number[]; hex: string[] }): Omit<NonNullable<StatFilesJob['stamps']>, 'path'> {
  return {
    header: `kocache stamps ${VERSION} ${paths.length}`,
    headerBytes: HEADER,
    hex: hex.join(''),
    numbers: new Float64Array(numbers),
    names: paths.length > 0 ? `${paths.join('\0')}\0` : '',
  };
}

const IO: StatWriteIo = { createHash, digestListing, randomBytes, mkdirSync, writeFileSync, renameSync, rmSync };

/** Writes the files of `job` here and now. */
export function writeStatFiles(job: StatFilesJob): void {
  for (const f of encodeStatFiles(job, IO)) writeAtomically(f.path, f.data);
}

/** A stamps file's header (its first HEADER bytes), if it is one of this VERSION. */
function stampsHeader(buf: Buffer): { count: number; namesLength: number } | undefined {
  const m = /^kocache stamps (\d+) (\d+) (\d+) *\n$/.exec(buf.subarray(0, HEADER).toString('latin1'));
  if (!m || Number(m[1]) !== VERSION) return undefined;
  return { count: Number(m[2]), namesLength: Number(m[3]) };
}

/** Missing, damaged or of another version: no stamps (each file is hashed again, and the file rewritten). */
function loadStamps(path: string): Stamps {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch {
    return NO_STAMPS;
  }
  const header = stampsHeader(buf);
  if (!header) return NO_STAMPS;
  const { count, namesLength } = header;
  const numbersAt = HEADER;
  const hexAt = numbersAt + count * FIELDS * 8;
  const namesAt = hexAt + count * HEX;
  if (buf.length !== namesAt + namesLength) return NO_STAMPS;
  const hex = buf.toString('latin1', hexAt, namesAt);
  if (!/^[0-9a-f]*$/.test(hex)) return NO_STAMPS;
  const paths = count === 0 ? [] : buf.toString('utf8', namesAt, buf.length - 1).split('\0');
  if (paths.length !== count || (count > 0 && buf[buf.length - 1] !== 0)) return NO_STAMPS;
  // Copied out: the file's bytes need not sit at a multiple of 8 in their buffer.
  const numbers = new Float64Array(count * FIELDS);
  new Uint8Array(numbers.buffer).set(buf.subarray(numbersAt, hexAt));
  let sorted = true;
  for (let i = 1; i < count && sorted; i++) sorted = paths[i - 1]! < paths[i]!;
  return { paths, numbers, hex, sorted };
}

function writeAtomically(path: string, data: string | Uint8Array): void {
  try {
    writeReplacing(path, data, IO);
  } catch {
    // The stat cache only saves time; failing to write it must never fail a build. A file put
    // where its folder belongs is replaced (it holds hints only) and the write tried once more.
    try {
      if (ensureOwnFolder(join(path, '..'))) writeReplacing(path, data, IO);
    } catch {
      /* nothing was written */
    }
  }
}

/**
 * What the listing's digest is the sha256 of: the fingerprint's format and the number of entries
 * (which also marks where the numbers end and the names begin), every entry's stat in walk order
 * as one array of doubles (this machine's byte order: the file never leaves it in a form another
 * machine could match, inode and device differ anyway), the paths and link targets as one string:
 * the numbers as strings cost a hit several times more (docs/performance.md).
 */
function listingParts(entries: readonly SourceEntry[]): { head: string; numbers: Float64Array; names: string } {
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
  return { head: `fingerprint ${FINGERPRINT_FORMAT}, ${entries.length} entries\n`, numbers, names };
}

function listingDigest(entries: readonly SourceEntry[]): string {
  const p = listingParts(entries);
  return digestListing(p.head, p.numbers, p.names, createHash);
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
