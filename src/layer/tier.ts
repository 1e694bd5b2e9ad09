import { KocacheError } from '../errors.js';
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

/**
 * --cache-check: the layer was built anyway; a registry cache that answered anything else holds
 * a wrong record (written by a broken or hostile writer), which must stop the build, loudly.
 */
export function checkTierAnswer(answer: TierLayer, built: { digest: Digest; size: number }, diffid: Digest, key: string): void {
  if (answer.descriptor.digest === built.digest && answer.descriptor.size === built.size && answer.diffid === diffid) return;
  throw new KocacheError(
    'cache-check',
    `--cache-check: the registry cache answered ${answer.descriptor.digest} (diffid ${answer.diffid}) for ${key}, but the layer builds to ${built.digest} (diffid ${diffid}): the cache repository holds a wrong record; stop writing to it from untrusted builds and delete it`,
  );
}
