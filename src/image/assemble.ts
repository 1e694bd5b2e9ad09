import type { CacheStore } from '../cache/store.js';
import type { Descriptor } from '../oci/descriptor.js';
import type { ImageConfig, ImageIndex, ImageManifest } from '../oci/manifest.js';
import { MediaType } from '../oci/mediatypes.js';
import type { Platform } from '../oci/platform.js';
import { type Reference, formatReference, withIdentifier } from '../reference/reference.js';
import { sortedAnnotations } from './annotations.js';
import { bytesBlob, cachedBlob, jsonBytes, withDescriptor } from './blobs.js';
import { type ConfigOverrides, buildConfig } from './config.js';
import type { BlobSource, PushableIndex, PushableManifest } from '../oci/pushable.js';

/**
 * What assembly needs from a base image. `BaseImage` from ./base.ts has this shape; naming only
 * the fields used here keeps assembly testable without a registry.
 */
export interface AssemblyBase {
  ref?: Reference | undefined;
  platform: Platform;
  manifestDescriptor?: Descriptor | undefined;
  config: ImageConfig;
  layers: BlobSource[];
}

/** A layer kocache built (it is in the content store), and the SRC[:DEST] it came from. */
export interface AppendLayer {
  descriptor: Descriptor;
  diffid: Descriptor['digest'];
  /** The SRC[:DEST] as given (progress lines only: a host path never goes into the image). */
  spec: string;
  /** Where the layer lands in the image, normalised ('' for /). */
  dest: string;
}

export interface AssembleOptions {
  base: AssemblyBase;
  platform: Platform;
  layers: readonly AppendLayer[];
  overrides: ConfigOverrides;
  /** RFC 3339 time for `created` and the new history entries. */
  created: string;
  cache: CacheStore;
  /** Manifest annotations (`--annotation`, the standard ones); the base's name and digest are added. */
  annotations?: Record<string, string> | undefined;
}

const OCI_NONDISTRIBUTABLE_GZIP = 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip';
const DOCKER_LAYER_TAR = 'application/vnd.docker.image.rootfs.diff.tar';

/**
 * Docker layer media types have OCI twins for the very same bytes; an OCI manifest must name
 * the OCI ones (registries and runtimes reject a Docker layer type inside an OCI manifest).
 */
export function ociLayerMediaType(mt: string): string {
  switch (mt) {
    case MediaType.DockerLayerGzip:
      return MediaType.OciLayerGzip;
    case MediaType.DockerForeignLayerGzip:
      return OCI_NONDISTRIBUTABLE_GZIP;
    case DOCKER_LAYER_TAR:
      return MediaType.OciLayer;
    default:
      return mt;
  }
}

/** One platform's image: base layers (renamed to OCI types), then the new layers, and its config. */
export function assembleManifest(o: AssembleOptions): PushableManifest {
  const config = buildConfig(
    o.base.config,
    o.platform,
    o.layers.map((l) => ({ diffid: l.diffid, createdBy: historyLine(l.dest, l.diffid) })),
    o.overrides,
    o.created,
  );
  const configBlob = bytesBlob(MediaType.OciConfig, jsonBytes(config));

  const baseLayers = o.base.layers.map((b) => {
    const mediaType = ociLayerMediaType(b.descriptor.mediaType);
    return mediaType === b.descriptor.mediaType ? b : withDescriptor(b, { ...b.descriptor, mediaType });
  });
  const newLayers = o.layers.map((l) => cachedBlob(o.cache, l.descriptor));
  const layers = [...baseLayers, ...newLayers];

  // Key order is fixed here; it is part of the manifest's digest.
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: descriptorOf(configBlob.descriptor),
    layers: layers.map((l) => descriptorOf(l.descriptor)),
  };
  const annotations = sortedAnnotations(baseAnnotations(o.base) ?? {}, o.annotations ?? {});
  if (annotations) manifest.annotations = annotations;
  const bytes = jsonBytes(manifest);
  const manifestBlob = bytesBlob(MediaType.OciManifest, bytes);
  return { kind: 'manifest', bytes, descriptor: manifestBlob.descriptor, config: configBlob, layers };
}

/**
 * The `created_by` of a new layer: where it lands and its diffid, both decided by the inputs.
 * Never the SRC as typed: a host path would make the same files in two checkouts (or `.` and an
 * absolute path) two images, and would leak the build machine's folders into the image.
 */
export function historyLine(dest: string, diffid: Descriptor['digest']): string {
  return `kocache layer ${dest || '/'} ${diffid}`;
}

/** Several platforms' images under one OCI index; each entry carries its platform. */
export function assembleIndex(images: readonly { image: PushableManifest; platform: Platform }[], annotations?: Record<string, string>): PushableIndex {
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: images.map(({ image, platform }) => ({ ...descriptorOf(image.descriptor), platform: platformOf(platform) })),
  };
  const sorted = sortedAnnotations(annotations ?? {});
  if (sorted) index.annotations = sorted;
  const bytes = jsonBytes(index);
  const blob = bytesBlob(MediaType.OciIndex, bytes);
  return { kind: 'index', bytes, descriptor: blob.descriptor, manifests: images.map((i) => i.image) };
}

/**
 * A descriptor with its fields in the spec's order and nothing undefined: a base layer's
 * descriptor may come from another tool with keys in any order.
 */
function descriptorOf(d: Descriptor): Descriptor {
  const out: Descriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  if (d.urls !== undefined) out.urls = d.urls;
  if (d.annotations !== undefined) out.annotations = d.annotations;
  return out;
}

function platformOf(p: Platform): Platform {
  const out: Platform = { architecture: p.architecture, os: p.os };
  if (p['os.version'] !== undefined) out['os.version'] = p['os.version'];
  if (p['os.features'] !== undefined) out['os.features'] = p['os.features'];
  if (p.variant !== undefined) out.variant = p.variant;
  return out;
}

/**
 * The image-spec annotations that say which base an image was built on (for rebase tools): the
 * name as asked for (a tag, when there is one, not the digest it resolved to) and the digest of
 * this platform's base image.
 */
function baseAnnotations(base: AssemblyBase): Record<string, string> | undefined {
  if (!base.ref || !base.manifestDescriptor) return undefined;
  const named = base.ref.tag !== undefined ? withIdentifier(base.ref, { tag: base.ref.tag }) : base.ref;
  return {
    'org.opencontainers.image.base.digest': base.manifestDescriptor.digest,
    'org.opencontainers.image.base.name': formatReference(named),
  };
}
