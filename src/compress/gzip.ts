import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { readAhead, rechunk } from './chunks.js';
import { storedRuns } from './incompressible.js';
import { DEFAULT_GZIP, type GzipOptions } from './options.js';
import { traceAdd } from '../util/trace.js';

// The options live apart so that a cache hit, which compresses nothing, never loads node:zlib.
export { DEFAULT_GZIP, gzipSpec, type GzipOptions } from './options.js';

const deflateRaw = promisify(zlib.deflateRaw);

const WINDOW = 32 * 1024;

// A fixed 10-byte header: no mtime, no name, XFL 0, OS 255 ("unknown"). zlib's own header writes
// the OS it was built on, which would make the same layer differ between Linux and macOS.
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xff]);

/**
 * Parallel gzip (pgzip-style). The input is cut into fixed blocks; each is raw-deflated with the
 * previous 32 KiB as its preset dictionary and ends with a sync flush, the last one with a final
 * block; one header and one CRC-32/ISIZE trailer wrap them into a single ordinary gzip member.
 * Stretches of a block that look incompressible are stored, not compressed (incompressible.ts).
 *
 * zlib's async calls run on libuv's thread pool, so blocks in flight use `jobs` cores (the pool
 * is sized to them by the launcher) without worker_threads (no start-up cost, no copies: the block
 * is handed to zlib as it is).
 * The bytes depend only on the input, level and block size (and the store rule), never on `jobs`
 * or on timing.
 */
export async function* gzipStream(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  opts: GzipOptions = DEFAULT_GZIP,
  /** Where a block goes once compressed, for its producer to fill again (see BlockPool). */
  recycle?: (block: Buffer) => void,
): AsyncGenerator<Buffer> {
  // One block more than jobs: when a block finishes, the next is already queued on the thread
  // pool, so a core never idles while the main thread (busy with tar and hashing) gets round to
  // handing it one. Measured on 2 cores, cold 100 MB build (paired runs): one per job was 1.10x
  // the wall time of this; twice the jobs the same as this (1.005x).
  const running = Math.max(1, opts.jobs) + 1;
  // Output is yielded in order, but a block that finishes early frees its slot at once: waiting
  // for the oldest block before starting another left a core idle whenever a later block was
  // quicker. Finished blocks wait their turn, at most this many.
  const window = running * 2;
  const inflight: { finished: boolean; out: Promise<Buffer[]> }[] = [];
  let busy = 0;
  let notify!: () => void;
  let changed = new Promise<void>((resolve) => (notify = resolve));
  let crc = 0;
  let isize = 0;
  let dictionary: Buffer | undefined;
  let held: Buffer | undefined;

  const dispatch = (block: Buffer, last: boolean) => {
    const job = { finished: false, out: deflateBlock(block, dictionary, opts.level, last) };
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
      recycle?.(block);
    }, settle);
    inflight.push(job);
    // The next block's dictionary is this block's tail; copied so the block itself can be reused.
    dictionary = Buffer.from(block.subarray(Math.max(0, block.length - WINDOW)));
  };

  yield GZIP_HEADER;
  const blocks = readAhead(rechunk(source, opts.blockSize), running * 2)[Symbol.asyncIterator]();
  let ended = false;
  try {
    for (;;) {
      while (!ended && busy < running && inflight.length < window) {
        const next = await blocks.next();
        if (next.done) {
          ended = true;
          dispatch(held ?? Buffer.alloc(0), true);
          break;
        }
        const block = next.value;
        traceAdd('gzip.in', block.length);
        crc = zlib.crc32(block, crc);
        isize = (isize + block.length) >>> 0;
        // A block is known not to be the last only once the next one arrives.
        if (held) dispatch(held, false);
        held = block;
      }
      const head = inflight[0];
      if (!head) break;
      if (head.finished) {
        inflight.shift();
        yield* await head.out;
      } else {
        await changed;
      }
    }
  } finally {
    await blocks.return?.(undefined);
  }
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE(isize, 4);
  yield trailer;
}

/**
 * One block as raw deflate: its runs (incompressible.ts) one after another, each stored or
 * compressed with the 32 KiB of input before it as dictionary, each ending in a sync flush but the
 * very last. The runs of a block go through the thread pool in turn, so a block keeps to one core
 * and `jobs` still bounds the cores compressing.
 */
async function deflateBlock(block: Buffer, previous: Buffer | undefined, level: number, last: boolean): Promise<Buffer[]> {
  const runs = storedRuns(block);
  const out: Buffer[] = [];
  for (let i = 0; i < runs.length; i++) {
    const { start, end, stored } = runs[i]!;
    const n = end - start;
    const zopts: zlib.ZlibOptions = {
      level: stored ? 0 : level,
      // Output room for the whole run (stored blocks add 5 bytes per block of up to 64 KiB):
      // with zlib's default 16 KiB, every 16 KiB of output was a round trip between the thread
      // pool and the main thread, and two blocks in flight used 1.1 cores, not 2. It also decides
      // where zlib cuts a stored run into stored blocks, so it is part of the output bytes: a
      // change here needs a new STORE_RULE (incompressible.ts).
      chunkSize: Math.max(16 * 1024, n + (n >> 10) + 64),
      finishFlush: last && i === runs.length - 1 ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH,
    };
    if (!stored) {
      // A run starts at the block's start or a whole chunk (64 KiB, more than the window) into it.
      const dictionary = start === 0 ? previous : block.subarray(start - WINDOW, start);
      if (dictionary) zopts.dictionary = dictionary;
    } else {
      traceAdd('gzip.stored', n);
    }
    out.push(await deflateRaw(block.subarray(start, end), zopts));
  }
  return out;
}
