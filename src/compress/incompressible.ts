/**
 * Finds the stretches of a block that deflate cannot shrink (files that are compressed already:
 * images, archives, fonts, packed assets), so gzip can write them as stored deflate blocks.
 *
 * zlib spends as much CPU on bytes it cannot compress as on any others, more in fact (at every
 * level: the cost is coding every byte as a literal, not the match search), and then emits them
 * stored anyway, while storing them outright costs a small fraction of that. Trees with packed
 * files compress much faster; others see no change, and sizes barely move (docs/compression.md).
 *
 * The test is a collision count (order-2 Renyi entropy) over a sample of each 64 KiB chunk, in
 * whole numbers only, so the same bytes get the same answer under every CPU and every V8 (a
 * floating-point logarithm need not round alike everywhere, and the answer decides output bytes).
 * The sample takes every 13th byte: a stride that is no power of two, so records of 2^n bytes (a
 * random id, then zeros) do not alias into a sample of random bytes only.
 */

/**
 * Bytes judged at a time; a run is made of whole chunks. At least deflate's 32 KiB window: gzip.ts
 * takes a compressed run's dictionary from inside its block when the run does not start it.
 */
export const CHUNK = 64 * 1024;
const STRIDE = 13;
/** Too few samples to judge (a chunk under 26 KiB, the short last one): compressed as usual. */
const MIN_SAMPLES = 2048;
/**
 * A chunk is stored when 256 * sum(count^2) / n^2 is at most 1 + 377/n (1 for a perfectly even
 * sample). For n random bytes it averages 1 + 255/n with a standard deviation of about 22.6/n, so
 * the limit sits 5.4 of those above the mean whatever the chunk's length (a fixed limit stored no
 * random chunk under ~44 KB: the estimate's bias grows as the sample shrinks). For a full 64 KiB
 * chunk (5,042 samples) that is 1.0748: random chunks score 1.0506 on average (the largest of
 * 20,000: 1.068), 2 KiB of text in 62 KiB of random bytes scores 1.067 and is stored (deflate:
 * 0.8% smaller), 3 KiB scores 1.079 and is compressed (1.5% smaller). What the count cannot see:
 * a repeat (the same random bytes twice within deflate's 32 KiB window), and records whose size is
 * a multiple of 13 with one random byte each, which the sample would see as all random; both are
 * stored where deflate would have shrunk them.
 */
const MARGIN = 377;

export interface Run {
  start: number;
  end: number;
  /** True for a run written as stored deflate blocks, false for one compressed at the level. */
  stored: boolean;
}

/**
 * Names this rule (and the stored runs' output buffer in gzip.ts, which decides where zlib cuts
 * stored blocks) in cache keys (gzipSpec): another rule makes other bytes, so another name.
 */
export const STORE_RULE = 'st1';

const counts = new Uint32Array(256);

/** Whether a chunk's sampled bytes look random enough that deflate would store it anyway. */
export function looksIncompressible(chunk: Uint8Array): boolean {
  const n = Math.ceil(chunk.length / STRIDE);
  if (n < MIN_SAMPLES) return false;
  counts.fill(0);
  for (let i = 0; i < chunk.length; i += STRIDE) counts[chunk[i]!]!++;
  let squares = 0;
  for (let k = 0; k < 256; k++) squares += counts[k]! * counts[k]!;
  // Exact in doubles for any chunk under ~75 MB (both sides stay below 2^53).
  return squares * 256 <= n * (n + MARGIN);
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
