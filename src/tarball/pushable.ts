import { buffer } from 'node:stream/consumers';
import type { CacheStore } from '../cache/store.js';
import type { Descriptor } from '../oci/descriptor.js';
import { cachedBlob } from '../image/blobs.js';
import type { Pushable, PushableManifest } from '../oci/pushable.js';
import type { ArchiveImage, ArchiveManifest } from './plan.js';

/**
 * The neutral pushable shape of an imported archive. Every byte comes from the content store
 * through its verifying read, so a blob damaged on disk fails the push instead of being uploaded.
 */
export async function archivePushable(cache: CacheStore, image: ArchiveImage): Promise<Pushable> {
  if (image.kind === 'manifest') return manifestPushable(cache, image.manifest, new Map());
  // Read once per digest: an index may name one manifest for many platforms.
  const read = new Map<string, Promise<Buffer>>();
  return {
    kind: 'index',
    bytes: await readSmall(cache, image.index.descriptor),
    descriptor: image.index.descriptor,
    manifests: await Promise.all(image.index.manifests.map((m) => manifestPushable(cache, m, read))),
  };
}

async function manifestPushable(cache: CacheStore, m: ArchiveManifest, read: Map<string, Promise<Buffer>>): Promise<PushableManifest> {
  let bytes = read.get(m.descriptor.digest);
  if (!bytes) read.set(m.descriptor.digest, (bytes = readSmall(cache, m.descriptor)));
  return {
    kind: 'manifest',
    bytes: await bytes,
    descriptor: m.descriptor,
    config: cachedBlob(cache, m.config),
    layers: m.layers.map((l) => cachedBlob(cache, l.descriptor)),
  };
}

async function readSmall(cache: CacheStore, d: Descriptor): Promise<Buffer> {
  // The exact bytes: a manifest's digest is over them, whatever their encoding.
  return buffer(cache.readBlob(d.digest, d.size));
}
