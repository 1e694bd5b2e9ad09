import { EventEmitter, once } from 'node:events';
import { fstatSync, openSync, readdirSync, renameSync, rmSync, statSync, utimesSync } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { close, closeSync, createReadStream, open, read } from 'node:fs';
import { createHash } from 'node:crypto';
import { KocacheError, errnoCode, errnoReason } from '../errors.js';
import { type Digest, digestHex, digestToIntegrity, integrityToDigest, isDigest } from '../oci/digest.js';
import { makeDirs } from '../util/mkdirs.js';
import { traceAdd } from '../util/trace.js';
import { type Mismatch, verify } from '../util/verify.js';
import { loadCacache } from './cacache.js';
import { cacheFsError, dropFolderBuckets } from './damage.js';
import { listFolder } from './folders.js';
import { JOURNAL_KEY, noteKey } from './journal.js';
import { TEMP_PREFIX } from '../util/tmpfile.js';
import { dropStamp, stampMatches, writeStamp } from './stamp.js';

/** Byte ranges of one stored blob (CacheStore.blobRanges). */
export interface BlobRanges {
  /** `length` bytes from `offset`, or undefined when the blob ends sooner (or was closed). */
  read(offset: number, length: number): Promise<Buffer | undefined>;
  close(): void;
}

export interface BlobInfo {
  digest: Digest;
  size: number;
}

/** An index record: a key pointing at one blob, with metadata describing what it is. */
export interface CacheRecord<M> {
  key: string;
  digest: Digest;
  size: number;
  /** ms since epoch when the record was written. */
  time: number;
  metadata: M;
}

/**
 * The on-disk cache: cacache's content store (blobs by sha256 digest) and its index (keys to
 * blobs, with JSON metadata), used through cacache's public API. All writes are
 * temp-file-then-rename or append-only lines, so a process killed at any point leaves either
 * nothing or a whole entry, never a half one.
 *
 * What kocache owns on top: where a blob's file is (below), because reads re-hash it in large
 * reads, hits touch it for gc's least-recently-used order, and gc parks and evicts it; cacache has
 * no call for any of these.
 */
export class CacheStore {
  constructor(readonly dir: string) {}

  /**
   * Path of a blob's content file (it may not exist): cacache's content path for a sha256
   * integrity (test/store.test.ts holds it to what cacache's own calls answer).
   */
  blobPath(digest: Digest): string {
    const hex = digestHex(digest);
    return join(this.contentRoot(), hex.slice(0, 2), hex.slice(2, 4), hex.slice(4));
  }

  /**
   * Every file in the blob folders, with the digest its path names; none for anything else there
   * (a blob gc parked under its trash name, a stray file). Nothing is opened or checked.
   */
  contentFiles(): { path: string; digest: Digest | undefined }[] {
    const root = this.contentRoot();
    let level = [root];
    // cacache's fan-out: two folders of two hex digits, then the rest of the digest.
    for (let depth = 0; depth < 3; depth++) level = level.flatMap((dir) => listFolder(dir).map((n) => join(dir, n)));
    return level.map((path) => {
      const hex = relative(root, path).split(sep).join('');
      return { path, digest: /^[a-f0-9]{64}$/.test(hex) ? (`sha256:${hex}` as Digest) : undefined };
    });
  }

  private contentRoot(): string {
    return join(this.dir, 'content-v2', 'sha256');
  }

  // The metadata calls below (stat, utimes, rename) are synchronous on purpose: each is one system
  // call of a few microseconds, where a round trip through libuv's thread pool costs more than
  // the call (a hit's blob check: 2.1 -> 1.5 ms, medians of 31). They stay async to callers.

  /** Size of a stored blob, or undefined when it is absent. Does not verify the content. */
  async blobSize(digest: Digest): Promise<number | undefined> {
    const st = statBlob(this.blobPath(digest));
    return st === undefined ? undefined : Number(st.size);
  }

