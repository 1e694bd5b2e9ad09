import type { BlobSource, Pushable, PushableManifest } from '../oci/pushable.js';
import type { Digest } from '../oci/digest.js';
import { MediaType } from '../oci/mediatypes.js';
import { type Reference, formatRepository } from '../reference/reference.js';
import { KocacheError } from '../errors.js';
import { BlobPusher } from './blob-pusher.js';
import type { RegistryClient } from './client.js';

export interface PushResult {
  digest: Digest;
  /** `REGISTRY/REPO@sha256:...`: what to deploy, immune to the tag moving. */
  reference: string;
  uploaded: number;
  mounted: number;
  present: number;
  /** Bytes of the blobs uploaded (mounted and present ones cost nothing). */
  bytesUploaded: number;
}

export interface PushOptions {
  jobs?: number;
  /**
   * Pushes already started for this image (by `kocache publish`, as each layer was built): they
   * are awaited, not repeated, and their outcomes counted. Must be for the same repository.
   */
  pusher?: BlobPusher;
  /**
   * What the target's tag pointed at when looked up before the push (targetDigest). When that is
   * the image being pushed, nothing is checked, sent or put: the registry holds that manifest, and
   * accepted it only because it held every blob it names. Pushes already started (publish's early
   * ones) are still awaited, for their counts.
   */
  current?: Digest | undefined;
  onProgress?: (e: { done: number; total: number }) => void;
}

/**
 * Pushes an image or index: every blob of every manifest once (deduplicated by digest), a bounded
 * number at a time, each starting as soon as a slot frees (or earlier, through `opts.pusher`);
 * then each platform manifest by digest,
 * then the top manifest under the target's tag (or its digest). Manifests go last because a
 * registry rejects a manifest whose blobs it lacks, and the tag must never point at a half image.
 */
export async function pushImage(client: RegistryClient, target: Reference, image: Pushable, opts: PushOptions = {}): Promise<PushResult> {
  const manifests: PushableManifest[] = image.kind === 'index' ? image.manifests : [image];
  const blobs = uniqueBlobs(manifests.flatMap((m) => [...m.layers.filter((l) => !isForeign(l)), m.config]));
  const total = blobs.length + manifests.length + (image.kind === 'index' ? 1 : 0);
  let done = 0;
  const progress = () => opts.onProgress?.({ done, total });
  progress();

  const counts = { uploaded: 0, mounted: 0, present: 0, bytesUploaded: 0 };
  const repo: Reference = { registry: target.registry, repository: target.repository };
  const pusher = opts.pusher ?? new BlobPusher(client, repo, opts.jobs ?? client.jobs ?? 4);
  const top = image.kind === 'index' ? image : manifests[0]!;
  const already = opts.current !== undefined && opts.current === top.descriptor.digest;
  const configs = new Set(manifests.map((m) => m.config.descriptor.digest));
  await Promise.all(
    blobs.map(async (blob) => {
      const outcome = already && !pusher.has(blob.descriptor.digest) ? 'present' : await pusher.push(blob, { ahead: configs.has(blob.descriptor.digest) });
      counts[outcome]++;
      if (outcome === 'uploaded') counts.bytesUploaded += blob.descriptor.size;
      done++;
      progress();
    }),
  );

  if (already) {
    done = total;
    progress();
    await client.hintsWritten();
    return { digest: top.descriptor.digest, reference: `${formatRepository(repo)}@${top.descriptor.digest}`, ...counts };
  }
  if (image.kind === 'index') {
    // Once per digest: an index may name one manifest for many platforms.
    const put = new Set<string>();
    for (const m of manifests) {
      if (!put.has(m.descriptor.digest)) {
        put.add(m.descriptor.digest);
        await client.putManifest({ ...repo, digest: m.descriptor.digest }, m.bytes, m.descriptor.mediaType);
      }
      done++;
      progress();
    }
  }
  const topRef: Reference = target.tag !== undefined ? { ...repo, tag: target.tag } : { ...repo, digest: top.descriptor.digest };
  // Where each blob now is goes to the cache while the manifest is put, not before it.
  const [pushed] = await Promise.all([client.putManifest(topRef, top.bytes, top.descriptor.mediaType), client.hintsWritten()]);
  done++;
  progress();
  return { digest: pushed.digest, reference: `${formatRepository(repo)}@${pushed.digest}`, ...counts };
}

/**
 * What `ref`'s tag points at now, if anything: asked before a push, so that an unreachable
 * registry fails in milliseconds rather than after minutes of work, and so that pushing an image
 * the tag already names does nothing (PushOptions.current). Only a failure to connect is final
 * here: some registries refuse reads of a repository that does not exist yet, and the push itself
 * reports any refusal to write.
 */
export async function targetDigest(client: RegistryClient, ref: Reference): Promise<Digest | undefined> {
  try {
    return (await client.resolve(ref))?.digest;
  } catch (err) {
    if (err instanceof KocacheError && (err.code === 'unreachable' || err.code === 'tls')) throw err;
    return undefined;
  }
}

/**
 * Foreign (non-distributable) layers, such as Windows base layers, live at their `urls` and may
 * not be pushed; registries accept manifests naming them without holding the bytes.
 */
export function isForeign(blob: BlobSource): boolean {
  const mt = blob.descriptor.mediaType;
  return mt === MediaType.DockerForeignLayerGzip || mt.startsWith('application/vnd.oci.image.layer.nondistributable.');
}

/** One BlobSource per digest; the origins of duplicates are merged so any of them can serve a mount. */
function uniqueBlobs(all: BlobSource[]): BlobSource[] {
  const byDigest = new Map<Digest, BlobSource>();
  for (const b of all) {
    const prev = byDigest.get(b.descriptor.digest);
    if (!prev) {
      byDigest.set(b.descriptor.digest, b);
    } else if (b.origins?.length) {
      byDigest.set(b.descriptor.digest, { ...prev, origins: [...(prev.origins ?? []), ...b.origins] });
    }
  }
  return [...byDigest.values()];
}
