import type { CacheStore } from '../cache/store.js';
import type { Descriptor } from '../oci/descriptor.js';
import { sha256Digest } from '../oci/digest.js';
import type { BlobSource } from '../oci/pushable.js';

/** A blob held in memory (a config, a manifest): its descriptor and the exact bytes. */
export function bytesBlob(mediaType: string, bytes: Buffer): BlobSource {
  const descriptor: Descriptor = { mediaType, digest: sha256Digest(bytes), size: bytes.length };
  return {
    descriptor,
    open: async function* () {
      yield bytes;
    },
  };
}

/** A blob in the content store; every open re-verifies the bytes against the digest as they stream. */
export function cachedBlob(cache: CacheStore, descriptor: Descriptor): BlobSource {
  return {
    descriptor,
    open: () => cache.readBlob(descriptor.digest, descriptor.size),
    verified: true,
  };
}

/**
 * The same blob, telling its first open (with the blob's size) and the bytes read. A retried
 * upload opens it again from the start: its size is not told twice, and bytes only past those
 * already told, so the counts add up to the blob's size however often it is sent (a progress line
 * once showed "uploaded 64.0 MiB of 114.5 MiB" for a 28.6 MiB blob sent four times).
 */
export function observedBlob(blob: BlobSource, opened: (size: number) => void, read: (bytes: number) => void): BlobSource {
  let told: number | undefined;
  return {
    ...blob,
    open: () => {
      if (told === undefined) {
        told = 0;
        opened(blob.descriptor.size);
      }
      return (async function* () {
        let at = 0;
        for await (const chunk of blob.open()) {
          at += chunk.byteLength;
          if (at > told!) {
            read(at - told!);
            told = at;
          }
          yield chunk;
        }
      })();
    },
  };
}

/** The same bytes under another descriptor (a Docker media type renamed to its OCI twin). */
export function withDescriptor(blob: BlobSource, descriptor: Descriptor): BlobSource {
  const out: BlobSource = { descriptor, open: () => blob.open() };
  if (blob.origins) out.origins = blob.origins;
  if (blob.verified && blob.descriptor.digest === descriptor.digest && blob.descriptor.size === descriptor.size) out.verified = true;
  return out;
}

/**
 * JSON as kocache stores it: no white space, keys in the order the object was built. Manifest and
 * config digests are hashes of these bytes, so the same inputs must always give the same bytes.
 */
export function jsonBytes(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}