  /**
   * Streams bytes into the content store and returns their digest. When `expect` is given the
   * content is checked against it and nothing is stored on a mismatch.
   *
   * cacache's `put.stream` stores them (to tmp/, then moved into place if absent) under the
   * journal's key; kocache hashes them itself as they pass (src/util/verify.ts when the digest is
   * known) and hands cacache the result through its `integrityEmitter` option, so the bytes are
   * hashed once, and a write kocache gives up on is failed the way cacache documents: an error on
   * that emitter, after which cacache removes its temp file.
   *
   * `hashed`, instead of hashing here: the sha256 (hex) of exactly the bytes `source` gave, asked
   * for once it has ended (pack.ts hashes a layer's blob on its worker thread as it passes).
   */
  async writeBlob(source: AsyncIterable<Uint8Array>, expect?: Partial<BlobInfo>, hashed?: () => Promise<string>): Promise<BlobInfo> {
    // A blob that is not stored yet will be the bytes just hashed on the way in, so it gets its
    // verified stamp at once (the first hit need not re-hash it). What
    // is in its place that is not a file is damage, removed before cacache would keep it.
    let fresh = false;
    if (expect?.digest) {
      const st = statBlob(this.blobPath(expect.digest));
      if (st !== undefined && !st.isFile()) await this.dropBlob(expect.digest);
      fresh = st === undefined || !st.isFile();
    }
    const cacache = await loadCacache();
    const sums = new EventEmitter<{ integrity: [string]; size: [number]; error: [unknown] }>();
    // A prefix of this write's own (still under this process's, for the clean-up on a signal), so
    // a write given up on can tell when cacache's temp file exists.
    const tmpPrefix = `${TEMP_PREFIX}-${(writes++).toString(36)}`;
    const ws = cacache.put.stream(this.dir, JOURNAL_KEY, { integrityEmitter: sums, tmpPrefix });
    const done = ws.promise();
    done.catch(() => undefined);
    const want = expect?.digest;
    const hash = want === undefined && hashed === undefined ? createHash('sha256') : undefined;
    const bytes = want === undefined ? source : verify(source, { digest: want, size: expect?.size }, (m) => writeMismatch(m, want));
    let size = 0;
    let started = false;
    let digest: Digest | undefined;
    // Whether an error came from the source (the caller's to explain) or from the writer (the cache's).
    let reading = true;
    try {
      for await (const chunk of bytes) {
        reading = false;
        if (chunk.byteLength > 0) {
          hash?.update(chunk);
          size += chunk.byteLength;
          started = true;
          if (!ws.write(chunk)) await Promise.race([once(ws, 'drain'), done]);
        }
        reading = true;
      }
      reading = false;
      if (want === undefined && expect?.size !== undefined && size !== expect.size) {
        reading = true;
        throw new KocacheError('digest-mismatch', `content is ${size} bytes, not the expected ${expect.size}`);
      }
      // An empty blob is a blob too: the first write is what starts cacache's temp file.
      if (!started) ws.write(Buffer.alloc(0));
      started = true;
      digest = want ?? `sha256:${hash ? hash.digest('hex') : await hashed!()}`;
      // A digest learned only now (a layer just built) is fresh the same way if no file holds it
      // yet: the one cacache moves into place is then these bytes, hashed as they passed.
      if (want === undefined) fresh = statBlob(this.blobPath(digest)) === undefined;
      await Promise.race([listening(sums), done]);
      sums.emit('integrity', digestToIntegrity(digest));
      sums.emit('size', size);
      ws.end();
      await done;
    } catch (err) {
      if (started) await abandonWrite(ws, sums, done, err, { dir: join(this.dir, 'tmp'), prefix: tmpPrefix });
      throw reading ? err : cacheFsError(err, this.dir, 'write a blob to');
    }
    // When the blob was already stored, cacache keeps the old file and its old mtime; touching it
    // marks it as in use now, so a concurrent gc (which spares files newer than the oldest lease)
    // cannot evict it between this write and the records that will point at it.
    if (!(await this.touchBlob(digest))) {
      throw new KocacheError('cache', `blob ${digest} was removed by a concurrent kocache gc as it was being stored; run the command again`);
    }
    const st = statBlob(this.blobPath(digest));
    if (st !== undefined && !st.isFile()) {
      await this.dropBlob(digest);
      throw new KocacheError('cache', `something that is not a file was where blob ${digest} belongs (${this.blobPath(digest)}); removed it, run the command again`);
    }
    if (fresh && st !== undefined) writeStamp(this.dir, digest, st);
    return { digest, size };
  }

