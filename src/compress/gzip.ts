import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import type { Hole } from './blocknames.js';
import { readAhead } from './chunks.js';
import { crc32Combine } from './crc32.js';
import { cutBlocks } from './cuts.js';
import { storedRuns } from './incompressible.js';
import { DEFAULT_GZIP, blockKeySpec, type GzipOptions } from './options.js';
import { traceAdd } from '../util/trace.js';

// The options live apart so that a cache hit, which compresses nothing, never loads node:zlib.
export { DEFAULT_GZIP, gzipSpec, type GzipOptions } from './options.js';

const deflateRaw = promisify(zlib.deflateRaw);

const WINDOW = 32 * 1024;

// A fixed 10-byte header: no mtime, no name, XFL 0, OS 255 ("unknown"). zlib's own header writes
// the OS it was built on, which would make the same layer differ between Linux and macOS.
export const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xff]);
// The last deflate block: final, fixed Huffman codes, empty. Every block before it ends with a
// sync flush, so none depends on being last and any can be copied into another layer.
const FINAL_BLOCK = Buffer.from([0x03, 0x00]);

/** A block's compressed bytes found elsewhere (an earlier layer), with the block's CRC-32. */
export interface ReusedBlock {
  bytes: Buffer;
  /** The block's key (blockKey), for the new layer's map. */
  key: Buffer;
  crc: number;
  /** CRC-32 of `bytes` (as the block map holds it). */
  check: number;
  /** CRC-32 of the dictionary the bytes were deflated with, for a block found by name (0: none). */
  dict: number;
}

/** Where compressed blocks seen before can be found (stitch.ts): by block key. */
export interface BlockSource {
  /** Blocks known: with none, gzip deflates at once and hashes keys only for the map. */
  readonly size: number;
  find(key: Buffer, length: number): Promise<ReusedBlock | undefined>;
  /** By the block's name (blocknames.ts) instead of its key. */
  findName(name: Buffer): Promise<ReusedBlock | undefined>;
}

/** One block as written, in order: what a block map records (stitch.ts). */
export interface WrittenBlock {
  key: Buffer;
  /** Its name (blocknames.ts), when every file in it had a known hash. */
  name: Buffer | undefined;
  /** Compressed size. */
  size: number;
  /** CRC-32 of the block's input. */
  crc: number;
  /** CRC-32 of its compressed bytes: a copy of them is checked against it. */
  check: number;
  /** CRC-32 of its dictionary (0 when not taken: no name, or one shown to lie): a copy by name is checked against it. */
  dict: number;
}

/**
 * A tar whose known files were left unread (tar.ts `lazy`): a block copied by name needs none of
 * its bytes here, and the hashing worker reads the files itself for the diffid and checks what
 * each copy promised (streamhash.ts). Only a block that is not copied by name is filled.
 */
export interface LazyBlocks {
  /** The bytes left unread in a block, given the blocks in order. */
  holes(block: Buffer): readonly Hole[] | undefined;
  /** Reads a hole's bytes into `into` at `at`. */
  fill(hole: Hole, into: Buffer, at: number): void;
  /**
   * Given every block's input CRC-32 in order and the CRC-32 of the dictionary it was deflated
   * with, resolves once they match the bytes the worker read, and rejects when any does not
   * (a name that lied, a file that changed between two reads): the blob must not be kept.
   */
  verify(blocks: readonly { crc: number; dict: number }[]): Promise<void>;
}

export interface GzipHooks {
  /** Where a block goes once compressed, for its producer to fill again (see BlockPool). */
  recycle?: ((block: Buffer) => void) | undefined;
  /** Blocks compressed before, copied instead of deflated. */
  reuse?: BlockSource | undefined;
  /** Told of every block in order, for the next layer to reuse it. */
  onBlock?: ((b: WrittenBlock) => void) | undefined;
  /**
   * A block's key worked out elsewhere (a worker: streamhash.ts), given the blocks in order, the
   * same value as blockKey; undefined for a block it was not given.
   */
  key?: ((block: Buffer) => Promise<Buffer> | undefined) | undefined;
  /**
   * A block's name (blocknames.ts), given the blocks in order: looked up first, so a block found by
   * it needs no key, which costs a sha256 pass over the block and its dictionary.
   */
  name?: ((block: Buffer) => Buffer | undefined) | undefined;
  /** The blocks come with holes (LazyBlocks). */
  lazy?: LazyBlocks | undefined;
  /**
   * The blocks are named once the layer is written (pack.ts): each block's dictionary CRC-32 is
   * taken for the map, as for a block named now.
   */
  namedLater?: boolean | undefined;
  /** Told of a block whose name was found but whose bytes were not the named ones (a name lied). */
  onStale?: (() => void) | undefined;
}

