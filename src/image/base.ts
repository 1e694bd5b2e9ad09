import { KocacheError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import type { ImageConfig } from '../oci/manifest.js';
import type { Platform } from '../oci/platform.js';
import type { BlobSource } from '../oci/pushable.js';
import { type Reference, parseReference } from '../reference/reference.js';
import { type BaseOptions, layerSource } from './base-cache.js';
import { pin, resolveBase } from './base-platforms.js';

export type { BaseOptions } from './base-cache.js';

export interface BaseImage {
  /** undefined for scratch. */
  ref?: Reference;
  platform: Platform;
  /** The base's manifest for this platform (undefined for scratch). */
  manifestDescriptor?: Descriptor;
  config: ImageConfig;
  /** Base layers in order; each opens from the cache when it is there, else from the base registry. */
  layers: BlobSource[];
}

/**
 * Loads a base image for each platform, through the cache (base-cache.ts): a tag costs one
 * manifest HEAD, and every manifest and config whose digest is cached is read from disk. When the
 * base registry cannot be reached, a tag falls back to the digest it last resolved to, with a warning.
 */
export async function loadBase(base: string, platforms: Platform[] | 'all', opts: BaseOptions): Promise<BaseImage[]> {
  if (base === 'scratch') {
    if (platforms === 'all') throw new KocacheError('platform', "platforms 'all' means every platform of the base image, and scratch has none: name the platforms", { exitCode: 2 });
    return platforms.map(scratchBase);
  }
  // 'all': every runnable platform of the base's index, in the index's order.
  const resolved = await resolveBase(parseReference(base), platforms === 'all' ? undefined : platforms, opts);
  const pinned = pin(resolved.ref, resolved.top.digest);
  return resolved.images.map((img) => ({
    ref: pinned,
    platform: img.platform,
    manifestDescriptor: img.manifest.descriptor,
    config: img.config.value,
    layers: img.manifest.value.layers.map((d) => layerSource(resolved.ref, d, opts)),
  }));
}

export function scratchBase(platform: Platform): BaseImage {
  const config: ImageConfig = { architecture: platform.architecture, os: platform.os, rootfs: { type: 'layers', diff_ids: [] }, config: {} };
  if (platform.variant) config.variant = platform.variant;
  return { platform, config, layers: [] };
}
