import { keepWhileStreaming } from '../cache/keep.js';
import { imageBlobKey, imageTagKey } from '../cache/keys.js';
import { type CacheStore, blobReadFailure } from '../cache/store.js';
import { KocacheError } from '../errors.js';
import { type Descriptor, isDescriptor } from '../oci/descriptor.js';
import type { Digest } from '../oci/digest.js';
import type { ImageConfig, ImageIndex, ImageManifest } from '../oci/manifest.js';
import { isIndexMediaType, isManifestMediaType } from '../oci/mediatypes.js';
import { type Platform, describePlatforms, formatPlatform, platformMatches } from '../oci/platform.js';
import { type Reference, formatReference, formatRepository, parseReference, withIdentifier } from '../reference/reference.js';
import type { RegistryClient } from '../remote/client.js';
import { runBounded } from '../util/limit.js';
import { RetryableError } from '../remote/retry.js';
import type { BlobSource } from '../oci/pushable.js';

export interface BaseImage {
  /** undefined for scratch. */
  ref?: Reference;
  platform: Platform;
  /** The base's manifest for this platform (undefined for scratch). */
  manifestDescriptor?: Descriptor;
  config: ImageConfig;
  /** Base layers in order; each opens from the cache when it is there, else from the base registry. */
  layers: BlobSource[];
}

export interface BaseOptions {
  client: RegistryClient;
  cache: CacheStore;
  /** Never contact the base registry: everything must come from the cache. */
  offline?: boolean | undefined;
  warn?: ((m: string) => void) | undefined;
}

/** A parsed JSON blob with the bytes and descriptor it came from. */
interface Fetched<T> {
  descriptor: Descriptor;
  bytes: Buffer;
  value: T;
}

/** One platform's image of a base: its manifest and parsed config. */
interface PlatformImage {
  platform: Platform;
  manifest: Fetched<ImageManifest>;
  config: Fetched<ImageConfig>;
}

/** A resolved base: the top manifest (index or image) and the images chosen from it. */
interface ResolvedBase {
  ref: Reference;
  top: Descriptor;
  images: PlatformImage[];
}

const MAX_JSON_BLOB = 8 << 20;

/**
 * Loads a base image for each platform, through the cache: a tag costs one manifest HEAD, and
 * every manifest and config whose digest is cached is read from disk. When the base registry
 * cannot be reached, a tag falls back to the digest it last resolved to, with a warning.
 */
export async function loadBase(base: string, platforms: Platform[] | 'all', opts: BaseOptions): Promise<BaseImage[]> {
  if (base === 'scratch') {
    if (platforms === 'all') throw new KocacheError('platform', '--platform all means every platform of the base image, and scratch has none: name the platforms', { exitCode: 2 });
    return platforms.map(scratchBase);
  }
  // 'all': every runnable platform of the base's index, in the index's order.
  const resolved = await resolveBase(parseReference(base), platforms === 'all' ? undefined : platforms, opts);
  const pinned = pin(resolved.ref, resolved.top.digest);
  return resolved.images.map((img) => ({
    ref: pinned,
    platform: img.platform,
    manifestDescriptor: img.manifest.descriptor,
    config: img.config.value,
    layers: img.manifest.value.layers.map((d) => layerSource(resolved.ref, d, opts)),
  }));
}

export function scratchBase(platform: Platform): BaseImage {
  const config: ImageConfig = { architecture: platform.architecture, os: platform.os, rootfs: { type: 'layers', diff_ids: [] }, config: {} };
  if (platform.variant) config.variant = platform.variant;
  return { platform, config, layers: [] };
}

export interface WarmOptions extends BaseOptions {
  /** Parallel layer downloads. */
  jobs: number;
  onProgress?: ((e: { done: number; total: number; bytes: number }) => void) | undefined;
}

export interface WarmResult {
  reference: string;
  digest: Digest;
  platforms: string[];
  /** Distinct layers of the chosen platforms. */
  layers: number;
  /** Layers downloaded now; the rest were cached already. */
  fetched: number;
  bytesFetched: number;
}

