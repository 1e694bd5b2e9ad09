import type { Descriptor } from '../oci/descriptor.js';
import type { Digest } from '../oci/digest.js';
import { type Platform, formatPlatform } from '../oci/platform.js';
import { formatReference, parseReference } from '../reference/reference.js';
import { runBounded } from '../util/limit.js';
import { type BaseOptions, haveBlob, notCached, recordBlob } from './base-cache.js';
import { pin, resolveBase } from './base-platforms.js';

export interface WarmOptions extends BaseOptions {
  /** Parallel layer downloads. */
  jobs: number;
  onProgress?: ((e: { done: number; total: number; bytes: number }) => void) | undefined;
}

export interface WarmResult {
  reference: string;
  digest: Digest;
  platforms: string[];
  /** Distinct layers of the chosen platforms. */
  layers: number;
  /** Layers downloaded now; the rest were cached already. */
  fetched: number;
  bytesFetched: number;
}

/**
 * Puts a base image into the cache: manifests, configs and every layer of the chosen platforms
 * (all of an index's platforms when none are named). Blobs already cached are not fetched again,
 * so an interrupted warm resumes where it stopped; every blob is verified as it streams in.
 */
export async function warmBase(base: string, platforms: Platform[] | undefined, opts: WarmOptions): Promise<WarmResult> {
  const ref = parseReference(base);
  const resolved = await resolveBase(ref, platforms, { ...opts, warming: true });
  const layers = new Map<Digest, Descriptor>();
  for (const img of resolved.images) for (const d of img.manifest.value.layers) if (!layers.has(d.digest)) layers.set(d.digest, d);
  const list = [...layers.values()];
  let done = 0;
  let fetched = 0;
  let bytesFetched = 0;
  await runBounded(list, Math.max(1, opts.jobs), async (d) => {
    if (!(await haveBlob(opts.cache, d, opts.warn))) {
      if (opts.offline) throw notCached(`layer ${d.digest} of ${formatReference(ref)}`);
      await opts.cache.writeBlob(opts.client.getBlob(ref, d), { digest: d.digest, size: d.size });
      fetched++;
      bytesFetched += d.size;
    }
    await recordBlob(opts.cache, ref, d);
    done++;
    opts.onProgress?.({ done, total: list.length, bytes: bytesFetched });
  });
  return {
    reference: formatReference(pin(ref, resolved.top.digest)),
    digest: resolved.top.digest,
    platforms: resolved.images.map((i) => formatPlatform(i.platform)),
    layers: list.length,
    fetched,
    bytesFetched,
  };
}
