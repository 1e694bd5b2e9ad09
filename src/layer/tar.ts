import { createHash } from 'node:crypto';
import { closeSync, fstatSync, lstatSync, openSync, readSync } from 'node:fs';
import { KocacheError, fsError } from '../errors.js';
import type { BlockNames } from '../compress/blocknames.js';
import type { BlockPool } from '../compress/blockpool.js';
import { BlockCutter } from '../compress/cuts.js';
import { traceAdd } from '../util/trace.js';
import { HeaderWriter, padding, rawNameHeaderBytes, type EntryHeader } from './tarheader.js';
import type { SourceEntry } from './walk.js';
import type { TarOptions } from './tarspec.js';

/** Two zero records end a tar. */
const END_OF_ARCHIVE = 1024;
/** Zero bytes for padding (at most 511) and the end of the archive. */
const ZEROS = Buffer.alloc(END_OF_ARCHIVE);
/** Where the one byte more that a grown file would have is read. */
const PROBE = Buffer.alloc(1);

/**
 * A file executable by its owner becomes 0755, any other file 0644, directories 0755: the layer is
 * the same whatever the umask of the machine that built it.
 */
function layerMode(e: SourceEntry, keep: boolean): number {
  if (e.type === 'symlink') return 0o777;
  if (keep) return e.mode & 0o7777;
  if (e.type === 'directory') return 0o755;
  return e.mode & 0o100 ? 0o755 : 0o644;
}

function parentsOf(path: string): string[] {
  const parts = path.split('/').filter(Boolean);
  const out: string[] = [];
  for (let i = 1; i < parts.length; i++) out.push(parts.slice(0, i).join('/'));
  return out;
}

/**
 * A reproducible tar of `entries` placed at `dest`, as the blocks gzip compresses one by one, cut
 * where compress/cuts.ts says (a pure function of the tar bytes): sorted entries, fixed mtime,
 * uid/gid 0 with empty names, directories with a trailing slash, symlinks kept as links, long and
 * non-ASCII names through PAX headers.
 *
 * File contents are read straight into the block being filled, never past the next cut: no buffer
 * per file and no copy into blocks afterwards (tar-stream's pack stream plus re-chunking cost
 * several times the main-thread CPU of this: docs/performance.md). The header
 * bytes are tar-stream's (tarheader.ts), so the layer is byte for byte what its pack stream wrote.
 */
