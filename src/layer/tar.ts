import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { KocacheError, fsError } from '../errors.js';
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
): Generator<Buffer> {
  const mtime = new Date(opts.mtime * 1000);
  const dest = opts.dest.replace(/^\/+/, '');
  const base = { uid: opts.owner?.uid ?? 0, gid: opts.owner?.gid ?? 0, uname: '', gname: '', mtime, size: 0 };
  const keepModes = opts.mode === 'keep';
  const headers = new HeaderWriter(base);
  const rootHeaders = new HeaderWriter({ ...base, uid: 0, gid: 0 });
  // The full blocks go to the consumer, which keeps them (gzip holds each until its deflate is done).
  const blocks = new BlockCutter(pool);
  const put = (bytes: Uint8Array): Buffer[] => blocks.write(bytes);

  function* entry(h: EntryHeader, e?: SourceEntry, rawName?: Buffer, writer = headers): Generator<Buffer> {
    for (const b of rawName ? rawNameHeaderBytes(h, rawName) : writer.header(h.name, h.type, h.mode, h.size, h.linkname)) yield* put(b);
    if (!e) return;
    // The file's own sha256, of the very bytes that go into the layer (the fingerprint, build.ts).
    const hash = onFileHash ? createHash('sha256') : undefined;
    if (h.size === 0) {
      if (hash) onFileHash!(e, hash.digest('hex'));
      return;
    }
    let fd: number;
    try {
      fd = openSync(e.rawAbs ?? e.abs, 'r');
    } catch (err) {
      throw fsError(err, e.abs, 'read');
    }
    try {
      let left = h.size;
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
      if (hash) onFileHash!(e, hash.digest('hex'));
    } catch (err) {
      if (err instanceof KocacheError) throw err;
      throw fsError(err, e.abs, 'read');
    } finally {
      closeSync(fd);
    }
    yield* put(ZEROS.subarray(0, padding(h.size)));
  }

  // The folders above the destination, so the image has them with known modes (and root's: an
  // owner given for the layer is for its files, not for /usr above them).
  for (const dir of parentsOf(dest)) {
    yield* entry({ ...base, uid: 0, gid: 0, name: `${dir}/`, type: 'directory', mode: 0o755 }, undefined, undefined, rootHeaders);
  }
  for (const e of entries) {
    const name = e.rel === '' ? dest : dest ? `${dest}/${e.rel}` : e.rel;
    if (name === '') continue; // the root directory placed at / has no entry of its own
    const mode = layerMode(e, keepModes);
    const raw = e.rawRel && Buffer.concat([Buffer.from(dest ? `${dest}/` : ''), e.rawRel, Buffer.from(e.type === 'directory' ? '/' : '')]);
    if (e.type === 'directory') yield* entry({ ...base, name: `${name}/`, type: 'directory', mode }, undefined, raw);
    else if (e.type === 'symlink') yield* entry({ ...base, name, type: 'symlink', mode, linkname: e.linkTarget ?? '' }, undefined, raw);
    else yield* entry({ ...base, name, type: 'file', mode, size: e.size }, e, raw);
  }
  yield* put(ZEROS);
  yield* blocks.end();
}

function changedError(e: SourceEntry): KocacheError {
  return new KocacheError('input', `${e.abs} changed while it was being read; build again`);
}