/**
 * Puts a base image into the cache: manifests, configs and every layer of the chosen platforms
 * (all of an index's platforms when none are named). Blobs already cached are not fetched again,
 * so an interrupted warm resumes where it stopped; every blob is verified as it streams in.
 */
export async function warmBase(base: string, platforms: Platform[] | undefined, opts: WarmOptions): Promise<WarmResult> {
  const ref = parseReference(base);
  const resolved = await resolveBase(ref, platforms, opts);
  const layers = new Map<Digest, Descriptor>();
  for (const img of resolved.images) for (const d of img.manifest.value.layers) if (!layers.has(d.digest)) layers.set(d.digest, d);
  const list = [...layers.values()];
  let done = 0;
  let fetched = 0;
  let bytesFetched = 0;
  await runBounded(list, Math.max(1, opts.jobs), async (d) => {
    if (!(await haveBlob(opts.cache, d, opts.warn))) {
      if (opts.offline) throw notCached(`layer ${d.digest} of ${formatReference(ref)}`);
      await opts.cache.writeBlob(opts.client.getBlob(ref, d), { digest: d.digest, size: d.size });
      fetched++;
      bytesFetched += d.size;
    }
    await recordBlob(opts.cache, ref, d);
    done++;
    opts.onProgress?.({ done, total: list.length, bytes: bytesFetched });
  });
  return {
    reference: formatReference(pin(ref, resolved.top.digest)),
    digest: resolved.top.digest,
    platforms: resolved.images.map((i) => formatPlatform(i.platform)),
    layers: list.length,
    fetched,
    bytesFetched,
  };
}

/**
 * Resolves a reference to its top manifest and picks the images for `platforms` (every
 * runnable platform of an index when undefined). A platform the base lacks is an error naming it.
 */
async function resolveBase(ref: Reference, platforms: Platform[] | undefined, opts: BaseOptions): Promise<ResolvedBase> {
  const topDesc = await resolveTop(ref, opts);
  const top = await manifestBlob(ref, topDesc, opts);
  const name = formatReference(ref);
  if (isIndexMediaType(top.descriptor.mediaType)) {
    const index = parseJson<ImageIndex>(top.bytes, `index of ${name}`);
    if (!Array.isArray(index.manifests)) throw new KocacheError('base', `${name}: index has no manifests list`);
    const runnable = index.manifests.filter((m) => isManifestMediaType(m.mediaType) && m.platform && m.platform.os !== 'unknown');
    const chosen: Descriptor[] = [];
    if (platforms === undefined) {
      // Each image once, however many index entries name it.
      const seen = new Set<string>();
      chosen.push(...runnable.filter((m) => !seen.has(m.digest) && Boolean(seen.add(m.digest))));
    } else {
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
    }
    // Fetched once per digest: several entries (or requested platforms) may name one manifest,
    // and each fetch of a manifest would fetch its config again.
    const byDigest = new Map<string, Promise<PlatformImage>>();
    const once = (d: Descriptor) => {
      let p = byDigest.get(d.digest);
      if (!p) byDigest.set(d.digest, (p = platformImage(ref, d, opts)));
      return p;
    };
    const fetched = await Promise.all(chosen.map(once));
    // An index entry's platform may be vaguer than the request (no variant): report what was asked.
    const images = platforms ? fetched.map((img, i) => ({ ...img, platform: platforms[i]! })) : fetched;
    return { ref, top: top.descriptor, images };
  }
  const single = await platformImageFrom(ref, top, opts);
  if (platforms !== undefined) {
    const missing = platforms.filter((p) => !platformMatches(p, single.platform));
    if (missing.length > 0) {
      throw new KocacheError('platform', `base image ${name} is only for ${formatPlatform(single.platform)}, not ${missing.map(formatPlatform).join(', ')}`);
    }
    return { ref, top: top.descriptor, images: platforms.map((p) => ({ ...single, platform: p })) };
  }
  return { ref, top: top.descriptor, images: [single] };
}

/**
 * The top descriptor: by digest straight from the cache; by tag with one HEAD, falling back to
 * the cached tag when the registry is unreachable (or always, offline).
 */
