import type { CacheStore } from '../cache/store.js';
import { KocacheError } from '../errors.js';
import type { GzipOptions } from '../compress/options.js';
import { buildLayer } from '../layer/build.js';
import type { LayerTier } from '../layer/tier.js';
import type { Descriptor } from '../oci/descriptor.js';
import type { Platform } from '../oci/platform.js';
import type { BlobSink } from '../oci/sink.js';
import { type AppendLayer, type AssemblyBase, assembleIndex, assembleManifest } from './assemble.js';
import { type ConfigOverrides, imagePlatform } from './config.js';
import type { Pushable, PushableManifest } from '../oci/pushable.js';
import type { PlatformLayerSpec } from './sources.js';

/** One platform to build: its base and its layers (placeholders already expanded). */
export interface PlatformPlan {
  platform: Platform;
  base: AssemblyBase;
  layers: PlatformLayerSpec[];
}

export interface BuildImageOptions {
  cache: CacheStore;
  importPath: string;
  /** Layer mtime, seconds (SOURCE_DATE_EPOCH or 0). */
  mtime: number;
  /** RFC 3339 `created` of the config and the new history entries. */
  created: string;
  overrides: ConfigOverrides;
  gzip?: GzipOptions;
  warn?: (m: string) => void;
  /**
   * Called once per layer the moment it is ready (built or found in the cache), before the other
   * layers are: progress lines, and `kocache publish` starting that layer's upload right away.
   */
  onLayer?: (e: { platform: Platform; spec: string; descriptor: Descriptor; cached: boolean }) => void;
  /** Bytes of a layer's files read, and which layer (a build shared by platforms names the first). */
  onBytes?: (n: number, layer: { spec: string; platform: Platform }) => void;
  /** A layer must be tarred: the bytes of its files (progress: bytes read of bytes expected). */
  onPack?: ((bytes: number, layer: { spec: string; platform: Platform }) => void) | undefined;
  /** The registry cache, behind the local one (src/layer/tier.ts). */
  tier?: LayerTier | undefined;
  /** Asked when a layer is built (a miss): where its blob's bytes also go while written. */
  sink?: ((layer: { spec: string; platform: Platform }) => BlobSink | undefined) | undefined;
  /** On every manifest and on the index. */
  annotations?: Record<string, string> | undefined;
}

/** A layer built once for every platform whose SRC names the same files. */
type Built = Promise<{ descriptor: Descriptor; diffid: Descriptor['digest']; cached: boolean }>;

/**
 * Builds every layer of one platform through the cache, in parallel, and assembles its image.
 * `shared` holds the layers already under way for other platforms of the same image, by source
 * and destination: a SRC without {os}, {arch}, {variant} or {platform} names the same files for
 * every platform, so it is walked, tarred and compressed once.
 */
export async function buildPlatformImage(plan: PlatformPlan, o: BuildImageOptions, shared = new Map<string, Built>()): Promise<PushableManifest> {
  const layers: AppendLayer[] = await Promise.all(
    plan.layers.map(async ({ spec, source }) => {
      const same = `${source.src}\0${source.dest}`;
      let build = shared.get(same);
      const first = build === undefined;
      if (build === undefined) {
        const id = { spec, platform: plan.platform };
        const { onBytes, onPack } = o;
        build = buildLayer(source, {
          cache: o.cache,
          importPath: o.importPath,
          platform: plan.platform,
          mtime: o.mtime,
          gzip: o.gzip,
          warn: o.warn,
          onBytes: onBytes && ((n) => onBytes(n, id)),
          onPack: onPack && ((n) => onPack(n, id)),
          tier: o.tier,
          sink: o.sink && (() => o.sink!(id)),
        });
        shared.set(same, build);
      }
      const r = await build;
      // Another platform's build of the same files is this platform's copy: no work of its own.
      const cached = r.cached || !first;
      o.onLayer?.({ platform: plan.platform, spec, descriptor: r.descriptor, cached });
      return { descriptor: r.descriptor, diffid: r.diffid, spec, dest: source.dest };
    }),
  );
  return assembleManifest({ base: plan.base, platform: plan.platform, layers, overrides: o.overrides, created: o.created, cache: o.cache, annotations: o.annotations });
}

/**
 * Builds all platforms at once. One platform gives a plain manifest; several give an OCI index
 * whose entries are in the order the platforms were asked for (so the index digest is stable).
 */
export async function buildImage(plans: readonly PlatformPlan[], o: BuildImageOptions): Promise<Pushable> {
  // No plan would be an index of no image: pushed or written, a name for nothing.
  if (plans.length === 0) throw new KocacheError('input', 'buildImage needs at least one platform plan');
  const shared = new Map<string, Built>();
  const images = await Promise.all(plans.map((p) => buildPlatformImage(p, o, shared)));
  if (images.length === 1) return images[0]!;
  return assembleIndex(images.map((image, i) => ({ image, platform: imagePlatform(plans[i]!.platform, plans[i]!.base.config) })), o.annotations);
}
