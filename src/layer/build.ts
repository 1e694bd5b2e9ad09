import { checkCompression, compressionSpec, type GzipOptions, DEFAULT_GZIP } from '../compress/options.js';
import { BUILT_NAMESPACE, binNamespace, buildIdKey, diffIdKey, treeKey, treeMark } from '../cache/keys.js';
import { hasBuilt, markBuilt } from '../cache/built.js';
import type { BlobInfo, CacheStore } from '../cache/store.js';
import { type Descriptor, isDescriptor } from '../oci/descriptor.js';
import { type Digest, isDigest } from '../oci/digest.js';
import { MediaType } from '../oci/mediatypes.js';
import type { Platform } from '../oci/platform.js';
import type { BlobSink } from '../oci/sink.js';
import { KocacheError, usageError } from '../errors.js';
import { fingerprint, fingerprintTree } from './fingerprint.js';
import { type Scout, scoutTree, statFilesWritten, takeEarlyScout, walkShared } from './hashpool.js';
import { hasAtLeastEntries } from './treesize.js';
import { FINGERPRINT_FORMAT } from './formats.js';
import { readGoBuildId } from './gobuildid.js';
import type { LayerSource } from './source.js';
import { StatCache } from './statcache.js';
import { type LayerTier, checkTierAnswer } from './tier.js';
import { tarSpec, type TarOptions } from './tarspec.js';
import { MAX_TAR_SECONDS, fitsTarTime } from './tarheader.js';
import { walkSource, type SourceEntry } from './walk.js';
import { applyExcludes } from './exclude.js';
import { traceAdd } from '../util/trace.js';

export interface BuildLayerOptions {
  cache: CacheStore;
  importPath: string;
  platform: Platform;
  /** A caller-known build id (a lockfile hash, a git tree id); else Go build ID or fingerprint. */
  buildId?: string | undefined;
  /** Seconds; 0 unless SOURCE_DATE_EPOCH says otherwise. */
  mtime?: number;
  gzip?: GzipOptions;
  /** Warnings for stderr (a corrupt cache entry that was dropped, say). */
  warn?: (message: string) => void;
  /** Uncompressed bytes read from the source, for progress. */
  onBytes?: (n: number) => void;
  /** Told once, when the layer must be tarred (a miss): the bytes of its files that onBytes will count. */
  onPack?: ((bytes: number) => void) | undefined;
  /** A cache behind the local one (the registry cache): asked after a local miss, told every layer. */
  tier?: LayerTier | undefined;
  /** Asked on a miss, as the layer is packed: where its blob's bytes also go while written. */
  sink?: (() => BlobSink | undefined) | undefined;
}

export interface LayerResult {
  descriptor: Descriptor;
  diffid: Digest;
  buildId: string;
  /** True when the cache answered and no tar or gzip ran. */
  cached: boolean;
  /** True when the registry cache answered (`cached` too). */
  remote?: boolean;
}

/** What the build-id record holds. */
export interface BuildIdRecord {
  diffid: Digest;
  tarSpec: string;
}

/** What a diffid record holds: the compressed descriptor and the settings that made it. */
export interface DiffIdRecord {
  diffid: Digest;
  compression: string;
  descriptor: Descriptor;
}

/** Record shapes as read back from the index, which is input like any other (src/cache/store.ts). */
export function isBuildIdRecord(m: unknown): m is BuildIdRecord {
  const r = m as Partial<BuildIdRecord> | null;
  return typeof r === 'object' && r !== null && typeof r.diffid === 'string' && isDigest(r.diffid) && typeof r.tarSpec === 'string';
}

export function isDiffIdRecord(m: unknown): m is DiffIdRecord {
  const r = m as Partial<DiffIdRecord> | null;
  return typeof r === 'object' && r !== null && typeof r.diffid === 'string' && isDigest(r.diffid) && typeof r.compression === 'string' && isDescriptor(r.descriptor);
}

/** The fingerprint format of the first key scheme, whose records are still read. */
const FIRST_SCHEME_FINGERPRINT = 1;

/** A tree with this many entries is walked on two threads, and a fresh runner's hashed ahead (docs/registry-cache.md). */
export const SCOUT_MIN_ENTRIES = 4096;
/** Below this many bytes of files (and entries), a fresh runner hashes its tree on one thread. */
export const SECOND_THREAD_MIN_BYTES = 64 << 20;

