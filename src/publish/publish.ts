import { loadBase, scratchBase } from '../image/base.js';
import { cachedBlob, observedBlob } from '../image/blobs.js';
import { buildImage } from '../image/build.js';
import { createdTime } from '../image/config.js';
import type { LayerTier } from '../layer/tier.js';
import type { Descriptor } from '../oci/descriptor.js';
import { type Platform, formatPlatform } from '../oci/platform.js';
import type { BlobSource } from '../oci/pushable.js';
import type { RegistryCache } from '../regcache/cache.js';
import { BlobPusher } from '../remote/blob-pusher.js';
import { RegistryClient } from '../remote/client.js';
import { isForeign, targetDigest } from '../remote/push.js';
import { deliver } from './deliver.js';
import type { PublishLayer, PublishOptions, PublishResult } from './options.js';
import { planPublish, plansFor } from './plan.js';

/**
 * Builds the layers through the cache onto a base and pushes the image (or writes it as an OCI
 * layout or a docker-archive): what `kocache publish` does. Every check on the options happens
 * before any work. Pushing, each blob's upload starts the moment the blob is known (base layers at
 * once, each new layer as it is built), so uploads overlap the compression of the other layers.
 */
export async function publish(o: PublishOptions): Promise<PublishResult> {
  const plan = planPublish(o);
  const cache = o.cache;
  const warn = o.warn ?? (() => {});
  const tell = o.onProgress ?? (() => {});
  const counted = o.onProgress
    ? (blob: BlobSource, layer?: PublishLayer) => observedBlob(blob, (size) => tell({ type: 'upload-start', size, layer }), (bytes) => tell({ type: 'uploaded', bytes, layer }))
    : (blob: BlobSource, _layer?: PublishLayer) => blob;
  const pushing = plan.output.kind === 'registry';
  // A scratch base written to a file needs no registry: no client, no connection, no credentials.
  const needsRegistry = plan.base !== 'scratch' || pushing;
  const own = needsRegistry && !o.client
    ? new RegistryClient({ insecureRegistries: o.insecureRegistries ?? [], jobs: plan.jobs, warn, cache, timeouts: o.timeouts ?? {} })
    : undefined;
  const client = o.client ?? own;
  let registryCache: RegistryCache | undefined;
  let done = false;
  try {
    if (plan.base !== 'scratch') tell({ type: 'phase', phase: 'base' });
    // One token per registry for the whole publish, asked for by its first request: pushing to the
    // target, reading (and writing) the registry cache.
    if (pushing) client!.expect({ push: [plan.repo!, ...(o.registryCache?.write ?? [])], pull: o.registryCache?.read ?? [] });
    // What the tag names now is asked for while the layers are built, not before: it is needed
    // only to deliver. A registry that cannot be reached still ends the publish as soon as it says so.
    const currentLookup = pushing ? targetDigest(client!, plan.repo!) : Promise.resolve(undefined);
    const unreachable = currentLookup.then(() => new Promise<never>(() => {}));
    unreachable.catch(() => undefined);
    const bases = await Promise.race([
      plan.base === 'scratch'
        ? (plan.platforms as Platform[]).map(scratchBase)
        : loadBase(plan.base, plan.platforms, { client: client!, cache, offline: Boolean(o.offline), warn }),
      unreachable,
    ]);
    const plans = plansFor(plan, bases.map((b) => b.platform));
    // The registry cache: a layer it answers is mounted (or copied) into the target while the
    // image is made, and the push is told so; records are written in the background, each after
    // its layer's push, and waited for only once the image is delivered.
    // Loaded only when there is one to ask.
    const regcache = o.registryCache ? await loadRegistryCache() : undefined;
    registryCache = o.registryCache && regcache
      ? new regcache.RegistryCache({
        repos: o.registryCache, cache, warn, jobs: plan.jobs, insecureRegistries: o.insecureRegistries ?? [], timeouts: o.timeouts ?? {},
        ...(client ? { via: client } : {}),
      })
      : undefined;
    const total = plans.length * plan.specs.length;

    // One image made and delivered. A layer the registry cache answered is checked while the
    // image is pushed; one withdrawn then (its record proved broken: warned) fails this push
    // before its manifest, and the image is made again without that record.
    const attempt = async () => {
      const pusher = pushing ? new BlobPusher(client!, { registry: plan.repo!.registry, repository: plan.repo!.repository }, plan.jobs) : undefined;
      // A new tag and a layer the local cache lacks: the config this publish makes is new too, and
      // goes into an upload session opened now, while the layer is looked up or built. (A tag that
      // exists may name this image already; a layer known locally may mean a config known elsewhere
      // on the registry, which is mounted.)
      let newTag = false;
      let missed = false;
      const holdIfDue = () => newTag && missed && pusher?.hold();
      currentLookup.then((d) => { newTag = d === undefined; holdIfDue(); }, () => undefined);
      const miss = () => { missed = true; holdIfDue(); };
      for (const base of pusher ? bases : []) {
        for (const layer of base.layers) if (!isForeign(layer)) void pusher!.push(counted(layer));
      }
      const asked = registryCache && regcache?.layerTier(registryCache, {
        target: pusher ? { kind: 'registry', repo: plan.repo!, settle: (d, outcome) => pusher.settle(d, outcome) } : { kind: 'local' },
        ...(pusher ? { pushed: (d: Descriptor) => pusher.push(cachedBlob(cache, d)) } : {}),
      });
      const tier: LayerTier | undefined = asked && { ...asked, find: (...args) => (miss(), asked.find(...args)) };
      tell({ type: 'phase', phase: 'layers', total });
      let built = 0;
      const building = buildImage(
        plans.map((p, i) => ({ ...p, base: bases[i]! })),
        {
          cache,
          importPath: plan.importPath,
          mtime: plan.epoch,
          created: createdTime(plan.epoch),
          overrides: o.config ?? {},
          annotations: o.annotations,
          gzip: plan.compression,
          warn,
          tier,
          // A layer being built goes up as its blob is written (src/remote/upload.ts, StreamedUpload).
          sink: pusher && ((layer) => pusher.stream(o.onProgress && {
            opened: (size) => tell({ type: 'upload-start', size, layer }),
            read: (bytes) => tell({ type: 'uploaded', bytes, layer }),
          })),
          onBytes: (bytes, layer) => tell({ type: 'read', bytes, layer }),
          onPack: (bytes, layer) => {
            miss();
            tell({ type: 'expect', bytes, layer });
          },
          onLayer: (e) => {
            void pusher?.push(counted(cachedBlob(cache, e.descriptor), { spec: e.spec, platform: e.platform }));
            if (!e.cached) built++;
            tell({ type: 'layer', platform: e.platform, spec: e.spec, cached: e.cached });
          },
        },
      );
      // A failed early upload ends the publish now, not once every layer is built (a build that
      // fails after that has nobody left to tell).
      building.catch(() => undefined);
      try {
        const image = await Promise.race([building, unreachable, ...(pusher ? [pusher.failure] : [])]);
        const current = await currentLookup;
        tell({ type: 'layers-done', built, cached: total - built });
        tell({ type: 'phase', phase: pushing ? 'push' : 'write' });
        const d = await deliver(plan, image, { client, pusher, current });
        return { image, built, d };
      } finally {
        // A session opened ahead and not taken is deleted (after a failure the registry expires it).
        await pusher?.release();
      }
    };
    let made: Awaited<ReturnType<typeof attempt>> | undefined;
    while (!made) {
      made = await attempt().catch((err: unknown) => {
        if (registryCache?.withdrew(err)) return undefined;
        throw err;
      });
    }
    const { image, built, d } = made;
    const layers = { built, cached: total - built, reused: bases.reduce((n, b) => n + b.layers.length, 0) };
    const platforms = plans.map((p, i) => ({
      platform: formatPlatform(p.platform),
      digest: image.kind === 'index' ? image.manifests[i]!.descriptor.digest : image.descriptor.digest,
    }));
    const result: PublishResult = {
      reference: d.reference, digest: d.digest, tags: d.tags, platforms, output: d.output, layers,
      uploaded: d.uploaded, mounted: d.mounted, present: d.present, written: d.written,
      bytesUploaded: d.bytesUploaded, bytesWritten: d.bytesWritten, imageId: d.imageId,
    };
    o.onDelivered?.(result);
    // The image is out; the cache records still being written are waited for now (a failure
    // among them was a warning).
    await registryCache?.close();
    done = true;
    return result;
  } finally {
    // On failure the records under way are not waited for: they finish (or fail, warned) on their own.
    // They share the command's connections, so those close once the records are done.
    if (!done && registryCache) registryCache.abandon(() => own?.close());
    else await own?.close();
  }
}

async function loadRegistryCache(): Promise<{ RegistryCache: typeof import('../regcache/cache.js').RegistryCache; layerTier: typeof import('../regcache/layers.js').layerTier }> {
  const [{ RegistryCache }, { layerTier }] = await Promise.all([import('../regcache/cache.js'), import('../regcache/layers.js')]);
  return { RegistryCache, layerTier };
}