export function* tarBlocks(
  entries: readonly SourceEntry[],
  opts: TarOptions,
  onBytes?: (n: number) => void,
  onFileHash?: (e: SourceEntry, sha256: string) => void,
  pool?: BlockPool,
  /**
   * Names the blocks (gzip's reuse) from each file's sha256 where `known` has it. A file that
   * `unread` picks (one whose hash is known) is not read: its bytes are left as a hole in the block
   * (blocknames.ts Hole), which gzip fills (readHole) only for a block it cannot copy, and the
   * hashing worker reads the file itself (streamhash.ts).
   */
  naming?: { names: BlockNames; known: (index: number) => string | undefined; unread?: ((index: number) => boolean) | undefined },
): Generator<Buffer> {
  const mtime = new Date(opts.mtime * 1000);
  const dest = opts.dest.replace(/^\/+/, '');
  const base = { uid: opts.owner?.uid ?? 0, gid: opts.owner?.gid ?? 0, uname: '', gname: '', mtime, size: 0 };
  const keepModes = opts.mode === 'keep';
  const headers = new HeaderWriter(base);
  const rootHeaders = new HeaderWriter({ ...base, uid: 0, gid: 0 });
  // The full blocks go to the consumer, which keeps them (gzip holds each until its deflate is done).
  const blocks = new BlockCutter(pool, naming?.names);

  /** The header records in: the blocks they ended (usually none). */
  const putAll = (records: readonly Buffer[]): Buffer[] => {
    let out = NONE;
    for (const b of records) {
      const done = blocks.write(b);
      if (done.length > 0) out = out === NONE ? done : out.concat(done);
    }
    return out;
  };

  /** sha256 of a file's bytes as read, for onFileHash. */
  const hashOf = (e: SourceEntry, bytes?: Buffer): void => {
    if (!onFileHash) return;
    const h = createHash('sha256');
    if (bytes) {
      h.update(bytes);
      traceAdd('file.hash', bytes.length);
    }
    onFileHash(e, h.digest('hex'));
  };

  /**
   * A file's data that fits in the block before its next decision, in one read (asking one byte
   * more, which must not come) and no generator: most files of a node_modules. Undefined when it
   * does not fit, for `body`.
   */
  function small(e: SourceEntry, size: number): Buffer[] | undefined {
    const at = blocks.length;
    if (size + 1 > blocks.room()) return undefined;
    const fd = openFile(e);
    let n: number;
    try {
      n = readSync(fd, blocks.buffer, at, size + 1, null);
      assertUnchanged(e, fstatSync(fd));
    } catch (err) {
      if (err instanceof KocacheError) throw err;
      throw fsError(err, e.abs, 'read');
    } finally {
      closeSync(fd);
    }
    if (n !== size) throw changedError(e);
    traceAdd('file.read', n);
    hashOf(e, blocks.buffer.subarray(at, at + n));
    onBytes?.(n);
    return blocks.commit(n);
  }

  /** A known file's data left unread: its place in the blocks, which end where they would. */
  function* unread(size: number): Generator<Buffer> {
    traceAdd('tar.unread', size);
    for (let left = size; left > 0;) {
      const n = Math.min(left, blocks.room());
      left -= n;
      onBytes?.(n);
      yield* blocks.commit(n);
    }
  }

  /** A file's data read into blocks up to each cut, the blocks yielded as they end. */
  function* body(e: SourceEntry, size: number): Generator<Buffer> {
    // The file's own sha256, of the very bytes that go into the layer (the fingerprint, build.ts).
    const hash = onFileHash ? createHash('sha256') : undefined;
    const fd = openFile(e);
    try {
      let left = size;
      // Whether a read asked for one byte more than the file should have and came back without
      // it: then the file has not grown, with no read of its own to check (a syscall per file).
      let ended = false;
      while (left > 0) {
        const at = blocks.length;
        const room = blocks.room();
        const last = left < room;
        const n = readSync(fd, blocks.buffer, at, last ? left + 1 : Math.min(left, room), null);
        if (n === 0) throw changedError(e); // shorter than its stat said
        if (n > left) throw changedError(e); // longer: the header already promised the size
        ended = last && n === left;
        traceAdd('file.read', n);
        if (hash) {
          hash.update(blocks.buffer.subarray(at, at + n));
          traceAdd('file.hash', n);
        }
        left -= n;
        onBytes?.(n);
        yield* blocks.commit(n);
      }
      // One byte more would mean it grew since the walk: the header already promised the size.
      if (!ended && readSync(fd, PROBE, 0, 1, null) !== 0) throw changedError(e);
      assertUnchanged(e, fstatSync(fd));
      if (hash) onFileHash!(e, hash.digest('hex'));
    } catch (err) {
      if (err instanceof KocacheError) throw err;
      throw fsError(err, e.abs, 'read');
    } finally {
      closeSync(fd);
    }
  }

  // The folders above the destination, so the image has them with known modes (and root's: an
  // owner given for the layer is for its files, not for /usr above them).
  for (const dir of parentsOf(dest)) yield* putAll(rootHeaders.header(`${dir}/`, 'directory', 0o755, 0));
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    const name = e.rel === '' ? dest : dest ? `${dest}/${e.rel}` : e.rel;
    if (name === '') continue; // the root directory placed at / has no entry of its own
    const mode = layerMode(e, keepModes);
    const size = e.type === 'file' ? e.size : 0;
    const entryName = e.type === 'directory' ? `${name}/` : name;
    const linkname = e.type === 'symlink' ? (e.linkTarget ?? '') : '';
    if (e.rawRel) {
      const raw = Buffer.concat([Buffer.from(dest ? `${dest}/` : ''), e.rawRel, Buffer.from(e.type === 'directory' ? '/' : '')]);
      const h: EntryHeader = { ...base, name: entryName, type: e.type, mode, size, linkname };
      yield* putAll(rawNameHeaderBytes(h, raw));
    } else {
      yield* putAll(headers.header(entryName, e.type, mode, size, linkname));
    }
    if (e.type !== 'file') continue;
    if (size === 0) {
      hashOf(e);
      continue;
    }
    const lazy = naming?.unread?.(i) === true;
    naming?.names.source(naming.known(i), lazy ? i : -1, i);
    if (lazy) {
      yield* unread(size);
    } else {
      const done = small(e, size);
      if (done) yield* done;
      else yield* body(e, size);
    }
    yield* blocks.write(ZEROS.subarray(0, padding(size)));
  }
  yield* blocks.write(ZEROS);
  yield* blocks.end();
}

/** `n` bytes of a file from `offset` into `into` at `at`: a hole a lazy tar left (see tarBlocks). */
export function readHole(e: SourceEntry, offset: number, into: Buffer, at: number, n: number): void {
  const fd = openFile(e);
  try {
    for (let got = 0; got < n;) {
      const k = readSync(fd, into, at + got, n - got, offset + got);
      if (k === 0) throw changedError(e);
      got += k;
    }
    traceAdd('file.read', n);
  } catch (err) {
    if (err instanceof KocacheError) throw err;
    throw fsError(err, e.abs, 'read');
  } finally {
    closeSync(fd);
  }
}

function openFile(e: SourceEntry): number {
  try {
    return openSync(e.rawAbs ?? e.abs, 'r');
  } catch (err) {
    throw fsError(err, e.abs, 'read');
  }
}

const NONE: Buffer[] = [];

/**
 * A file rewritten since the walk (same size, so no read noticed): its bytes may not be the ones
 * the layer's key was made from (the files are hashed for the key, then read again into the tar),
 * and a layer recorded under that key would be served for the old contents. Any write moves the
 * ctime. Checked after the file is read, so a write during the read is seen too.
 */
function assertUnchanged(e: SourceEntry, st: { mtimeMs: number; ctimeMs: number; size: number }): void {
  if (st.ctimeMs !== e.ctimeMs || st.mtimeMs !== e.mtimeMs || st.size !== e.size) throw changedError(e);
}

/** The files a worker read for the tar (a lazy pack's), checked as assertUnchanged checks the others. */
export function assertUnchangedFiles(files: readonly SourceEntry[]): void {
  for (const e of files) {
    let st;
    try {
      st = lstatSync(e.rawAbs ?? e.abs);
    } catch (err) {
      throw fsError(err, e.abs, 'read');
    }
    assertUnchanged(e, st);
  }
}

function changedError(e: SourceEntry): KocacheError {
  return new KocacheError('input', `${e.abs} changed while it was being read; build again`);
}