export function validateImportPath(ip: string): string {
  if (!ip || !ip.trim()) throw new KocacheError('input', 'empty import path: it names what is being built (e.g. github.com/you/app)');
  if (ip.split('/').some((p) => p === '..' || p === '.') || ip.startsWith('/') || /[\0\n]/.test(ip)) {
    throw new KocacheError('input', `invalid import path ${JSON.stringify(ip)}: no leading /, no . or .. parts`);
  }
  return ip;
}

/**
 * Layer mtimes (SOURCE_DATE_EPOCH) as a tar header holds them: whole seconds from 1970 to 2242.
 * `what` names the option, for the message.
 */
export function validateMtime(seconds: number, what: string): number {
  if (!fitsTarTime(seconds)) {
    throw new KocacheError('input', `${what} must be whole seconds since 1970, at most ${MAX_TAR_SECONDS} (the year 2242), not ${seconds}`);
  }
  return seconds;
}

/**
 * A build id given by the caller is the cache key of the layer: an empty or blank one would make
 * unrelated trees of one import path share an entry (the second build served the first's layer).
 */
export function validateBuildId(id: string): string {
  if (!id.trim()) throw usageError(`empty build id ${JSON.stringify(id)}: give one that changes with the inputs (a lockfile hash, a git tree id), or none`);
  if (/[\0-\x1f\x7f]/.test(id)) throw usageError(`invalid build id ${JSON.stringify(id)}: no control characters`);
  return id;
}

/**
 * Builds one layer through the cache. A hit (the same input seen before with the same tar and
 * compression settings, blob present and intact) runs no tar and no gzip; a miss streams
 * tar -> sha256 (diffid) -> gzip -> sha256 (digest) -> content store in one pass, and records
 * the layer's keys (src/cache/keys.ts) once the blob is safely in place.
 *
 * Lookups, in order: the vouched-for id (a caller's --build-id, else a Go build ID) within this
 * import path and platform; then the tree's fingerprint, which is the content and so answers for
 * any repository, import path or platform; then the first key scheme's fingerprint record under
 * this import path and platform (a cache filled before the keys changed).
 */