  /**
   * A read stream of a blob that fails with a digest-mismatch KocacheError if the bytes do not hash to
   * the digest or the size is wrong (checked as they stream, so a caller must not trust
   * data until the stream ends). Hashes in 1 MiB reads: measured 4x faster than cacache's own
   * verifying read, which matters because every hit re-hashes.
   *
   * A corrupt blob is dropped as it is found, so no later command is served it again: it misses
   * and fetches, rebuilds or re-imports instead. A blob that gc has just parked is taken back (see
   * touchBlob); one that is really gone fails with ENOENT; any other file error is one line naming
   * the path (never mistaken for a registry's error by whoever is streaming it).
   */
  readBlob(digest: Digest, size?: number): Readable {
    return Readable.from(this.verifiedRead(digest, size, true), { objectMode: false });
  }

  /**
   * A stored blob opened for reads of byte ranges (one open for many ranges), or undefined when it
   * is absent. Not verified: the caller checks what it reads against a hash of its own (a block
   * map's). `close` when done.
   */
  async blobRanges(digest: Digest): Promise<BlobRanges | undefined> {
    let fd: number;
    try {
      fd = await new Promise<number>((res, rej) => open(this.blobPath(digest), 'r', (e, f) => (e ? rej(e) : res(f))));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw err;
    }
    let closed = false;
    return {
      async read(offset, length) {
        if (closed) return undefined;
        const buf = Buffer.allocUnsafe(length);
        for (let got = 0; got < length;) {
          const n = await new Promise<number>((res, rej) => read(fd, buf, got, length - got, offset + got, (e, k) => (e ? rej(e) : res(k))));
          if (n === 0) return undefined;
          got += n;
        }
        traceAdd('blob.range', length);
        return buf;
      },
      close() {
        if (closed) return;
        closed = true;
        close(fd, () => undefined);
      },
    };
  }

  /** Re-hashes a stored blob and says whether it is present and intact; changes nothing. */
  async checkBlob(digest: Digest, size?: number): Promise<'ok' | 'missing' | 'corrupt'> {
    return this.hashState(digest, size, false);
  }

  /**
   * Re-hashes a stored blob. A corrupt or truncated one is removed, so the next caller rebuilds
   * or refetches it instead of serving it. Returns whether the blob is present and intact.
   */
  async verifyBlob(digest: Digest, size?: number): Promise<'ok' | 'missing' | 'corrupt'> {
    return this.hashState(digest, size, true);
  }

  private async hashState(digest: Digest, size: number | undefined, drop: boolean): Promise<'ok' | 'missing' | 'corrupt'> {
    try {
      for await (const _ of this.verifiedRead(digest, size, drop)) { /* hashing happens in the stream */ }
      return 'ok';
    } catch (err) {
      const state = blobReadFailure(err);
      if (state === undefined) throw err;
      return state;
    }
  }

  private async *verifiedRead(digest: Digest, size: number | undefined, drop: boolean): AsyncGenerator<Buffer> {
    const path = this.blobPath(digest);
    const fd = await this.openBlob(digest, path);
    let isFile: boolean;
    try {
      isFile = fstatSync(fd).isFile();
    } catch (err) {
      closeSync(fd);
      throw cacheFsError(err, path, 'read');
    }
    if (!isFile) {
      closeSync(fd);
      // A folder (or anything else) where a blob belongs: damage, like a flipped byte.
      if (drop) await this.dropBlob(digest);
      throw failure('corrupt', new KocacheError('digest-mismatch', `cached blob ${digest} is not a file (${path})${drop ? '; removed it' : ''}`));
    }
    let mismatch: Mismatch | undefined;
    const fail = (m: Mismatch) => {
      mismatch = m;
      return new Error('mismatch');
    };
    try {
      yield* verify(createReadStream(path, { fd, highWaterMark: 1 << 20 }), { digest, size }, fail, (c) => traceAdd('blob.verify', c.length));
    } catch (err) {
      if (mismatch === undefined) throw cacheFsError(err, path, 'read');
      throw await this.readMismatch(digest, mismatch, drop);
    }
  }