async function resolveTop(ref: Reference, opts: BaseOptions): Promise<Descriptor> {
  const { cache } = opts;
  const name = formatReference(ref);
  if (ref.digest) {
    const rec = await cache.getRecord(imageBlobKey(ref.registry, ref.repository, ref.digest), isDescriptorRecord);
    if (rec && (await haveBlob(cache, rec.metadata.descriptor, opts.warn))) return rec.metadata.descriptor;
    if (opts.offline) throw notCached(name);
    const got = await opts.client.getManifest(ref);
    await storeBlob(cache, ref, got.descriptor, got.bytes);
    return got.descriptor;
  }
  const tag = ref.tag ?? 'latest';
  const tagKey = imageTagKey(ref.registry, ref.repository, tag);
  const cachedTag = async () => {
    const rec = await cache.getRecord(tagKey, isDescriptorRecord);
    const d = rec?.metadata.descriptor;
    return d && (await haveBlob(cache, d, opts.warn)) ? d : undefined;
  };
  if (opts.offline) {
    const d = await cachedTag();
    if (!d) throw notCached(name);
    return d;
  }
  let desc: Descriptor | undefined;
  try {
    desc = await opts.client.resolve(ref);
  } catch (err) {
    if (!isUnreachable(err)) throw err;
    const d = await cachedTag();
    const why = err instanceof Error ? err.message : String(err);
    if (!d) throw new KocacheError('unreachable', `${why}; and base image ${name} is not in the cache (run kocache warm ${name} while the registry is reachable)`, { cause: err });
    opts.warn?.(`${why}; using the cached ${name} (${d.digest})`);
    return d;
  }
  if (!desc) throw new KocacheError('not-found', `base image ${name} not found`);
  const prev = await cache.getRecord(tagKey, isDescriptorRecord);
  if (!(await haveBlob(cache, desc, opts.warn))) {
    const got = await opts.client.getManifest(withIdentifier(ref, { digest: desc.digest }));
    desc = got.descriptor;
    await storeBlob(cache, ref, desc, got.bytes);
  }
  if (prev?.metadata.descriptor.digest !== desc.digest) {
    await cache.putRecord(tagKey, { digest: desc.digest, size: desc.size }, { descriptor: desc });
  }
  return desc;
}

async function platformImage(ref: Reference, d: Descriptor, opts: BaseOptions): Promise<PlatformImage> {
  return platformImageFrom(ref, await manifestBlob(ref, d, opts), opts);
}

