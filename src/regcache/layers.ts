import type { LayerTier, TierLayer } from '../layer/tier.js';
import type { Descriptor } from '../oci/descriptor.js';
import type { Digest } from '../oci/digest.js';
import type { Reference } from '../reference/reference.js';
import type { RegistryCache, Target } from './cache.js';
import { recordKey } from './record.js';

export interface LayerTierOptions {
  /** Where a found layer's blob must be: see Target. */
  target: Target;
  /**
   * The push of a layer to the target (publish's; started by this call if it was not yet), so a
   * record write waits for it and then mounts from there instead of sending the bytes again.
   */
  pushed?: (descriptor: Descriptor) => Promise<unknown>;
}

/** The key of a layer record: the local build-id key (build id, namespace where it matters, tar settings) and the compression. */
export function layerRecordKey(key: string, compression: string): string {
  return recordKey('layer', [key, compression]);
}

/** The registry cache as the layer builder's second tier (src/layer/tier.ts). */
export function layerTier(rc: RegistryCache, o: LayerTierOptions): LayerTier {
  const targetRepo: Reference | undefined = o.target.kind === 'registry' ? o.target.repo : undefined;
  const foundIn = new Map<Digest, { repo: Reference; confirmed?: Promise<unknown> }>();
  return {
    check: rc.check,
    async find(key, compression, mediaType): Promise<TierLayer | undefined> {
      const found = await rc.findLayer(layerRecordKey(key, compression), mediaType, o.target);
      if (!found) return undefined;
      foundIn.set(found.record.descriptor.digest, { repo: found.repo, ...(found.confirmed ? { confirmed: found.confirmed } : {}) });
      return { descriptor: found.record.descriptor, diffid: found.record.diffid };
    },
    offer(key, compression, layer) {
      const digest = layer.descriptor.digest;
      const found = foundIn.get(digest);
      const offer = () => rc.offerLayer(
        { key: layerRecordKey(key, compression), descriptor: layer.descriptor, diffid: layer.diffid },
        {
          ...(targetRepo ? { target: targetRepo } : {}),
          ...(found ? { holders: [found.repo] } : {}),
          ...(o.pushed ? { ready: o.pushed(layer.descriptor) } : {}),
        },
      );
      // A layer answered before its blob was checked is recorded elsewhere only once it passed.
      if (found?.confirmed) void found.confirmed.then(offer, () => undefined);
      else offer();
    },
  };
}