  /**
   * The error for a blob that read back wrong. Bytes that hash to another digest are damage (dropped
   * when `drop`); the right bytes at another size than the caller expects are not, so the blob
   * stays. A blob longer than expected was not hashed to its end: it is hashed whole to tell which.
   */
  private async readMismatch(digest: Digest, m: Mismatch, drop: boolean): Promise<KocacheError> {
    const sized = () => failure('corrupt', new KocacheError('digest-mismatch', `cached blob ${digest} has the wrong size (${m.bytes}${m.digest ? '' : ' or more'} bytes, want ${m.want.size})`));
    if (m.digest === undefined) {
      const whole = await this.hashState(digest, undefined, drop);
      return whole === 'corrupt' ? failure('corrupt', corruptError(digest, undefined, drop)) : sized();
    }
    if (m.digest === digest) return sized();
    if (drop) await this.dropBlob(digest);
    return failure('corrupt', corruptError(digest, m.digest, drop));
  }

  /** Opens a blob for reading, taking it back if gc has just parked it. */
  private async openBlob(digest: Digest, path: string): Promise<number> {
    try {
      return openSync(path, 'r');
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw cacheFsError(err, path, 'open');
    }
    if (!(await this.touchBlob(digest))) throw gone(digest);
    try {
      return openSync(path, 'r');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') throw gone(digest);
      throw cacheFsError(err, path, 'open');
    }
  }

  /** Removes a blob (whatever is at its path: a folder there is damage too) and its stamp. */
  async dropBlob(digest: Digest): Promise<void> {
    dropStamp(this.dir, digest);
    const path = this.blobPath(digest);
    try {
      rmSync(path, { recursive: true, force: true });
    } catch (err) {
      throw cacheFsError(err, path, 'remove');
    }
  }

  /**
   * What a cache hit does with the blob it is about to hand out: makes sure it is present and
   * intact (re-hashing it unless its verified stamp says no one has written to it since it last
   * hashed right), drops it when corrupt, and marks it used for gc. 'missing' also covers a blob a
   * concurrent gc evicted just now: then the caller has a miss, not a hit on nothing.
   */
  async useBlob(digest: Digest, size?: number): Promise<'ok' | 'missing' | 'corrupt'> {
    const before = statBlob(this.blobPath(digest));
    const trusted = before !== undefined && before.isFile() && (size === undefined || Number(before.size) === size) && stampMatches(this.dir, digest, before);
    if (!trusted) {
      const state = await this.verifyBlob(digest, size);
      if (state !== 'ok') return state;
    }
    if (!(await this.touchBlob(digest))) return 'missing';
    // The touch moved the file's ctime; the stamp follows it, taken after the touch.
    const after = statBlob(this.blobPath(digest));
    if (after) writeStamp(this.dir, digest, after);
    return 'ok';
  }

  /**
   * Marks a blob as used now. gc evicts by this time (least recently used first); a utimes call
   * is the cheapest durable record of a hit there is.
   */
  async touchBlob(digest: Digest): Promise<boolean> {
    const path = this.blobPath(digest);
    const now = new Date();
    try {
      utimesSync(path, now, now);
      return true;
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw cacheFsError(err, path, 'mark as used');
    }
    // gc evicts by renaming a blob to its trash name, re-checking its mtime, then unlinking
    // (src/cache/gc.ts). A use that lands in that window takes the blob back; whichever rename
    // runs second fails harmlessly, so the blob is either kept (and now fresh) or really gone.
    try {
      renameSync(trashPath(path), path);
      utimesSync(path, now, now);
      return true;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return false;
      throw cacheFsError(err, path, 'take back from gc');
    }
  }

