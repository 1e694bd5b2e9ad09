import { randomBytes } from 'node:crypto';
import type { BlobSource, PushableIndex, PushableManifest } from '../../src/oci/pushable.js';
import type { ImageConfig, ImageIndex, ImageManifest } from '../../src/oci/manifest.js';
import { sha256Digest } from '../../src/oci/digest.js';
import { MediaType } from '../../src/oci/mediatypes.js';

export type CountedBlob = BlobSource & { opens: number };

export interface TestImage extends PushableManifest {
  layers: CountedBlob[];
}

/** A blob held in memory, yielded in 64 KiB pieces like a file stream; counts how often it is opened. */
export function memoryBlob(bytes: Buffer, mediaType: string = MediaType.OciLayerGzip): CountedBlob {
  const blob = {
    descriptor: { mediaType, digest: sha256Digest(bytes), size: bytes.length },
    opens: 0,
    open: async function* () {
      blob.opens++;
      for (let i = 0; i < bytes.length; i += 64 << 10) yield bytes.subarray(i, i + (64 << 10));
    },
  };
  return blob;
}

/** A small single-platform image with random layers (the registry does not inspect layer bytes). */
export function randomImage(layerSizes: number[], arch = 'amd64'): TestImage {
  const layers = layerSizes.map((n) => memoryBlob(randomBytes(n)));
  const config: ImageConfig = {
    architecture: arch,
    os: 'linux',
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.descriptor.digest) },
    config: {},
  };
  const configBlob = memoryBlob(Buffer.from(JSON.stringify(config)), MediaType.OciConfig);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: configBlob.descriptor,
    layers: layers.map((l) => l.descriptor),
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  return {
    kind: 'manifest',
    bytes,
    descriptor: { mediaType: MediaType.OciManifest, digest: sha256Digest(bytes), size: bytes.length },
    config: configBlob,
    layers,
  };
}

export function indexOf(manifests: PushableManifest[]): PushableIndex {
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: manifests.map((m, i) => ({
      ...m.descriptor,
      platform: { os: 'linux', architecture: ['amd64', 'arm64', 's390x'][i % 3] ?? 'amd64' },
    })),
  };
  const bytes = Buffer.from(JSON.stringify(index));
  return { kind: 'index', bytes, descriptor: { mediaType: MediaType.OciIndex, digest: sha256Digest(bytes), size: bytes.length }, manifests };
}