/**
 * Parallel gzip with reusable blocks. The input is cut into blocks by content (cuts.ts); each is
 * raw-deflated with the 32 KiB of input before it as preset dictionary and ends with a sync flush;
 * a fixed empty final block, one header and one CRC-32/ISIZE trailer wrap them into a single
 * ordinary gzip member. Stretches of a block that look incompressible are stored, not compressed
 * (incompressible.ts).
 *
 * A block's bytes are a function of its key: the format, zlib's version and settings, the
 * dictionary and the block itself (blockKey). A block whose key an earlier layer had is copied
 * from that layer (`reuse`), not deflated: the result is byte for byte what deflating gives.
 *
 * zlib's async calls run on libuv's thread pool, so blocks in flight use `jobs` cores (the pool
 * is sized to them by the launcher) without worker_threads (no start-up cost, no copies: the block
 * is handed to zlib as it is). The bytes never depend on `jobs`, timing or what was reused.
 */
export function gzipStream(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  opts: GzipOptions = DEFAULT_GZIP,
  hooks: GzipHooks = {},
): AsyncGenerator<Buffer> {
  return gzipBlocks(cutBlocks(source), opts, hooks);
}

/** gzipStream for input already cut by the rule (tar.ts writes its blocks that way). */
export async function* gzipBlocks(
  blocks: AsyncIterable<Buffer> | Iterable<Buffer>,
  opts: GzipOptions = DEFAULT_GZIP,
  hooks: GzipHooks = {},
): AsyncGenerator<Buffer> {
  // One block more than jobs: when a block finishes, the next is already queued on the thread
  // pool, so a core never idles while the main thread (busy with tar and hashing) gets round to
  // handing it one. One per job was measurably slower; twice the jobs no faster (docs/compression.md).
  const running = Math.max(1, opts.jobs) + 1;
  // Output is yielded in order, but a block that finishes early frees its slot at once: waiting
  // for the oldest block before starting another left a core idle whenever a later block was
  // quicker. Finished blocks wait their turn, at most this many.
  const window = running * 2;
  interface Job {
    finished: boolean;
    key: Buffer | Promise<Buffer> | undefined;
    name: Buffer | undefined;
    /** CRC-32 of the block's dictionary, when it has a name. */
    dict: number;
    out: Promise<Compressed>;
    length: number;
  }
  const inflight: Job[] = [];
  let busy = 0;
  let notify!: () => void;
  let changed = new Promise<void>((resolve) => (notify = resolve));
  let crc = 0;
  let isize = 0;
  let dictionary = Buffer.alloc(0);
  /** Where `dictionary` has bytes a lazy tar left unread. */
  let dictHoles: readonly Hole[] = NO_HOLES;
  const lazy = hooks.lazy;
  /** Each block's input CRC-32 and its dictionary's, for lazy.verify. */
  const used: { crc: number; dict: number }[] = [];
  const spec = blockKeySpec(opts);

  const dispatch = (block: Buffer) => {
    let job: Job;
    const given = hooks.key?.(block);
    const name = hooks.name?.(block);
    const holes = lazy?.holes(block) ?? NO_HOLES;
    // A lazy block's dictionary may have holes: its CRC-32 is taken once it is filled.
    let dict = (name || hooks.namedLater) && !lazy ? zlib.crc32(dictionary) : 0;
    if (hooks.reuse && hooks.reuse.size > 0) {
      const before = dictionary;
      const beforeHoles = dictHoles;
      const key = () => given ?? blockKey(spec, before, block);
      const fill = lazy && (() => {
        for (const h of holes) lazy.fill(h, block, h.pos);
        for (const h of beforeHoles) lazy.fill(h, before, h.pos);
        return zlib.crc32(before);
      });
      job = { finished: false, out: reuseBlock(block, before, name, dict, key, opts.level, hooks.reuse, fill), key: undefined, name, dict, length: block.length };
    } else {
      if (lazy) {
        for (const h of holes) lazy.fill(h, block, h.pos);
        for (const h of dictHoles) lazy.fill(h, dictionary, h.pos);
        dict = zlib.crc32(dictionary);
      }
      // Nothing to copy from: the deflate starts first, and the key (for the map) is hashed while
      // it runs. The main thread is the busier side of a cold build; a block waiting for its key
      // before going to the thread pool left a core idle.
      job = { finished: false, out: compressBlock(block, dictionary, opts.level), key: undefined, name, dict, length: block.length };
      if (hooks.onBlock) job.key = given ?? blockKey(spec, dictionary, block);
    }
    busy++;
    const settle = () => {
      job.finished = true;
      busy--;
      const wake = notify;
      changed = new Promise<void>((resolve) => (notify = resolve));
      wake();
    };
    // A failure is thrown where the job's output is awaited, in order; this only settles the job.
    job.out.then(() => {
      settle();
      hooks.recycle?.(block);
    }, settle);
    inflight.push(job);
    // The next block's dictionary: the last 32 KiB of input, copied so the block can be reused.
    if (block.length >= WINDOW) {
      dictionary = Buffer.from(block.subarray(block.length - WINDOW));
      if (lazy) dictHoles = clipHoles([], holes, 0, block.length - WINDOW, block.length);
    } else {
      const joined = dictionary.length + block.length;
      const from = Math.max(0, joined - WINDOW);
      if (lazy) dictHoles = clipHoles(clipHoles([], dictHoles, 0, from, joined), holes, dictionary.length, from, joined);
      dictionary = Buffer.concat([dictionary, block]).subarray(-WINDOW);
    }
  };

  yield GZIP_HEADER;
  // Copied blocks that follow one another in their source were read as one stretch (stitch.ts):
  // they go out as one write, not one per block (each a round trip to the thread pool).
  let pending: Buffer | undefined;
  const source = readAhead(toAsync(blocks), running * 2)[Symbol.asyncIterator]();
  let ended = false;
  try {
    for (;;) {
      while (!ended && busy < running && inflight.length < window) {
        const next = await source.next();
        if (next.done) {
          ended = true;
          break;
        }
        if (next.value.length > 0) dispatch(next.value);
      }
      const head = inflight[0];
      if (!head) break;
      if (head.finished) {
        inflight.shift();
        const done = await head.out;
        crc = crc32Combine(crc, done.crc, head.length);
        isize = (isize + head.length) >>> 0;
        const dict = done.dict ?? head.dict;
        if (done.stale) hooks.onStale?.();
        if (lazy) used.push({ crc: done.crc, dict });
        if (hooks.onBlock) {
          let size = 0;
          for (const b of done.bytes) size += b.length;
          hooks.onBlock({ key: done.key ?? (await head.key!), name: done.stale ? undefined : head.name, dict: done.stale ? 0 : dict, size, crc: done.crc, check: done.check ?? rangeCheck(done.bytes) });
        }
        for (const b of done.bytes) {
          if (pending && b.buffer === pending.buffer && b.byteOffset === pending.byteOffset + pending.length) {
            pending = Buffer.from(b.buffer, pending.byteOffset, pending.length + b.length);
          } else {
            if (pending) yield pending;
            pending = b;
          }
        }
      } else {
        await changed;
      }
    }
  } finally {
    await source.return?.(undefined);
  }
  if (pending) yield pending;
  // Blocks copied on the word of a name: the worker's reading of the files must agree first.
  if (lazy) await lazy.verify(used);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE(isize, 4);
  yield FINAL_BLOCK;
  yield trailer;
}

