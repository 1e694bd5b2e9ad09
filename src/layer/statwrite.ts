import type { Hash } from 'node:crypto';

/**
 * The stat cache's files as the stat cache prepared them (src/layer/statcache.ts has their
 * layouts): a few strings and number arrays, cheap to hand to the hashing worker, which then turns
 * them into bytes, hashes the listing and writes both while the main thread goes on (a fresh
 * runner's 96k stamps: docs/registry-cache.md).
 */
export interface StatFilesJob {
  stamps?: {
    path: string;
    /** The stamps file's header line, without the byte length of `names` (added here). */
    header: string;
    headerBytes: number;
    /** The sha256s as hex, one after another. */
    hex: string;
    /** Five per stamp (see statcache.ts), and the paths each followed by NUL... */
    numbers?: Float64Array;
    names?: string;
    /**
     * ...or, for a first walk (a fresh runner) whose every file is stamped, taken from the
     * listing's parts: a 1 for each entry of the listing that is a stamped file (its numbers and
     * path are the listing's). The main thread then makes one list of the tree, not two.
     */
    ofListing?: Uint8Array;
  };
  listing?: {
    path: string;
    version: number;
    /**
     * The tree's fingerprint; left out when the job is handed over before it is known (a first
     * walk's stamps written while the fingerprint is worked out): the listing then waits for it.
     */
    fingerprint?: string;
    /** The listing's digest if already taken, else what it is the sha256 of. */
    digest?: string;
    head?: string;
    numbers?: Float64Array;
    names?: string;
  };
}

/**
 * Writes a job's files later (on the hashing worker): returns how to finish it (the fingerprint
 * of a job handed over without one; nothing to do for the others), or undefined when it cannot
 * take the job. `again` makes the job anew (with the fingerprint once known) for a failed write.
 */
export type StatFilesWriter = (job: StatFilesJob, again: (fingerprint?: string) => StatFilesJob) => ((fingerprint: string) => void) | undefined;

/** What the stat cache's files are made of, in the order they are written: the stamps, then the listing. */
export interface StatFile {
  path: string;
  data: Uint8Array | string;
  /** Set, with no data, on a listing still waiting for its fingerprint: the digest it will say. */
  digest?: string;
}

export interface StatWriteIo {
  createHash(algorithm: 'sha256'): Hash;
  digestListing: typeof digestListing;
  randomBytes(n: number): Buffer;
  mkdirSync(path: string, opts: { recursive: true }): unknown;
  writeFileSync(path: string, data: Uint8Array | string): void;
  renameSync(from: string, to: string): void;
  rmSync(path: string, opts: { force: true }): void;
}

/**
 * Writes `data` to a temporary name beside `path`, then renames it into place, so that a reader
 * never sees half a file. Throws what failed (the temporary file removed). Self-contained.
 */
export function writeReplacing(path: string, data: Uint8Array | string, io: StatWriteIo): void {
  const tmp = `${path}.${io.randomBytes(6).toString('hex')}.tmp`;
  try {
    io.mkdirSync(path.slice(0, path.lastIndexOf('/')), { recursive: true });
    io.writeFileSync(tmp, data);
    io.renameSync(tmp, path);
  } catch (err) {
    io.rmSync(tmp, { force: true });
    throw err;
  }
}

/** What a listing's parts hash to (`names` as a string, or as its UTF-8 bytes). Self-contained, as encodeStatFiles. */
export function digestListing(head: string, numbers: Float64Array, names: string | Uint8Array, createHash: (algorithm: 'sha256') => Hash): string {
  return createHash('sha256').update(head).update(new Uint8Array(numbers.buffer, numbers.byteOffset, numbers.byteLength)).update(names).digest('hex');
}

/**
 * The bytes of each file of `job`. Self-contained (no imports, no outer names): the hashing worker
 * runs its source text, so both threads write the same bytes. Each file is assembled in one buffer,
 * and a first walk's stamped paths are copied from the listing's names as bytes (made once, also
 * hashed for the listing's digest), not split into strings and joined again.
 */
export function encodeStatFiles(job: StatFilesJob, io: StatWriteIo): StatFile[] {
  const files: StatFile[] = [];
  const s = job.stamps;
  const l = job.listing;
  const listed = l?.names !== undefined ? Buffer.from(l.names) : undefined;
  if (s) {
    const count = s.hex.length / 64;
    const own = s.ofListing ? undefined : Buffer.from(s.names!);
    const numbersAt = s.headerBytes;
    const namesAt = numbersAt + count * 5 * 8 + s.hex.length;
    // The names' length is known once they are in place: the header (fixed width) is written last.
    const out = Buffer.allocUnsafe(namesAt + (own ?? listed!).length);
    let at = namesAt;
    let stats = s.numbers!;
    if (s.ofListing) {
      // The listing's entries are `path NUL target NUL` in its names, and its numbers are type,
      // mode, size, mtime, ctime, inode, device; a stamp's the last five. Bytes copied by hand:
      // ~100k calls of Buffer.copy cost twice as much.
      const from = l!.numbers!;
      const src = listed!;
      stats = new Float64Array(count * 5);
      let k = 0;
      let pos = 0;
      for (let i = 0; i < s.ofListing.length; i++) {
        if (s.ofListing[i] === 1) {
          for (let b = src[pos]!; b !== 0; b = src[++pos]!) out[at++] = b;
          out[at++] = 0;
          for (let f = 2; f < 7; f++) stats[k++] = from[i * 7 + f]!;
        } else {
          while (src[pos] !== 0) pos++;
        }
        pos++;
        while (src[pos] !== 0) pos++;
        pos++;
      }
    } else {
      out.set(own!, at);
      at += own!.length;
    }
    out.set(new Uint8Array(stats.buffer, stats.byteOffset, stats.byteLength), numbersAt);
    out.write(s.hex, numbersAt + stats.byteLength, 'latin1');
    out.fill(0x20, 0, s.headerBytes);
    out.write(`${s.header} ${at - namesAt}`);
    out[s.headerBytes - 1] = 0x0a;
    files.push({ path: s.path, data: out.subarray(0, at) });
  }
  if (l) {
    const digest = l.digest ?? io.digestListing(l.head!, l.numbers!, listed!, io.createHash);
    if (l.fingerprint === undefined) files.push({ path: l.path, data: '', digest });
    else files.push({ path: l.path, data: JSON.stringify({ version: l.version, listing: digest, fingerprint: l.fingerprint }) });
  }
  return files;
}
