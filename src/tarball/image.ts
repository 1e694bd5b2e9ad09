import { diffIdKey, LAYER_NAMESPACE, tarKey } from '../cache/keys.js';
import type { CacheStore } from '../cache/store.js';
import type { GzipOptions } from '../compress/options.js';
import { KocacheError } from '../errors.js';
import type { DiffIdRecord } from '../layer/build.js';
import type { Descriptor } from '../oci/descriptor.js';
import type { Digest } from '../oci/digest.js';
import type { ImageIndex, ImageManifest } from '../oci/manifest.js';
import { MediaType } from '../oci/mediatypes.js';
import { inflate } from './inflate.js';
import { bytesSource, type StoredFile } from './ingest.js';
import { ARCHIVE_GZIP, LayerCompressor, type LayerTar } from './compressor.js';
import type { ArchiveImage, ArchiveLayer, ArchiveManifest, ImagePlan, LayerPlan, ManifestPlan } from './plan.js';

export interface FinishOptions {
  cache: CacheStore;
  gzip: GzipOptions;
  /** Layers compressed at once. */
  jobs: number;
  warn?: (message: string) => void;
  /** The compressor the pass already started layers on, if any. */
  compressor?: LayerCompressor;
}

/**
 * Turns what the pass stored into a pushable image, in two phases. First every layer's diffid is
 * checked against its config, with no record written, so a bad archive leaves the index untouched.
 * Then each layer gets a compressed blob (its own gzip bytes when it came gzipped; else the cached
 * one for its diffid; else compressed now, once) and the records are written.
 */
export async function finishImage(plan: ImagePlan, opts: FinishOptions): Promise<ArchiveImage> {
  const manifests = plan.kind === 'manifest' ? [plan.manifest] : plan.index.manifests;
  const tars = new Map<StoredFile, LayerTar>();
  for (const m of manifests) await checkDiffIds(m, tars, opts.cache);

  const compressor = opts.compressor ?? new LayerCompressor(opts);
  // Each layer, and each manifest, once: an index may name one manifest for many platforms.
  const byDiffid = new Map<Digest, Promise<ArchiveLayer>>();
  const layerFor = (l: LayerPlan): Promise<ArchiveLayer> => {
    if (l.opaque) return storeOpaque(l, opts.cache);
    const tar = tars.get(l.file)!;
    let layer = byDiffid.get(tar.diffid);
    if (!layer) {
      const d = l.file.gzipped ? keepGzip(l, tar, opts.cache) : compressor.finish(tar);
      layer = d.then(async (descriptor) => {
        await opts.cache.putRecord(tarKey(tar.diffid), { digest: tar.diffid, size: tar.size }, { diffid: tar.diffid });
        return { descriptor, diffid: tar.diffid };
      });
      byDiffid.set(tar.diffid, layer);
    }
    return layer;
  };
  const byManifest = new Map<Digest, Promise<{ archive: ArchiveManifest }>>();
  const manifestFor = (m: ManifestPlan) => {
    const key = m.original?.descriptor.digest;
    let done = key === undefined ? undefined : byManifest.get(key);
    if (!done) {
      done = Promise.all(m.layers.map(layerFor)).then((layers) => finishManifest(m, layers, opts.cache));
      if (key !== undefined) byManifest.set(key, done);
    }
    return done;
  };
  const done = await Promise.all(manifests.map(manifestFor));

  if (plan.kind === 'manifest') return { kind: 'manifest', manifest: done[0]!.archive };
  const original = plan.index.original;
  const unchanged = done.every((m, i) => m.archive.descriptor.digest === original.index.manifests[i]!.digest);
  if (unchanged) {
    await storeBytes(opts.cache, original.bytes, original.descriptor.digest);
    const archived = done.map((m, i) => ({ ...m.archive, descriptor: original.index.manifests[i]! }));
    return { kind: 'index', index: { descriptor: original.descriptor, manifests: archived } };
  }
  const children = original.index.manifests.map((d, i) => ({ ...d, mediaType: done[i]!.archive.descriptor.mediaType, digest: done[i]!.archive.descriptor.digest, size: done[i]!.archive.descriptor.size }));
  const index: ImageIndex = { ...original.index, mediaType: MediaType.OciIndex, manifests: children };
  const bytes = Buffer.from(JSON.stringify(index));
  const blob = await storeBytes(opts.cache, bytes);
  return {
    kind: 'index',
    index: { descriptor: { mediaType: MediaType.OciIndex, digest: blob.digest, size: blob.size }, manifests: done.map((m, i) => ({ ...m.archive, descriptor: children[i]! })) },
  };
}

