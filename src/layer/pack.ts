import { createHash } from 'node:crypto';
import { BlockPool } from '../compress/blockpool.js';
import { BLOCK_CAPACITY } from '../compress/cuts.js';
import { gzipBlocks, type GzipOptions } from '../compress/gzip.js';
import { blockKeySpec } from '../compress/options.js';
import { tap } from '../compress/chunks.js';
import { zstdStream } from '../compress/zstd.js';
import { LayerBlocks } from '../compress/stitch.js';
import type { BlobInfo, CacheStore } from '../cache/store.js';
import type { Digest } from '../oci/digest.js';
import { traceAdd } from '../util/trace.js';
import { tarBlocks } from './tar.js';
import type { TarOptions } from './tarspec.js';
import type { SourceEntry } from './walk.js';

export interface PackOptions {
  /** Layers of the same lineage (namespace and destination) lend their compressed blocks. */
  lineage: string;
  onBytes?: ((n: number) => void) | undefined;
  onFileHash?: ((e: SourceEntry, sha256: string) => void) | undefined;
  warn?: ((m: string) => void) | undefined;
}

/**
 * The work a cache miss does, in one pass: tar -> sha256 (diffid) -> gzip (copying the blocks an
 * earlier layer of the lineage had) -> sha256 (digest) -> content store, then the layer's block
 * map. A module of its own so a cache hit never loads the tar writer.
 */
export async function packToCache(
  entries: readonly SourceEntry[],
  tarOpts: TarOptions,
  gzip: GzipOptions,
  cache: CacheStore,
  o: PackOptions,
): Promise<{ blob: BlobInfo; diffid: Digest }> {
  const diffHash = createHash('sha256');
  if (gzip.algorithm === 'zstd') {
    // One multi-threaded zstd frame; no block reuse (that is gzip's stitching).
    const pool = new BlockPool(BLOCK_CAPACITY, 4);
    const tarBytes = tap(tarBlocks(entries, tarOpts, o.onBytes, o.onFileHash, pool), (c) => {
      diffHash.update(c);
      traceAdd('tar.out', c.length);
    });
    const blob = await cache.writeBlob(zstdStream(tarBytes, gzip, (b) => pool.give(b)));
    return { blob, diffid: `sha256:${diffHash.digest('hex')}` };
  }
  const blocks = await LayerBlocks.open(cache, o.lineage, blockKeySpec(gzip), { warn: o.warn });
  // Blocks go round: the tar writer fills them, gzip hands each back once it is compressed.
  const pool = new BlockPool(BLOCK_CAPACITY, gzip.jobs * 4 + 4);
  const tarBytes = tap(tarBlocks(entries, tarOpts, o.onBytes, o.onFileHash, pool), (c) => {
    diffHash.update(c);
    traceAdd('tar.out', c.length);
  });
  const blob = await cache.writeBlob(gzipBlocks(tarBytes, gzip, { recycle: (b) => pool.give(b), reuse: blocks, onBlock: blocks.onBlock }));
  await blocks.save(blob);
  return { blob, diffid: `sha256:${diffHash.digest('hex')}` };
}
