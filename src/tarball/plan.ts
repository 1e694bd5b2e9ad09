import type { Descriptor } from '../oci/descriptor.js';
import type { Digest } from '../oci/digest.js';
import type { ImageConfig, ImageIndex, ImageManifest } from '../oci/manifest.js';
import type { StoredFile } from './ingest.js';

/**
 * What an archive's metadata (docker's manifest.json or OCI's index.json) says the image is,
 * matched against the files the pass stored. Nothing is decided about compression yet.
 */
export interface LayerPlan {
  file: StoredFile;
  /** Where the layer came from, for error messages. */
  what: string;
  /** The media type the archive declared (OCI), or undefined (docker-archive: told by magic). */
  declared?: Descriptor;
  /** Not a filesystem layer (an attestation, say): pushed byte for byte, no diffid. */
  opaque: boolean;
}

export interface ManifestPlan {
  what: string;
  /** An OCI archive's manifest as it was; kept byte-identical when no layer needs compressing. */
  original?: { bytes: Buffer; descriptor: Descriptor; manifest: ImageManifest };
  config: StoredFile;
  configMediaType?: string;
  /** Parsed config, for images (undefined for opaque artifacts). */
  configJson?: ImageConfig;
  layers: LayerPlan[];
}

export interface IndexPlan {
  original: { bytes: Buffer; descriptor: Descriptor; index: ImageIndex };
  manifests: ManifestPlan[];
}

export type ImagePlan = { kind: 'manifest'; manifest: ManifestPlan } | { kind: 'index'; index: IndexPlan };

/** One layer of a finished image: the descriptor pushed, and the uncompressed tar's digest. */
export interface ArchiveLayer {
  descriptor: Descriptor;
  /** Undefined for opaque (non-filesystem) layers. */
  diffid?: Digest;
}

export interface ArchiveManifest {
  descriptor: Descriptor;
  config: Descriptor;
  layers: ArchiveLayer[];
}

export interface ArchiveIndex {
  descriptor: Descriptor;
  manifests: ArchiveManifest[];
}

/**
 * An archive's image after import: every blob named here is in the content store. This is what the
 * `archive/...` record keeps, so a second push of the same archive reads nothing but the cache.
 */
export type ArchiveImage = { kind: 'manifest'; manifest: ArchiveManifest } | { kind: 'index'; index: ArchiveIndex };
