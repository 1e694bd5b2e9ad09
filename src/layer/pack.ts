import { createHash } from 'node:crypto';
import { BlockPool } from '../compress/blockpool.js';
import { gzipStream, type GzipOptions } from '../compress/gzip.js';
import { tap } from '../compress/chunks.js';
import type { BlobInfo, CacheStore } from '../cache/store.js';
import type { Digest } from '../oci/digest.js';
import { traceAdd } from '../util/trace.js';
import { tarBlocks } from './tar.js';
import type { TarOptions } from './tarspec.js';
import type { SourceEntry } from './walk.js';

/**
 * The work a cache miss does, in one pass: tar -> sha256 (diffid) -> gzip -> sha256 (digest) ->
 * content store. A module of its own so a cache hit never loads the tar writer.
 */
export async function packToCache(
  entries: readonly SourceEntry[],
  tarOpts: TarOptions,
  gzip: GzipOptions,
  cache: CacheStore,
  onBytes?: (n: number) => void,
  onFileHash?: (e: SourceEntry, sha256: string) => void,
): Promise<{ blob: BlobInfo; diffid: Digest }> {
  const diffHash = createHash('sha256');
  // Blocks go round: the tar writer fills them, gzip hands each back once it is compressed.
  const pool = new BlockPool(gzip.blockSize, gzip.jobs * 4 + 4);
  const tarBytes = tap(tarBlocks(entries, tarOpts, gzip.blockSize, onBytes, onFileHash, pool), (c) => {
    diffHash.update(c);
    traceAdd('tar.out', c.length);
  });
  const blob = await cache.writeBlob(gzipStream(tarBytes, gzip, (b) => pool.give(b)));
  return { blob, diffid: `sha256:${diffHash.digest('hex')}` };
}
