import { availableParallelism } from 'node:os';
import { KocacheError } from '../errors.js';
import { CUT_RULE } from './cuts.js';
import { STORE_RULE } from './incompressible.js';
import { ZSTD_LEVELS, zstdSpec } from './zstd.js';

/** What decides how kocache gzips (gzip.ts); a module of its own, without node:zlib. */
export interface GzipOptions {
  /** gzip (the default) or zstd (src/compress/zstd.ts; OCI manifests only, Node 22.15+). */
  algorithm?: 'gzip' | 'zstd';
  /** zlib level 1-9 (zstd: 1-19). */
  level: number;
  /** Blocks compressed at once. Never changes the output bytes. */
  jobs: number;
}

/**
 * Level 5, not gzip's 6: on the benchmark tree level 6 bought layers under a percent smaller with
 * a quarter of a cold build's CPU (docs/compression.md).
 * `--level` picks another; the level is part of every compressed descriptor's cache key. Frozen:
 * exported, and a caller's change would otherwise alter every other caller's default.
 */
export const DEFAULT_GZIP: Readonly<GzipOptions> = Object.freeze({ level: 5, jobs: availableParallelism() });

/** The levels `algorithm` takes, lowest and highest: the library's check and the CLI's --level. */
export function levelRange(algorithm: 'gzip' | 'zstd'): readonly [number, number] {
  return algorithm === 'zstd' ? [ZSTD_LEVELS.min, ZSTD_LEVELS.max] : [1, 9];
}

/**
 * Refuses settings no layer can be compressed with, before any work: a library caller's are not
 * the command line's, which --compression and --level check.
 */
export function checkCompression(o: GzipOptions): GzipOptions {
  const algorithm = o.algorithm ?? 'gzip';
  if (algorithm !== 'gzip' && algorithm !== 'zstd') throw new KocacheError('input', `compression must be gzip or zstd, not ${JSON.stringify(algorithm)}`);
  const [min, max] = levelRange(algorithm);
  if (!(Number.isInteger(o.level) && o.level >= min && o.level <= max)) {
    throw new KocacheError('input', `compression level must be a whole number from ${min} to ${max} for ${algorithm}, not ${o.level}`);
  }
  return o;
}

/**
 * The gzip layout (docs/compression.md): blocks cut by content, each a sync-flushed raw deflate
 * with the previous 32 KiB as dictionary, a fixed empty final block. Bump on any change to it.
 */
export const GZIP_FORMAT = 'sg1';

/** gzipSpec or zstdSpec, whichever algorithm `o` names: the compression part of a cache key. */
export function compressionSpec(o: GzipOptions): string {
  return o.algorithm === 'zstd' ? zstdSpec(o.level) : gzipSpec(o);
}

/**
 * Names the settings that decide the compressed bytes. It is part of the cache key of every
 * compressed descriptor: a blob made with other settings is another entry.
 */
export function gzipSpec(o: Pick<GzipOptions, 'level'>): string {
  return `gzip-l${o.level}-${GZIP_FORMAT}-${CUT_RULE}-${STORE_RULE}`;
}

/**
 * What a block's compressed bytes depend on besides its input and dictionary, for block keys: the
 * layout, the level, zlib's defaults kocache relies on (window 15, memLevel 8, default strategy)
 * and zlib's version, since another zlib may choose other matches for the same input. The cut
 * rule is not here: it decides which bytes form a block, not how a block compresses.
 */
export function blockKeySpec(o: Pick<GzipOptions, 'level'>, zlibVersion = process.versions.zlib): string {
  return `kocache-deflate-${GZIP_FORMAT}-${STORE_RULE}-l${o.level}-w15-m8-s0-zlib${zlibVersion}`;
}
