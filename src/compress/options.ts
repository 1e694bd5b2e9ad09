import { availableParallelism } from 'node:os';
import { STORE_RULE } from './incompressible.js';

/** What decides how kocache gzips (gzip.ts); a module of its own, without node:zlib. */
export interface GzipOptions {
  /** zlib level 1-9. */
  level: number;
  /** Bytes of input per independently compressed block. Changing it changes the output bytes. */
  blockSize: number;
  /** Blocks compressed at once. Never changes the output bytes. */
  jobs: number;
}

/**
 * Level 5, not gzip's 6: on the benchmark tree it is ~25% less CPU for layers 0.8% larger than
 * `gzip -6` (48.56 vs 48.17 MB); level 6 bought that 0.8% with a quarter of a cold build's time.
 * `--level` picks another; the level is part of every compressed descriptor's cache key.
 */
export const DEFAULT_GZIP: GzipOptions = { level: 5, blockSize: 1 << 20, jobs: availableParallelism() };

/**
 * Names the settings that decide the compressed bytes. It is part of the cache key of every
 * compressed descriptor: a blob made with other settings is another entry.
 */
export function gzipSpec(o: Pick<GzipOptions, 'level' | 'blockSize'>): string {
  return `gzip-l${o.level}-b${o.blockSize}-${STORE_RULE}`;
}