async function platformImageFrom(ref: Reference, m: { descriptor: Descriptor; bytes: Buffer }, opts: BaseOptions): Promise<PlatformImage> {
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

/** A manifest by descriptor: from the cache when there, else one GET (stored for next time). */
async function manifestBlob(ref: Reference, d: Descriptor, opts: BaseOptions): Promise<{ descriptor: Descriptor; bytes: Buffer }> {
  const cached = await readCached(opts.cache, d, opts.warn);
  if (cached) {
    await recordBlob(opts.cache, ref, d);
    return { descriptor: d, bytes: cached };
  }
  if (opts.offline) throw notCached(`${formatRepository(ref)}@${d.digest}`);
  const got = await opts.client.getManifest(withIdentifier(ref, { digest: d.digest }));
  await storeBlob(opts.cache, ref, got.descriptor, got.bytes);
  return got;
}

/** A config blob: from the cache when there, else fetched (verified as it streams) and stored. */
async function jsonBlob(ref: Reference, d: Descriptor, opts: BaseOptions): Promise<{ bytes: Buffer }> {
  const cached = await readCached(opts.cache, d, opts.warn);
  if (cached) {
    await recordBlob(opts.cache, ref, d);
    return { bytes: cached };
  }
  if (opts.offline) throw notCached(`config ${d.digest} of ${formatRepository(ref)}`);
  if (d.size > MAX_JSON_BLOB) throw new KocacheError('base', `${formatRepository(ref)}: config ${d.digest} is ${d.size} bytes, more than a config can sensibly be`);
  const parts: Uint8Array[] = [];
  for await (const chunk of opts.client.getBlob(ref, d)) parts.push(chunk);
  const bytes = Buffer.concat(parts);
  await storeBlob(opts.cache, ref, d, bytes);
  return { bytes };
}

/** A base layer: cache first (and marked used), else streamed from the base registry and kept. */
function layerSource(ref: Reference, d: Descriptor, opts: BaseOptions): BlobSource {
  const repo = withIdentifier(ref, {});
  return {
    descriptor: d,
    origins: [{ registry: ref.registry, repository: ref.repository }],
    open: () => openLayer(repo, d, opts),
  };
}

async function* openLayer(repo: Reference, d: Descriptor, opts: BaseOptions): AsyncGenerator<Uint8Array> {
  // A cached layer found damaged is dropped and fetched again, like any other blob (haveBlob).
  if (await haveBlob(opts.cache, d, opts.warn, `layer ${d.digest} of ${formatRepository(repo)}`)) {
    yield* opts.cache.readBlob(d.digest, d.size);
    return;
  }
  if (opts.offline) throw notCached(`layer ${d.digest} of ${formatRepository(repo)}`);
  // Kept on the way through: the next publish on this base finds the layer cached.
  yield* keepWhileStreaming(opts.cache, opts.client.getBlob(repo, d), { digest: d.digest, size: d.size }, () => recordBlob(opts.cache, repo, d));
}

async function readCached(cache: CacheStore, d: Descriptor, warn: ((m: string) => void) | undefined): Promise<Buffer | undefined> {
  if (!(await haveBlob(cache, d, warn))) return undefined;
  const parts: Buffer[] = [];
  try {
    for await (const chunk of cache.readBlob(d.digest, d.size)) parts.push(chunk as Buffer);
  } catch (err) {
    const state = blobReadFailure(err);
    if (state === 'missing') return undefined;
    if (state === 'corrupt') {
      await cache.dropBlob(d.digest);
      warn?.(`cached ${d.digest} was corrupt; dropped it and fetching it again`);
      return undefined;
    }
    throw err;
  }
  return Buffer.concat(parts);
}

/**
 * Whether a blob is cached, whole and intact (re-hashed unless its verified stamp vouches for it),
 * and marked used for gc. A damaged one is dropped with one warning, so the caller fetches it again.
 */
async function haveBlob(cache: CacheStore, d: Descriptor, warn: ((m: string) => void) | undefined, what: string = d.digest): Promise<boolean> {
  const state = await cache.useBlob(d.digest, d.size);
  if (state === 'corrupt') warn?.(`cached ${what} was corrupt; dropped it and fetching it again`);
  return state === 'ok';
}

/** The metadata of an `img/` record, checked as it is read back (a damaged record is a miss). */
function isDescriptorRecord(m: unknown): m is { descriptor: Descriptor } {
  return typeof m === 'object' && m !== null && isDescriptor((m as { descriptor?: unknown }).descriptor);
}

async function storeBlob(cache: CacheStore, ref: Reference, d: Descriptor, bytes: Buffer): Promise<void> {
  await cache.writeBlob(once(bytes), { digest: d.digest, size: d.size });
  await recordBlob(cache, ref, d);
}

async function* once(bytes: Buffer): AsyncGenerator<Uint8Array> {
  yield bytes;
}

/** The record that keeps a base blob from being collected as unreferenced; written once. */
async function recordBlob(cache: CacheStore, ref: Reference, d: Descriptor): Promise<void> {
  const key = imageBlobKey(ref.registry, ref.repository, d.digest);
  if (await cache.getRecord(key, isDescriptorRecord)) return;
  const descriptor: Descriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  await cache.putRecord(key, { digest: d.digest, size: d.size }, { descriptor });
}

/** The reference as given, plus the digest it resolved to (so a tag's base is recorded exactly). */
function pin(ref: Reference, digest: Digest): Reference {
  return withIdentifier(ref, ref.tag !== undefined ? { tag: ref.tag, digest } : { digest });
}

function notCached(what: string): KocacheError {
  return new KocacheError('offline', `${what} is not in the cache and --offline forbids fetching it (run kocache warm while online)`);
}

/** A registry that cannot be reached or keeps failing (5xx after retries): the cache may stand in. */
function isUnreachable(err: unknown): boolean {
  if (!(err instanceof KocacheError)) return false;
  if (err.code === 'unreachable') return true;
  return err.code === 'registry' && err.cause instanceof RetryableError;
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
