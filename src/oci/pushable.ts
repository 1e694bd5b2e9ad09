import type { Descriptor } from './descriptor.js';

/**
 * A blob that can be pushed: its descriptor and a way to open its bytes. `open` may be called
 * more than once (a retried upload re-opens the source), so it must start from the beginning.
 */
export interface BlobSource {
  descriptor: Descriptor;
  open(): AsyncIterable<Uint8Array>;
  /**
   * Repositories known to hold this blob already (a base image's, say): a pusher to the same
   * registry tries a cross-repository mount from them before uploading.
   */
  origins?: BlobOrigin[];
  /**
   * `open` itself fails on bytes that are not the descriptor's (a verified read of the content
   * store): an upload need not hash them a second time.
   */
  verified?: boolean;
}

export interface BlobOrigin {
  registry: string;
  repository: string;
}

/** One image ready to push: the manifest exactly as it will be stored, and the blobs it names. */
export interface PushableManifest {
  kind: 'manifest';
  /** The manifest bytes; their sha256 is the image digest. */
  bytes: Buffer;
  descriptor: Descriptor;
  config: BlobSource;
  layers: BlobSource[];
}

/** A multi-platform image: the index bytes and the images it names. */
export interface PushableIndex {
  kind: 'index';
  bytes: Buffer;
  descriptor: Descriptor;
  manifests: PushableManifest[];
}

export type Pushable = PushableManifest | PushableIndex;
