import { KocacheError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import { type Digest, sha256Digest } from '../oci/digest.js';
import type { ImageConfig, ImageIndex, ImageManifest } from '../oci/manifest.js';
import { isIndexMediaType, isManifestMediaType } from '../oci/mediatypes.js';
import { formatPlatform } from '../oci/platform.js';

/** Reads a small blob (manifest, index or config) of the image being inspected, by descriptor. */
export type ReadBlob = (d: Descriptor) => Promise<Buffer>;

/** One layer as the manifest lists it, with its diff_id from the config when known. */
export interface InspectedLayer {
  mediaType: string | null;
  digest: Digest | null;
  size: number;
  diffid: Digest | null;
}

/** One image (one platform): its manifest, its config and its layers. */
export interface InspectedImage {
  platform: string | null;
  mediaType: string;
  digest: Digest | null;
  size: number | null;
  annotations: Record<string, string>;
  /** Names this image goes by: index.json ref names of a layout, RepoTags of a docker-archive. */
  tags: string[];
  /** The manifest as stored (null for a docker-archive, which has none). */
  manifest: ImageManifest | null;
  config: { mediaType: string; digest: Digest; size: number; content: ImageConfig };
  layers: InspectedLayer[];
  /** Sum of the layer sizes as stored (compressed where they are). */
  layersSize: number;
}

export interface Inspection {
  /** What was inspected, as given. */
  source: string;
  mediaType: string;
  digest: Digest | null;
  annotations: Record<string, string>;
  images: InspectedImage[];
}

const MAX_DEPTH = 4;

/** Parses a blob as JSON, checking it against its descriptor first. */
export function checkedJson<T>(bytes: Buffer, d: Descriptor, what: string): T {
  const got = sha256Digest(bytes);
  if (got !== d.digest) throw new KocacheError('digest-mismatch', `${what}: ${d.digest} holds bytes hashing to ${got}`);
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch {
    throw new KocacheError('manifest', `${what}: ${d.digest} is not JSON`);
  }
}

/**
 * Walks an index or manifest down to every image it names, reading only manifests and configs
 * (layers are listed, never read).
 */
export async function inspectManifests(top: Descriptor, bytes: Buffer, read: ReadBlob, what: string, tagsOf: (d: Descriptor) => string[] = () => []): Promise<InspectedImage[]> {
  const images: InspectedImage[] = [];
  const visit = async (d: Descriptor, b: Buffer, depth: number, platform: string | null): Promise<void> => {
    const doc = checkedJson<ImageIndex & ImageManifest>(b, d, what);
    const mediaType = doc.mediaType ?? d.mediaType;
    if (isIndexMediaType(mediaType) || Array.isArray(doc.manifests)) {
      if (depth >= MAX_DEPTH) throw new KocacheError('manifest', `${what}: indexes nested more than ${MAX_DEPTH} deep`);
      for (const child of doc.manifests ?? []) {
        if (!isIndexMediaType(child.mediaType) && !isManifestMediaType(child.mediaType)) continue; // attestations, artifacts
        await visit(child, await read(child), depth + 1, child.platform ? formatPlatform(child.platform) : null);
      }
      return;
    }
    if (!doc.config || !Array.isArray(doc.layers)) throw new KocacheError('manifest', `${what}: ${d.digest} is neither an image manifest nor an index`);
    const content = checkedJson<ImageConfig>(await read(doc.config), doc.config, `${what}: config`);
    const diffids = content.rootfs?.diff_ids ?? [];
    const layers = doc.layers.map((l, i) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size, diffid: diffids[i] ?? null }));
    images.push({
      platform: platform ?? (content.os && content.architecture ? formatPlatform({ os: content.os, architecture: content.architecture, ...(content.variant ? { variant: content.variant } : {}) }) : null),
      mediaType,
      digest: d.digest,
      size: d.size,
      annotations: doc.annotations ?? {},
      tags: tagsOf(d),
      manifest: doc,
      config: { mediaType: doc.config.mediaType, digest: doc.config.digest, size: doc.config.size, content },
      layers,
      layersSize: layers.reduce((n, l) => n + l.size, 0),
    });
  };
  await visit(top, bytes, 0, top.platform ? formatPlatform(top.platform) : null);
  return images;
}
