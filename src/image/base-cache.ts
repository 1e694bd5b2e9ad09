import { keepWhileStreaming } from '../cache/keep.js';
import { imageBlobKey, imageTagKey } from '../cache/keys.js';
import { type CacheStore, blobReadFailure } from '../cache/store.js';
import { KocacheError } from '../errors.js';
import { type Descriptor, isDescriptor } from '../oci/descriptor.js';
import type { BlobSource } from '../oci/pushable.js';
import { type Reference, formatReference, formatRepository, withIdentifier } from '../reference/reference.js';
import type { RegistryClient } from '../remote/client.js';
import { RetryableError } from '../remote/retry.js';

// The read-through cache of base images: manifests, configs and layers are read from the local
// cache when there (re-hashed unless their verified stamp vouches for them) and fetched, verified
// and kept when not. A damaged cached blob is dropped with one warning and fetched again.

export interface BaseOptions {
  client: RegistryClient;
  cache: CacheStore;
  /** Never contact the base registry: everything must come from the cache. */
  offline?: boolean | undefined;
  warn?: ((m: string) => void) | undefined;
  /** The caller is `kocache warm`: an error does not advise running it. */
  warming?: boolean | undefined;
}

const MAX_JSON_BLOB = 8 << 20;

/**
 * The top descriptor: by digest straight from the cache; by tag with one HEAD, falling back to
 * the cached tag when the registry is unreachable (or always, offline).
 */
export async function resolveTop(ref: Reference, opts: BaseOptions): Promise<Descriptor> {
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
    const advice = opts.warming ? '' : ` (run kocache warm ${name} while the registry is reachable)`;
    if (!d) throw new KocacheError('unreachable', `${why}; and base image ${name} is not in the cache${advice}`, { cause: err });
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

/** A manifest by descriptor: from the cache when there, else one GET (stored for next time). */
export async function manifestBlob(ref: Reference, d: Descriptor, opts: BaseOptions): Promise<{ descriptor: Descriptor; bytes: Buffer }> {
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
export async function jsonBlob(ref: Reference, d: Descriptor, opts: BaseOptions): Promise<{ bytes: Buffer }> {
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
export function layerSource(ref: Reference, d: Descriptor, opts: BaseOptions): BlobSource {
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
export async function haveBlob(cache: CacheStore, d: Descriptor, warn: ((m: string) => void) | undefined, what: string = d.digest): Promise<boolean> {
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
export async function recordBlob(cache: CacheStore, ref: Reference, d: Descriptor): Promise<void> {
  const key = imageBlobKey(ref.registry, ref.repository, d.digest);
  if (await cache.getRecord(key, isDescriptorRecord)) return;
  const descriptor: Descriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  await cache.putRecord(key, { digest: d.digest, size: d.size }, { descriptor });
}

export function notCached(what: string): KocacheError {
  return new KocacheError('offline', `${what} is not in the cache and fetching is off (offline): warm the cache while online`);
}

/** A registry that cannot be reached or keeps failing (5xx after retries): the cache may stand in. */
function isUnreachable(err: unknown): boolean {
  if (!(err instanceof KocacheError)) return false;
  if (err.code === 'unreachable') return true;
  return err.code === 'registry' && err.cause instanceof RetryableError;
}