  /**
   * The record under `key`, or undefined. What the index holds is input like any other (a line
   * can be damaged with its checksum intact, or written by another version): a record whose
   * fields are not what kocache writes, or whose metadata `isMetadata` rejects, is a miss. Without
   * a check the metadata is only known to be an object: the caller checks its fields before trusting them.
   */
  async getRecord<M = unknown>(key: string, isMetadata: (m: unknown) => m is M = isObject as (m: unknown) => m is M): Promise<CacheRecord<M> | undefined> {
    if (key === JOURNAL_KEY) return undefined;
    const cacache = await loadCacache();
    let info: Parameters<typeof toRecord>[0] | null;
    try {
      info = await cacache.get.info(this.dir, key);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || dropFolderBuckets(this.dir, err)) return undefined;
      throw cacheFsError(err, this.dir, 'read the index in');
    }
    const rec = info ? toRecord(info) : undefined;
    return rec && rec.key === key && isMetadata(rec.metadata) ? (rec as CacheRecord<M>) : undefined;
  }

  async putRecord<M>(key: string, blob: BlobInfo, metadata: M): Promise<void> {
    const cacache = await loadCacache();
    for (let tries = 2; ; tries--) {
      try {
        // Only a key that has a record gets an older line now, and only those are gc's to compact: a
        // first gc after many builds would otherwise rewrite every new key's one-line bucket.
        if (await cacache.get.info(this.dir, key)) await noteKey(cacache, this.dir, key);
        await cacache.index.insert(this.dir, key, digestToIntegrity(blob.digest), { size: blob.size, metadata });
        return;
      } catch (err) {
        if (tries > 1 && dropFolderBuckets(this.dir, err)) continue;
        throw cacheFsError(err, this.dir, 'write the index in');
      }
    }
  }

  /** Removes a record (cacache appends a tombstone); the blob stays until gc finds it unused. */
  async dropRecord(key: string): Promise<void> {
    const cacache = await loadCacache();
    try {
      await noteKey(cacache, this.dir, key);
      await cacache.rm.entry(this.dir, key);
    } catch (err) {
      throw cacheFsError(err, this.dir, 'write the index in');
    }
  }

  /** Every well-formed record, by key; damaged ones are left out (gc compacts them away). */
  async listRecords(): Promise<CacheRecord<unknown>[]> {
    const cacache = await loadCacache();
    let all: Record<string, Parameters<typeof toRecord>[0]>;
    try {
      all = await cacache.ls(this.dir);
    } catch (err) {
      if (!dropFolderBuckets(this.dir, err)) throw cacheFsError(err, this.dir, 'read the index in');
      return this.listRecords();
    }
    return Object.values(all)
      .filter((e) => e.key !== JOURNAL_KEY)
      .map(toRecord)
      .filter((r): r is CacheRecord<unknown> => r !== undefined)
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }
}

function isObject(m: unknown): m is object {
  return typeof m === 'object' && m !== null && !Array.isArray(m);
}

/** An index line's fields as kocache writes them (text key and integrity, a time, a whole size); gc and du hold lines to it. */
export function isRecordLine<E extends { key?: unknown; integrity?: unknown; size?: unknown; time?: unknown }>(e: E): e is E & { key: string; integrity: string; size: number; time: number } {
  return typeof e.key === 'string' && typeof e.integrity === 'string' && typeof e.time === 'number' && typeof e.size === 'number' && Number.isSafeInteger(e.size) && e.size >= 0;
}

/** An index entry as kocache writes it (a sha256 integrity, a whole size, a time), else undefined. */
function toRecord(e: { key?: unknown; integrity?: unknown; size?: unknown; time?: unknown; metadata?: unknown }): CacheRecord<unknown> | undefined {
  if (!isRecordLine(e)) return undefined;
  let digest: Digest;
  try {
    digest = integrityToDigest(e.integrity);
  } catch {
    return undefined;
  }
  if (!isDigest(digest)) return undefined;
  return { key: e.key, digest, size: e.size, time: e.time, metadata: e.metadata };
}

/** Errors of readBlob that say the blob is missing or damaged, as opposed to any other failure. */
const failures = new WeakMap<object, 'missing' | 'corrupt'>();

function failure(kind: 'missing' | 'corrupt', err: KocacheError): KocacheError {
  failures.set(err, kind);
  return err;
}

function corruptError(digest: Digest, got: string | undefined, dropped: boolean): KocacheError {
  const hashes = got ? ` (its bytes hash to ${got})` : '';
  return new KocacheError('digest-mismatch', `cached blob ${digest} was corrupt${hashes}${dropped ? '; dropped it, so the next run fetches or rebuilds it' : ''}`);
}

function gone(digest: Digest): KocacheError {
  return failure('missing', new KocacheError('cache', `cached blob ${digest} is gone from the cache (a concurrent kocache gc removed it); run the command again`));
}

