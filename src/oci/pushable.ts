import { KocacheError, errnoCode } from '../errors.js';
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

/**
 * A blob's bytes, opened only once they are read: a source that is a Node stream (a file's) and is
 * opened ahead of its reader emits an 'error' nobody hears, which ends the process. A failing
 * source is the caller's failure, so it is said so (`fs` for a file's error, else `input`), never
 * taken for the registry's or the output's, and not retried.
 */
export async function* readSource(blob: BlobSource): AsyncGenerator<Uint8Array> {
  try {
    yield* blob.open();
  } catch (err) {
    if (err instanceof KocacheError) throw err;
    const why = err instanceof Error ? err.message : String(err);
    throw new KocacheError(errnoCode(err) ? 'fs' : 'input', `cannot read the source of blob ${blob.descriptor.digest}: ${why}`, { cause: err });
  }
}
