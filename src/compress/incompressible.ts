/**
 * Finds the stretches of a block that deflate cannot shrink (files that are compressed already:
 * images, archives, fonts, packed assets), so gzip can write them as stored deflate blocks.
 *
 * zlib spends as much CPU on bytes it cannot compress as on any others, more in fact: on the
 * benchmark tree a 64 KiB chunk of random bytes took ~25 ms/MB at level 5 (level 1: the same;
 * the cost is coding every byte as a literal, not the match search), and zlib then emitted it
 * stored anyway, while storing it outright costs ~1.8 ms/MB. Deflate only, one core: the
 * benchmark tree 1.84 s -> 1.22 s, 150 MB of /usr/share 3.59 s -> 2.81 s, a node_modules
 * 1.33 s -> 1.21 s, 150 MB of /usr/lib 3.46 s -> 3.43 s; sizes within 0.01%.
 *
 * The test is an order-0 entropy estimate from a sample of each 64 KiB chunk. It only ever looks
 * at the bytes, so the output still depends on the input alone. The sample takes every 13th
 * byte: a stride that is no power of two, so records of 2^n bytes (a random id, then zeros) do
 * not alias into a sample of random bytes only.
 */

/**
 * Bytes judged at a time; a run is made of whole chunks. At least deflate's 32 KiB window: gzip.ts
 * takes a compressed run's dictionary from inside its block when the run does not start it.
 */
export const CHUNK = 64 * 1024;
const STRIDE = 13;
/** Too few samples to judge (a short last chunk): compressed as usual. */
const MIN_SAMPLES = 1024;
/**
 * Bits per byte at or above which a chunk is stored. The estimate of 64 KiB of random bytes
 * averages 7.963 (a sample of 5,041 underestimates 8 bits) with a standard deviation of 0.0033;
 * 7.94 is seven of those below, so random chunks are all caught. Anything above it can gain at
 * most ~1% from deflate's codes: 2 KiB of text in 62 KiB of random bytes estimates 7.951
 * (deflate: 0.8% smaller than stored), 4 KiB estimates 7.933 and is compressed (2.1% smaller).
 * What the estimate cannot see is a repeat (the same random bytes twice within deflate's 32 KiB
 * window): that chunk is stored where deflate would have matched it.
 */
const THRESHOLD = 7.94;

export interface Run {
  start: number;
  end: number;
  /** True for a run written as stored deflate blocks, false for one compressed at the level. */
  stored: boolean;
}

/** The change of version names this rule in cache keys (gzipSpec): other rules, other bytes. */
export const STORE_RULE = 'st1';

let nLogN: Float64Array | undefined;
const counts = new Uint32Array(256);

/** Whether a chunk's sampled bytes look random enough that deflate would store it anyway. */
export function looksIncompressible(chunk: Uint8Array): boolean {
  const n = Math.ceil(chunk.length / STRIDE);
  if (n < MIN_SAMPLES) return false;
  if (!nLogN) {
    nLogN = new Float64Array(Math.ceil(CHUNK / STRIDE) + 1);
    for (let i = 1; i < nLogN.length; i++) nLogN[i] = i * Math.log2(i);
  }
  counts.fill(0);
  for (let i = 0; i < chunk.length; i += STRIDE) counts[chunk[i]!]!++;
  // H = log2(n) - sum(c log2 c) / n
  let sum = 0;
  for (let k = 0; k < 256; k++) {
    const c = counts[k]!;
    sum += c < nLogN.length ? nLogN[c]! : c * Math.log2(c);
  }
  return Math.log2(n) - sum / n >= THRESHOLD;
}

/** A block cut into runs of chunks to store and chunks to compress, in order; never empty. */
export function storedRuns(block: Uint8Array): Run[] {
  const runs: Run[] = [];
  for (let start = 0; start < block.length; start += CHUNK) {
    const end = Math.min(start + CHUNK, block.length);
    const stored = looksIncompressible(block.subarray(start, end));
    const last = runs[runs.length - 1];
    if (last && last.stored === stored) last.end = end;
    else runs.push({ start, end, stored });
  }
  if (runs.length === 0) runs.push({ start: 0, end: 0, stored: false });
  return runs;
}
