import { KocacheError } from '../errors.js';
import { traceAdd } from '../util/trace.js';

/** The Node release whose node:zlib first has zstd (also in 23.8). */
export const ZSTD_NODE = '22.15';

/** zstd's own default level: on layers far less CPU than gzip -6 for a smaller blob (docs/compression.md). */
export const DEFAULT_ZSTD_LEVEL = 3;

/** The levels `--level` takes with zstd (zstd's "ultra" levels 20-22 need far more memory). */
export const ZSTD_LEVELS = { min: 1, max: 19 } as const;

type ZstdZlib = typeof import('node:zlib') & {
  createZstdCompress?: (o: { params: Record<number, number>; chunkSize: number }) => ZstdStream;
};

/**
 * Why this Node cannot write zstd layers, or undefined when it can. Node 20 has no zstd, and no
 * npm package gives it without a native build or a download at install time.
 */
export function zstdUnavailable(versions: NodeJS.ProcessVersions = process.versions): string | undefined {
  const [major, minor] = versions.node.split('.').map(Number) as [number, number];
  const has = (major === 22 && minor >= 15) || (major === 23 && minor >= 8) || major >= 24;
  return has ? undefined : `zstd layers need Node.js ${ZSTD_NODE} or newer (this is Node.js ${versions.node}); use --compression gzip or a newer Node`;
}

/**
 * Input bytes per zstd frame. Frames are compressed independently (so in parallel, on libuv's
 * thread pool) and concatenated, which zstd readers take as one stream. zstd's own multi-threaded
 * mode was measured giving other bytes for the same input when the input came at another pace
 * (Node 22 and 24), so kocache cuts the frames itself, at fixed offsets of the tar stream.
 */
export const ZSTD_FRAME = 4 << 20;

/**
 * Names the settings that decide the compressed bytes, for the cache key: the frame size, the
 * level and zstd's version (another zstd may choose other matches for the same input).
 */
export function zstdSpec(level: number, zstdVersion = process.versions['zstd'] ?? 'none'): string {
  // s1: frames written through a streaming context (no content size in the frame header).
  return `zstd-l${level}-f${ZSTD_FRAME}-s1-zstd${zstdVersion}`;
}

/**
 * `source` as concatenated zstd frames of ZSTD_FRAME input bytes each (the last shorter), up to
 * `jobs` + 1 compressed at once on libuv's thread pool. The bytes depend on the input, the level
 * and zstd's version, never on `jobs` or on how the input was chunked. `recycle` gets each input
 * buffer back once zstd has taken its bytes. A frame's output comes in the pieces zlib gave.
 *
 * Each of the `jobs` + 1 compressors is one streaming context that ends a frame per ZSTD_FRAME
 * input (a ZSTD_e_end flush) and goes on to its next frame: a one-shot call per frame set up a new
 * context each time, on the main thread and in memory (docs/compression.md). A frame written so
 * does not depend on the frames before it in the same context, nor on how its input was split:
 * so the input buffers go to zstd as they are, cut only at frame ends, never copied into frames.
 */
export async function* zstdStream(
  source: AsyncIterable<Buffer> | Iterable<Buffer>,
  opts: { level: number; jobs: number },
  recycle?: (b: Buffer) => void,
): AsyncGenerator<Buffer> {
  const why = zstdUnavailable();
  if (why) throw new KocacheError('usage', why, { exitCode: 2 });
  // Loaded here, not imported: zstd.ts is loaded by every command (its option checks), a hit never compresses.
  const zlib = process.getBuiltinModule('node:zlib') as ZstdZlib;
  const c = zlib.constants as unknown as Record<string, number>;
  const params = { [c['ZSTD_c_compressionLevel']!]: opts.level, [c['ZSTD_c_checksumFlag']!]: 0 };
  const endFrame = c['ZSTD_e_end']!;
  // Output in few pieces: with zlib's 16 KiB default, each frame came back in ~100 pieces, each a
  // callback on the main thread and garbage.
  const chunkSize = ZSTD_FRAME + (1 << 20);
  const running = Math.max(1, opts.jobs) + 1;
  const contexts: Compressor[] = Array.from({ length: running }, () => compressor(zlib.createZstdCompress!({ params, chunkSize }), endFrame));
  const queue: Promise<Buffer[]>[] = [];
  let fill = 0;
  let frames = 0;
  const end = () => {
    // Frame n goes to context n mod `running`: at most `running` frames are in flight, so a
    // context has finished its previous frame before it gets the next one.
    const p = contexts[frames % running]!.end();
    frames++;
    p.catch(() => {}); // awaited in order below; a failure is seen there
    queue.push(p);
  };
  try {
    for await (const chunk of source) {
      // The chunk goes back once every context given a part of it is done with that part.
      let parts = 1;
      const taken = () => {
        if (--parts === 0) recycle?.(chunk);
      };
      let off = 0;
      while (off < chunk.length) {
        const n = Math.min(ZSTD_FRAME - fill, chunk.length - off);
        parts++;
        traceAdd('zstd.in', n);
        contexts[frames % running]!.write(n === chunk.length ? chunk : chunk.subarray(off, off + n), taken);
        fill += n;
        off += n;
        if (fill === ZSTD_FRAME) {
          end();
          fill = 0;
          while (queue.length >= running) yield* await queue.shift()!;
        }
      }
      taken();
    }
    // The last frame; an empty input is one empty frame, still a valid zstd stream.
    if (fill > 0 || frames === 0) end();
    while (queue.length > 0) yield* await queue.shift()!;
  } finally {
    queue.length = 0;
    for (const ctx of contexts) ctx.close();
  }
}

interface Compressor {
  /** Input for the frame under way; `taken` once zstd has its bytes. */
  write(bytes: Buffer, taken: () => void): void;
  /** Ends the frame under way: its compressed bytes, in order. One frame at a time per compressor. */
  end(): Promise<Buffer[]>;
  close(): void;
}

interface ZstdStream {
  on(event: 'data', fn: (b: Buffer) => void): unknown;
  on(event: 'error', fn: (err: Error) => void): unknown;
  write(b: Buffer, cb: () => void): boolean;
  flush(kind: number, cb: () => void): void;
  destroy(): void;
}

function compressor(stream: ZstdStream, endFrame: number): Compressor {
  let out: Buffer[] = [];
  let failed: Error | undefined;
  let reject: ((err: Error) => void) | undefined;
  stream.on('data', (b) => out.push(b));
  stream.on('error', (err) => {
    failed = err;
    reject?.(err);
  });
  return {
    write(bytes, taken) {
      // Past the high-water mark zlib queues the write; the frames in flight bound what it holds.
      stream.write(bytes, taken);
    },
    end() {
      return new Promise<Buffer[]>((resolve, fail) => {
        if (failed) return fail(failed);
        reject = fail;
        stream.flush(endFrame, () => {
          if (failed) return;
          const pieces = out;
          out = [];
          resolve(pieces);
        });
      });
    },
    close: () => stream.destroy(),
  };
}
