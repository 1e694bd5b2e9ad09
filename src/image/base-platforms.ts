import { KocacheError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import type { Digest } from '../oci/digest.js';
import type { ImageConfig, ImageIndex, ImageManifest } from '../oci/manifest.js';
import { isIndexMediaType, isManifestMediaType } from '../oci/mediatypes.js';
import { type Platform, describePlatforms, formatPlatform, platformMatches } from '../oci/platform.js';
import { type Reference, formatReference, formatRepository, withIdentifier } from '../reference/reference.js';
import { type BaseOptions, jsonBlob, manifestBlob, resolveTop } from './base-cache.js';

/** A parsed JSON blob with the bytes and descriptor it came from. */
interface Fetched<T> {
  descriptor: Descriptor;
  bytes: Buffer;
  value: T;
}

/** One platform's image of a base: its manifest and parsed config. */
export interface PlatformImage {
  platform: Platform;
  manifest: Fetched<ImageManifest>;
  config: Fetched<ImageConfig>;
}

/** A resolved base: the top manifest (index or image) and the images chosen from it. */
export interface ResolvedBase {
  ref: Reference;
  top: Descriptor;
  images: PlatformImage[];
}

/**
 * Resolves a reference to its top manifest and picks the images for `platforms` (every
 * runnable platform of an index when undefined). A platform the base lacks is an error naming it.
 */
export async function resolveBase(ref: Reference, platforms: Platform[] | undefined, opts: BaseOptions): Promise<ResolvedBase> {
  const top = await manifestBlob(ref, await resolveTop(ref, opts), opts);
  if (isIndexMediaType(top.descriptor.mediaType)) {
    const index = parseJson<ImageIndex>(top.bytes, `index of ${formatReference(ref)}`);
    const chosen = choose(ref, index, platforms);
    // Fetched once per digest: several entries (or requested platforms) may name one manifest,
    // and each fetch of a manifest would fetch its config again.
    const byDigest = new Map<string, Promise<PlatformImage>>();
    const once = (d: Descriptor) => {
      let p = byDigest.get(d.digest);
      if (!p) byDigest.set(d.digest, (p = manifestBlob(ref, d, opts).then((m) => platformImage(ref, m, opts))));
      return p;
    };
    const fetched = await Promise.all(chosen.map(once));
    // An index entry's platform may be vaguer than the request (no variant): report what was asked.
    const images = platforms ? fetched.map((img, i) => ({ ...img, platform: platforms[i]! })) : fetched;
    return { ref, top: top.descriptor, images };
  }
  const single = await platformImage(ref, top, opts);
  if (platforms !== undefined) {
    const missing = platforms.filter((p) => !platformMatches(p, single.platform));
    if (missing.length > 0) {
      throw new KocacheError('platform', `base image ${formatReference(ref)} is only for ${formatPlatform(single.platform)}, not ${missing.map(formatPlatform).join(', ')}`);
    }
    return { ref, top: top.descriptor, images: platforms.map((p) => ({ ...single, platform: p })) };
  }
  return { ref, top: top.descriptor, images: [single] };
}

/** The index entries for `platforms`, in their order; undefined: every runnable image once. */
function choose(ref: Reference, index: ImageIndex, platforms: Platform[] | undefined): Descriptor[] {
  const name = formatReference(ref);
  if (!Array.isArray(index.manifests)) throw new KocacheError('base', `${name}: index has no manifests list`);
  const runnable = index.manifests.filter((m) => isManifestMediaType(m.mediaType) && m.platform && m.platform.os !== 'unknown');
  if (platforms === undefined) {
    // Each image once, however many index entries name it.
    const seen = new Set<string>();
    return runnable.filter((m) => !seen.has(m.digest) && Boolean(seen.add(m.digest)));
  }
  const chosen: Descriptor[] = [];
  const missing: string[] = [];
  for (const p of platforms) {
    const d = runnable.find((m) => platformMatches(p, m.platform));
    if (d) chosen.push(d);
    else missing.push(formatPlatform(p));
  }
  if (missing.length > 0) {
    const has = describePlatforms(runnable.map((m) => formatPlatform(m.platform!)));
    throw new KocacheError('platform', `base image ${name} has no ${describePlatforms(missing)} image (it has: ${has})`);
  }
  return chosen;
}

/** An image manifest and its config, and the platform the config says it is for. */
async function platformImage(ref: Reference, m: { descriptor: Descriptor; bytes: Buffer }, opts: BaseOptions): Promise<PlatformImage> {
  const name = `${formatRepository(ref)}@${m.descriptor.digest}`;
  if (!isManifestMediaType(m.descriptor.mediaType)) {
    throw new KocacheError('base', `${name}: not an image manifest (${m.descriptor.mediaType})`);
  }
  const manifest = parseJson<ImageManifest>(m.bytes, `manifest ${name}`);
  if (!manifest.config || !Array.isArray(manifest.layers)) throw new KocacheError('base', `${name}: manifest lacks config or layers`);
  const cfg = await jsonBlob(ref, manifest.config, opts);
  const config = parseJson<ImageConfig>(cfg.bytes, `config of ${name}`);
  const platform: Platform = { os: config.os, architecture: config.architecture };
  if (config.variant) platform.variant = config.variant;
  return {
    platform,
    manifest: { descriptor: m.descriptor, bytes: m.bytes, value: manifest },
    config: { descriptor: manifest.config, bytes: cfg.bytes, value: config },
  };
}

/** The reference as given, plus the digest it resolved to (so a tag's base is recorded exactly). */
export function pin(ref: Reference, digest: Digest): Reference {
  return withIdentifier(ref, ref.tag !== undefined ? { tag: ref.tag, digest } : { digest });
}

function parseJson<T>(bytes: Buffer, what: string): T {
  try {
    const v = JSON.parse(bytes.toString('utf8')) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as T;
  } catch {
    throw new KocacheError('base', `${what} is not valid JSON`);
  }
}