const NO_HOLES: readonly Hole[] = [];

/**
 * Appends to `out` the parts of `holes` (at positions + `shift`) within [from, to), placed
 * relative to `from`: the holes of a dictionary cut from the blocks before.
 */
function clipHoles(out: Hole[], holes: readonly Hole[], shift: number, from: number, to: number): Hole[] {
  for (const h of holes) {
    const start = h.pos + shift;
    const a = Math.max(start, from);
    const b = Math.min(start + h.length, to);
    if (a < b) out.push({ pos: a - from, length: b - a, entry: h.entry, offset: h.offset + (a - start) });
  }
  return out;
}

async function* toAsync<T>(source: AsyncIterable<T> | Iterable<T>): AsyncGenerator<T> {
  yield* source;
}

/**
 * What decides a block's compressed bytes, hashed: the format and zlib settings (spec), the
 * dictionary, the block. Two blocks with one key deflate to the same bytes. (WebCrypto's digest
 * would hash on the thread pool, but its per-call overhead cost more CPU than the hashing.)
 */
export function blockKey(spec: string, dictionary: Buffer, block: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(dictionary.length);
  return createHash('sha256').update(spec).update('\0').update(len).update(dictionary).update(block).digest();
}

/** CRC-32 of a block's compressed bytes: what a copy of them is checked against (stitch.ts). */
export function rangeCheck(bytes: readonly Buffer[]): number {
  let c = 0;
  for (const b of bytes) c = zlib.crc32(b, c);
  return c >>> 0;
}