export async function buildLayer(source: LayerSource, opts: BuildLayerOptions): Promise<LayerResult> {
  validateImportPath(opts.importPath);
  if (opts.buildId !== undefined) validateBuildId(opts.buildId);
  const cache = opts.cache;
  const gzip = checkCompression(opts.gzip ?? DEFAULT_GZIP);
  const tarOpts: TarOptions = { dest: source.dest, mtime: validateMtime(opts.mtime ?? 0, 'mtime'), owner: source.owner, mode: source.mode, exclude: source.exclude?.id };
  const spec = tarSpec(tarOpts);
  const namespace = binNamespace(opts.importPath, opts.platform);
  const zstd = gzip.algorithm === 'zstd';
  const mediaType = zstd ? MediaType.OciLayerZstd : MediaType.OciLayerGzip;
  const compression = compressionSpec(gzip);
  const find = (key: string) => lookup(cache, key, namespace, compression, opts.warn);

  // A fresh runner's tree may have been listed, and its hashing begun, as the command started
  // (src/cli/startup/hashworker.ts); the listing is this walk, taken earlier.
  const early = await takeEarlyScout(source.src, opts.buildId === undefined && opts.tier !== undefined && source.exclude === undefined);
  const startedMs = early?.startedMs ?? Date.now();
  const stats = new StatCache(cache.dir, source.src, startedMs);
  // A fresh runner (a registry cache, no stamps of this tree) hashes the whole tree before
  // anything else. A second thread costs its start-up first, so it is used only where that is
  // repaid: it walks and hashes a tree of many entries with this one (the walk outlasts its
  // start-up), or helps hash a few big files once the walk has shown their size.
  // Any other tree of many entries (an edit, a hit) is walked on two threads too, its files only
  // lstat-ed: the stat cache knows their hashes.
  const fresh = opts.buildId === undefined && opts.tier !== undefined && !stats.hasStamps();
  const stamped = stats.stampedFiles();
  const many = !early && (stamped > 0 ? stamped >= SCOUT_MIN_ENTRIES : hasAtLeastEntries(source.src, SCOUT_MIN_ENTRIES));
  const scout = early?.scout ?? (fresh && many ? await scoutTree(source.src) : undefined);
  if (scout && !early) traceAdd('file.scout', 1);
  const listed = early?.entries ?? (scout ? await scout.walk() : many ? await walkShared(source.src) : await walkAfterATurn(source.src));
  const entries = await applyExcludes(listed, source.exclude);
  const secondThread = !fresh || scout !== undefined || fileBytes(entries) >= SECOND_THREAD_MIN_BYTES;
  const vouched = opts.buildId ?? goBuildId(entries);
  /** Each file's sha256 by entry index, once the tree has been fingerprinted: it names gzip's blocks. */
  let hashes: readonly (string | undefined)[] | undefined;
  const pack = async (onFileHash?: (e: SourceEntry, sha256: string) => void, hashOf?: (e: SourceEntry) => string | undefined) => {
    const { packToCache } = await import('./pack.js');
    opts.onPack?.(fileBytes(entries));
    const known = hashes && ((i: number) => hashes![i]);
    return packToCache(entries, tarOpts, gzip, cache, { lineage: `${namespace}/dest=${tarOpts.dest || '/'}`, onBytes: opts.onBytes, onFileHash, hashOf, known, warn: opts.warn, sink: opts.sink?.() });
  };
  const vouchedKey = vouched === undefined ? undefined : buildIdKey(namespace, vouched, spec);
  /** `fp` undefined: only the vouched id may say what the layer is (a registry cache's answer to it). */
  const record = async (fp: string | undefined, blob: BlobInfo, diffid: Digest): Promise<Descriptor> => {
    const descriptor: Descriptor = { mediaType, digest: blob.digest, size: blob.size };
    markBuilt(cache.dir, treeMark(spec));
    // The diffid record first: an id record must never point at a diffid that has no descriptor.
    await cache.putRecord<DiffIdRecord>(diffIdKey(BUILT_NAMESPACE, diffid, compression), blob, { diffid, compression, descriptor });
    if (fp !== undefined) await cache.putRecord<BuildIdRecord>(treeKey(FINGERPRINT_FORMAT, fp, spec), blob, { diffid, tarSpec: spec });
    if (vouchedKey !== undefined) await cache.putRecord<BuildIdRecord>(vouchedKey, blob, { diffid, tarSpec: spec });
    return descriptor;
  };

  const tier = opts.tier;
  if (vouchedKey !== undefined) {
    const hit = await find(vouchedKey);
    if (hit) {
      tier?.offer(vouchedKey, compression, hit);
      return { ...hit, buildId: vouched!, cached: true };
    }
  }

  // A cache that built under this namespace with the first key scheme may hold its fingerprint
  // there, taken in the format it knew.
  const legacy = FINGERPRINT_FORMAT === FIRST_SCHEME_FINGERPRINT && hasBuilt(cache.dir, namespace);
  // With a registry cache an empty local cache can still hit: the tree is fingerprinted first.
  // Whether any layer was recorded here with these tar settings: if not, no fingerprint can hit.
  const builtHere = hasBuilt(cache.dir, treeMark(spec));
  if (!tier && !legacy && !builtHere) {
    // Nothing was ever built with these tar settings in this cache, so no fingerprint can hit:
    // instead of reading and hashing the whole tree before tarring it, take each file's hash from
    // the bytes the tar writer reads. The tree is read once, and the hashing runs on the main
    // thread while the compression threads work.
    const read = new Map<SourceEntry, string>();
    const { blob, diffid } = await pack((e, sha256) => read.set(e, sha256), (e) => read.get(e));
    const fp = fingerprint(entries, stats, read);
    stats.save({ entries, fingerprint: fp });
    const descriptor = await record(fp, blob, diffid);
    return { descriptor, diffid, buildId: vouched ?? fp, cached: false };
  }

  const fp = await idFromTree(stats, entries, scout, secondThread, (h) => (hashes = h));
  const contentKey = treeKey(FINGERPRINT_FORMAT, fp, spec);
  // Not looked up where nothing was recorded with these tar settings (a fresh runner's empty
  // cache): a read of the index for nothing, between the key and the registry cache's request.
  const byTree = builtHere ? await find(contentKey) : undefined;
  const hit = byTree ?? (legacy ? await find(buildIdKey(namespace, fp, spec)) : undefined);
  if (hit) {
    // Recorded under today's keys: a first-scheme hit moves over, and a vouched id that missed
    // answers straight away next time.
    if (!byTree || vouched !== undefined) await record(fp, { digest: hit.descriptor.digest, size: hit.descriptor.size }, hit.diffid);
    tier?.offer(contentKey, compression, hit);
    return { ...hit, buildId: vouched ?? fp, cached: true };
  }

  // The registry cache: the content key, then the vouched id (within its namespace, as here).
  let far = await tier?.find(contentKey, compression, mediaType);
  let farKey = contentKey;
  if (!far && tier && vouchedKey !== undefined) {
    far = await tier.find(vouchedKey, compression, mediaType);
    farKey = vouchedKey;
  }
  if (far && !tier?.check) {
    // Fetched into the store (a file output, `kocache build`): a plain local hit from now on. An
    // answer to the vouched id is kept under that id only: it says nothing of these files.
    const d = far.descriptor;
    if ((await cache.blobSize(d.digest)) === d.size) await record(farKey === contentKey ? fp : undefined, { digest: d.digest, size: d.size }, far.diffid);
    return { ...far, buildId: vouched ?? fp, cached: true, remote: true };
  }
  const { blob, diffid, doubted } = await pack();
  if (far) checkTierAnswer(far, blob, diffid, farKey);
  if (doubted) {
    // The layer is right (made from the bytes read), the fingerprint taken from the stat cache's
    // hashes may not be: not recorded under it, here or in the registry cache, and the tree's stat
    // files dropped, so the next build hashes every file again.
    traceAdd('stat.doubted', 1);
    opts.warn?.(`${source.src}: a file was not what the stat cache said (changed during the build, or its record damaged); the layer is built from the files as read, and their hashes are taken again next time`);
    await statFilesWritten();
    stats.forget();
  }
  const descriptor = await record(doubted ? undefined : fp, blob, diffid);
  const built = { descriptor, diffid };
  if (!doubted) tier?.offer(contentKey, compression, built);
  if (vouchedKey !== undefined) tier?.offer(vouchedKey, compression, built);
  return { ...built, buildId: vouched ?? fp, cached: false };
}