/** Whether an error from readBlob means the blob is missing, or corrupt (wrong bytes, wrong size, not a file); undefined for anything else. */
export function blobReadFailure(err: unknown): 'missing' | 'corrupt' | undefined {
  return typeof err === 'object' && err !== null ? failures.get(err) : undefined;
}

function statBlob(path: string): BigIntStats | undefined {
  try {
    return statSync(path, { bigint: true });
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw cacheFsError(err, path, 'look at');
  }
}

/** A write whose bytes were not the expected ones: nothing was stored. */
function writeMismatch(m: Mismatch, want: Digest): KocacheError {
  return m.reason === 'size'
    ? new KocacheError('digest-mismatch', `content is not the expected size for ${want} (${m.digest ? m.bytes : `more than ${m.want.size}`} bytes, want ${m.want.size})`)
    : new KocacheError('digest-mismatch', `content does not match its digest ${want}`);
}

/** Where gc parks a blob while it makes sure nobody used it since it decided to evict it. */
export function trashPath(blobPath: string): string {
  return `${blobPath}.gc`;
}

/** Ensures the folder exists; used once per process before the first write. */
export function ensureDir(dir: string): void {
  try {
    // Already there: a file there is not a cache folder (every write under it would fail ENOTDIR).
    if (makeDirs(dir) === undefined && !statSync(dir).isDirectory()) {
      throw new KocacheError('cache', `cannot use ${dir} as the cache folder: it is a file, not a folder`, { cause: Object.assign(new Error(`${dir} is a file`), { code: 'ENOTDIR' }) });
    }
  } catch (err) {
    if (err instanceof KocacheError) throw err;
    throw new KocacheError('cache', `cannot create cache directory ${dir}: ${errnoReason(err)}`, { cause: err });
  }
}

/** Resolves once cacache listens for both sums: emitted earlier, they would be lost and the write would hang. */
function listening(sums: EventEmitter): Promise<void> {
  const ready = () => sums.listenerCount('integrity') > 0 && sums.listenerCount('size') > 0;
  if (ready()) return Promise.resolve();
  return new Promise((resolve) => {
    // 'newListener' comes just before the listener is added: look once it is.
    const check = () => queueMicrotask(() => {
      if (!ready()) return;
      sums.off('newListener', check);
      resolve();
    });
    sums.on('newListener', check);
  });
}

/**
 * Fails a cacache content write kocache gave up on and waits until cacache is done with it: an
 * error on the integrity emitter (cacache's documented way) fails its temp file's pipeline, whose
 * clean-up removes the file; ending the stream closes it. Without this, a command that exits right
 * after a failed build (an unreadable file met mid-layer) would leave the temp file in tmp/ until
 * gc. If cacache failed first, it has cleaned up already.
 */
async function abandonWrite(ws: { end(): unknown }, sums: EventEmitter, done: Promise<unknown>, err: unknown, tmp: { dir: string; prefix: string }): Promise<void> {
  const failed = await Promise.race([listening(sums).then(() => false), done.then(() => false, () => true)]);
  if (failed) return;
  // cacache has asked for its temp file to be opened; an error given before the open is done
  // would have it remove the file first and the open create it afterwards, left behind.
  if (await tempFileOpened(tmp, done)) return;
  // Without a listener for it the error would throw here, and cacache would wait for sums forever:
  // its temp file is then left for gc.
  const heard = sums.listenerCount('error') > 0;
  if (heard) sums.emit('error', err);
  try {
    ws.end();
  } catch {
    // already ended or failed
  }
  if (heard) await done.catch(() => undefined);
}

let writes = 0;

/**
 * Waits until cacache's temp file for a write exists (true when the write failed first). Bounded:
 * a file system that never shows it leaves the file to gc, which removes old temp files.
 */
async function tempFileOpened(tmp: { dir: string; prefix: string }, done: Promise<unknown>): Promise<boolean> {
  let failed = false;
  done.catch(() => (failed = true));
  for (let i = 0; i < 1000 && !failed; i++) {
    let names: string[] = [];
    try {
      names = readdirSync(tmp.dir);
    } catch {
      // not there yet
    }
    if (names.some((n) => n.startsWith(`${tmp.prefix}-`))) return false;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return failed;
}