interface Compressed {
  bytes: Buffer[];
  /** CRC-32 of the input. */
  crc: number;
  /** CRC-32 of `bytes`, when known. */
  check?: number;
  /** The block's key, when it was worked out. */
  key?: Buffer;
  /**
   * A lazy block's: the CRC-32 of the dictionary it was deflated with (the map's, for a copy by
   * name; else of the dictionary filled here), for LazyBlocks.verify.
   */
  dict?: number;
  /** Its name was found but its bytes were not the named ones (stitch.stale). */
  stale?: boolean | undefined;
}

/**
 * A block copied from an earlier layer if one had it, else deflated. By name first (no hashing of
 * the block); a name trusts the files' hashes, so the copy's input CRC-32 must match the block's
 * bytes, and the CRC-32 of the dictionary it was deflated with this block's dictionary (a file
 * changed behind the stat cache's back, in this block or in the 32 KiB before it: then by key,
 * which hashes both).
 */
async function reuseBlock(
  block: Buffer,
  dictionary: Buffer,
  name: Buffer | undefined,
  dict: number,
  key: () => Buffer | Promise<Buffer>,
  level: number,
  reuse: BlockSource,
  /** For a lazy block: fills its holes and its dictionary's, giving the dictionary's CRC-32. */
  fill?: (() => number) | undefined,
): Promise<Compressed> {
  const named = name && (await reuse.findName(name));
  if (named) {
    // A lazy block's bytes are not here to check: LazyBlocks.verify does, from the worker's reading.
    if (fill || (zlib.crc32(block) === named.crc && dict === named.dict)) {
      traceAdd('gzip.reused', block.length);
      traceAdd('gzip.named', block.length);
      return { bytes: [named.bytes], crc: named.crc, check: named.check, key: named.key, dict: fill && named.dict };
    }
    traceAdd('stitch.stale', 1);
  }
  // A name shown to lie is not passed on to the new layer's map.
  const stale = named ? true : undefined;
  const filled = fill?.();
  const k = await key();
  const found = await reuse.find(k, block.length);
  if (found) {
    traceAdd('gzip.reused', block.length);
    return { bytes: [found.bytes], crc: found.crc, check: found.check, key: k, dict: filled, stale };
  }
  return { ...(await compressBlock(block, dictionary, level)), key: k, dict: filled, stale };
}

async function compressBlock(block: Buffer, dictionary: Buffer, level: number): Promise<Compressed> {
  traceAdd('gzip.in', block.length);
  const bytes = await deflateBlock(block, dictionary, level);
  return { bytes, crc: zlib.crc32(block) };
}

/**
 * One block as raw deflate: its runs (incompressible.ts) one after another, each stored or
 * compressed with the 32 KiB of input before it as dictionary, each ending in a sync flush. The
 * runs of a block go through the thread pool in turn, so a block keeps to one core and `jobs`
 * still bounds the cores compressing.
 */
async function deflateBlock(block: Buffer, previous: Buffer, level: number): Promise<Buffer[]> {
  const runs = storedRuns(block);
  const out: Buffer[] = [];
  for (const { start, end, stored } of runs) {
    const n = end - start;
    const zopts: zlib.ZlibOptions = {
      level: stored ? 0 : level,
      // Output room for the whole run (stored blocks add 5 bytes per block of up to 64 KiB):
      // with zlib's default 16 KiB, every 16 KiB of output was a round trip between the thread
      // pool and the main thread, and two blocks in flight used 1.1 cores, not 2. It also decides
      // where zlib cuts a stored run into stored blocks, so it is part of the output bytes: a
      // change here needs a new STORE_RULE (incompressible.ts).
      chunkSize: Math.max(16 * 1024, n + (n >> 10) + 64),
      finishFlush: zlib.constants.Z_SYNC_FLUSH,
    };
    if (!stored) {
      // A run starts at the block's start or a whole chunk (64 KiB, more than the window) into it.
      const dictionary = start === 0 ? previous : block.subarray(start - WINDOW, start);
      if (dictionary.length > 0) zopts.dictionary = dictionary;
    } else {
      traceAdd('gzip.stored', n);
    }
    out.push(await deflateRaw(block.subarray(start, end), zopts));
  }
  return out;
}
