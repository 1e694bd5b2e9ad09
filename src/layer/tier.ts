import type { Descriptor } from '../oci/descriptor.js';
import type { Digest } from '../oci/digest.js';

/** A layer as a cache answers it: what the image names, and the digest of its uncompressed tar. */
export interface TierLayer {
  descriptor: Descriptor;
  diffid: Digest;
}

/**
 * A cache behind the local one (the registry cache, src/regcache/): asked after the local cache
 * misses, before anything is built, and told about every layer built or found locally so it can
 * record it. `key` is the local build-id key and `compression` the compression setting: together
 * they decide every byte of the layer.
 */
export interface LayerTier {
  find(key: string, compression: string, mediaType: string): Promise<TierLayer | undefined>;
  offer(key: string, compression: string, layer: TierLayer): void;
  /** Rebuild what `find` answered and fail when the digests differ (--cache-check). */
  readonly check: boolean;
}