async function lookup(
  cache: CacheStore,
  idKey: string,
  namespace: string,
  compression: string,
  warn: ((m: string) => void) | undefined,
): Promise<{ descriptor: Descriptor; diffid: Digest } | undefined> {
  const byId = await cache.getRecord(idKey, isBuildIdRecord);
  if (!byId) return undefined;
  const diffid = byId.metadata.diffid;
  const byDiff =
    (await cache.getRecord(diffIdKey(BUILT_NAMESPACE, diffid, compression), isDiffIdRecord)) ??
    (await cache.getRecord(diffIdKey(namespace, diffid, compression), isDiffIdRecord));
  if (!byDiff) return undefined;
  const d = byDiff.metadata.descriptor;
  // A flipped byte is caught here (re-hashed unless its verified stamp shows it untouched since
  // the last good hash), dropped, and the layer rebuilt, instead of being pushed or handed on.
  const state = await cache.useBlob(d.digest, d.size);
  if (state === 'corrupt') {
    warn?.(`cached layer ${d.digest} was corrupt; dropped it and rebuilding`);
    return undefined;
  }
  if (state === 'missing') return undefined;
  return { descriptor: d, diffid: byDiff.metadata.diffid };
}

/**
 * walkSource after one turn of the event loop: the walk and the stat cache's check after it hold
 * this thread, so a connection opened beside them (a publish asks what its tag names as its layers
 * are built) is made and its request sent first, and the registry answers during the walk
 * (docs/performance.md).
 */
async function walkAfterATurn(root: string): Promise<SourceEntry[]> {
  await new Promise<void>((resolve) => setImmediate(resolve));
  return walkSource(root);
}

function fileBytes(entries: readonly SourceEntry[]): number {
  let n = 0;
  for (const e of entries) if (e.type === 'file') n += e.size;
  return n;
}

function goBuildId(entries: readonly SourceEntry[]): string | undefined {
  const root = entries[0];
  if (entries.length !== 1 || root?.type !== 'file') return undefined;
  const id = readGoBuildId(root.abs);
  // Size and execute bits ride along: a binary stripped or chmod-ed after linking keeps its ID.
  return id ? `go:${id}:${root.size}:${(root.mode & 0o111).toString(8)}` : undefined;
}

async function idFromTree(
  stats: StatCache,
  entries: readonly SourceEntry[],
  scout: Scout | undefined,
  secondThread: boolean,
  onHashes: (hashes: readonly (string | undefined)[]) => void,
): Promise<string> {
  const known = stats.knownFingerprint(entries);
  if (known !== undefined) {
    scout?.drop();
    return known;
  }
  const id = await fingerprintTree(entries, stats, scout, { secondThread, onHashes });
  stats.save({ entries, fingerprint: id });
  return id;
}