/** Every layer's diffid against the config's rootfs.diff_ids; throws on the first difference. */
async function checkDiffIds(m: ManifestPlan, tars: Map<StoredFile, LayerTar>, cache: CacheStore): Promise<void> {
  const layers = m.layers.filter((l) => !l.opaque);
  if (layers.length === 0 && m.layers.length > 0) return; // an artifact, not an image
  const want = m.configJson?.rootfs?.diff_ids;
  if (!Array.isArray(want)) throw new KocacheError('archive', `${m.what}: the image config has no rootfs.diff_ids`);
  for (const l of layers) if (!tars.has(l.file)) tars.set(l.file, await layerTar(l, cache));
  if (want.length !== layers.length) {
    throw new KocacheError('archive', `${m.what}: the config lists ${want.length} diff_ids but the image has ${layers.length} layers`);
  }
  layers.forEach((l, i) => {
    const got = tars.get(l.file)!.diffid;
    if (got !== want[i]) {
      throw new KocacheError('archive', `${l.what} has diffid ${got} but the config's diff_ids[${i}] is ${String(want[i])}`);
    }
  });
}

/** The uncompressed tar of a layer, in the store: most were stored by the pass; small ones now. */
async function layerTar(l: LayerPlan, cache: CacheStore): Promise<LayerTar> {
  const f = l.file;
  if (!f.gzipped) {
    if (f.bytes) await storeBytes(cache, f.bytes, f.digest);
    return { diffid: f.digest, size: f.size };
  }
  if (f.gzip) {
    if ('error' in f.gzip) throw new KocacheError('archive', f.gzip.error);
    return f.gzip;
  }
  // A small gzipped layer was held in memory; it is inflated here, for the first and only time.
  const bytes = f.bytes!;
  await storeBytes(cache, bytes, f.digest);
  const blob = await cache.writeBlob(inflate(bytesSource(bytes), 'layer', l.what, f.zstd ? 'zstd' : 'gzip'));
  return { diffid: blob.digest, size: blob.size };
}

/** A layer that came gzipped keeps its bytes: recorded under its diffid so it is never recompressed. */
async function keepGzip(l: LayerPlan, tar: LayerTar, cache: CacheStore): Promise<Descriptor> {
  const declared = l.declared?.mediaType;
  if (l.file.zstd) {
    // Pushed as it is. Not recorded as the diffid's gzip blob: a zstd blob serves no gzip lookup.
    const descriptor: Descriptor = { mediaType: MediaType.OciLayerZstd, digest: l.file.digest, size: l.file.size };
    if (l.declared?.annotations) descriptor.annotations = l.declared.annotations;
    return descriptor;
  }
  const mediaType = declared === MediaType.OciLayerGzip || declared === MediaType.DockerLayerGzip ? declared : MediaType.OciLayerGzip;
  const descriptor: Descriptor = { mediaType, digest: l.file.digest, size: l.file.size };
  if (l.declared?.annotations) descriptor.annotations = l.declared.annotations;
  const record: DiffIdRecord = { diffid: tar.diffid, compression: ARCHIVE_GZIP, descriptor: { mediaType: MediaType.OciLayerGzip, digest: l.file.digest, size: l.file.size } };
  await cache.putRecord(diffIdKey(LAYER_NAMESPACE, tar.diffid, ARCHIVE_GZIP), { digest: l.file.digest, size: l.file.size }, record);
  return descriptor;
}

async function storeOpaque(l: LayerPlan, cache: CacheStore): Promise<ArchiveLayer> {
  if (l.file.bytes) await storeBytes(cache, l.file.bytes, l.file.digest);
  return { descriptor: l.declared ?? { mediaType: 'application/octet-stream', digest: l.file.digest, size: l.file.size } };
}

async function finishManifest(m: ManifestPlan, layers: ArchiveLayer[], cache: CacheStore): Promise<{ archive: ArchiveManifest }> {
  if (m.config.bytes) await storeBytes(cache, m.config.bytes, m.config.digest);
  const original = m.original;
  const recompressed = original !== undefined && layers.some((l, i) => l.descriptor.digest !== original.manifest.layers[i]!.digest);
  if (original && !recompressed) {
    await storeBytes(cache, original.bytes, original.descriptor.digest);
    return { archive: { descriptor: original.descriptor, config: original.manifest.config, layers } };
  }
  // The config travels byte for byte (same image ID); only its media type is made OCI's.
  const configMediaType = m.configMediaType === undefined || m.configMediaType === MediaType.DockerConfig ? MediaType.OciConfig : m.configMediaType;
  const config: Descriptor = { mediaType: configMediaType, digest: m.config.digest, size: m.config.size };
  const layerDescriptors = layers.map((l) => (l.descriptor.mediaType === MediaType.DockerLayerGzip ? { ...l.descriptor, mediaType: MediaType.OciLayerGzip } : l.descriptor));
  const manifest: ImageManifest = { ...(original?.manifest ?? {}), schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: layerDescriptors };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const blob = await storeBytes(cache, bytes);
  return {
    archive: {
      descriptor: { mediaType: MediaType.OciManifest, digest: blob.digest, size: blob.size },
      config,
      layers: layers.map((l, i) => ({ ...l, descriptor: layerDescriptors[i]! })),
    },
  };
}

async function storeBytes(cache: CacheStore, bytes: Buffer, digest?: Digest): Promise<{ digest: Digest; size: number }> {
  if (digest !== undefined && (await cache.useBlob(digest, bytes.length)) === 'ok') return { digest, size: bytes.length };
  return cache.writeBlob(bytesSource(bytes), digest ? { digest } : undefined);
}
