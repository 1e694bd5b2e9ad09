import { resolve } from 'node:path';
import { archiveKey } from '../cache/keys.js';
import type { CacheStore } from '../cache/store.js';
import { checkCompression, compressionSpec, type GzipOptions } from '../compress/options.js';
import { KocacheError } from '../errors.js';
import { type Descriptor, isDescriptor } from '../oci/descriptor.js';
import { type Digest, isDigest, sha256Digest } from '../oci/digest.js';
import { hashFileSync } from '../layer/filehash.js';
import { StatCache } from '../layer/statcache.js';
import { walkSource } from '../layer/walk.js';
import { type ArchiveFormat, detectArchive, unchangedSince } from './detect.js';
import { planDockerArchive } from './docker.js';
import { type CompressProgress, LayerCompressor, type LayerTar } from './compressor.js';
import { finishImage } from './image.js';
import { planOciArchive } from './oci.js';
import type { ArchiveImage, ArchiveIndex, ArchiveLayer, ArchiveManifest, ImagePlan } from './plan.js';
import { readLayoutEntries, readLayoutIndex } from './layout.js';
import { type ArchiveContents, collectEntries, scanTarArchive } from './scan.js';
import { ImportWrites } from './written.js';

export interface LoadArchiveOptions {
  cache: CacheStore;
  /** How layers that come plain are compressed (gzip or zstd); those that come compressed keep their bytes. */
  gzip: GzipOptions;
  /** Layers compressed at once. */
  jobs: number;
  warn?: (message: string) => void;
  /** The index.json entry of an OCI layout or archive to take, by its ref name (oci:DIR:TAG). */
  tag?: string | undefined;
  /** Archive file bytes read so far, and the file's size, for a progress line. */
  onRead?: (read: number, total: number) => void;
  /** A plain layer tar being compressed: bytes taken in so far, of its size (a progress line). */
  onCompress?: ((e: CompressProgress) => void) | undefined;
  /**
   * Asked after the local cache misses, before the archive is read: the image this archive was
   * imported as elsewhere (the registry cache, src/regcache/), its blobs where the caller needs them.
   */
  remote?: ((key: string) => Promise<ArchiveImage | undefined>) | undefined;
}

export interface LoadedArchive {
  path: string;
  format: ArchiveFormat;
  /** sha256 of the archive file (of index.json for a layout directory). */
  archiveDigest: Digest;
  image: ArchiveImage;
  /** True when the archive was recognised and nothing in it was read beyond hashing. */
  cached: boolean;
  /** True when the registry cache recognised it (`cached` too); its blobs need not be in the store. */
  remote?: boolean;
  /** The cache key: sha256 of the archive and the compression setting. */
  key: string;
}

/** What an `archive/...` record keeps. */
export interface ArchiveRecord {
  format: ArchiveFormat;
  image: ArchiveImage;
}

/**
 * Imports an image archive into the cache, or recognises one imported before. A new archive is
 * read in one pass (see scanTarArchive); one seen before (same sha256) costs a hash of the file (or
 * not even that: archiveFileDigest) and a check that its blobs are still in the store.
 */
export async function loadArchive(path: string, opts: LoadArchiveOptions): Promise<LoadedArchive> {
  checkCompression(opts.gzip);
  const info = await detectArchive(path);
  const archiveDigest = info.format === 'layout' ? sha256Digest(readLayoutIndex(path)) : archiveFileDigest(path, opts.cache.dir);
  const id = info.format === 'layout' ? `layout-${archiveDigest.slice('sha256:'.length)}` : archiveDigest.slice('sha256:'.length);
  const key = archiveKey(opts.tag === undefined ? id : `${id}-tag-${opts.tag}`, compressionSpec(opts.gzip));

  const seen = await opts.cache.getRecord(key, isArchiveRecord);
  if (seen) {
    const state = await allPresent(opts.cache, seen.metadata.image);
    if (state === 'ok') return { path, format: info.format, archiveDigest, image: seen.metadata.image, cached: true, key };
    // Damaged blobs were dropped by the check; the archive at hand has every byte to store again.
    opts.warn?.(state === 'corrupt' ? `some cached blobs of ${path} were corrupt; dropped them and importing it again` : `some cached blobs of ${path} are gone; importing it again`);
  }
  const far = await opts.remote?.(key);
  if (far) return { path, format: info.format, archiveDigest, image: far, cached: true, remote: true, key };

  const writes = new ImportWrites(opts.cache);
  const cache = writes.track();
  // Plain layer tars start compressing while the rest of the archive is still being read.
  const compressor = new LayerCompressor({ ...opts, cache });
  const onPlainTar = (tar: LayerTar) => void compressor.start(tar);
  let image: ArchiveImage;
  try {
    const contents = info.format === 'layout'
      ? await collectEntries(cache, readLayoutEntries(path), path, onPlainTar)
      : await scanTarArchive(cache, path, { gzipped: info.format === 'gzip', onRead: opts.onRead && countingProgress(opts.onRead, info.stats.size), onPlainTar });
    const changed = info.format === 'layout'
      ? contents.files.get('index.json')?.digest !== archiveDigest
      : !(await unchangedSince(path, info.stats));
    if (changed) throw new KocacheError('archive', `${path} changed while it was being read; try again`);
    image = await finishImage(planArchive(contents, opts.tag), { ...opts, cache, compressor });
    const top = topDescriptor(image);
    await opts.cache.putRecord<ArchiveRecord>(key, { digest: top.digest, size: top.size }, { format: info.format, image });
  } catch (err) {
    // A refused import leaves nothing behind: not the entries the pass stored, not the layers
    // compressed ahead of the check.
    await compressor.close();
    await writes.removeExcept(new Set());
    throw err;
  }
  // Entries no manifest named (and layers compressed ahead for them) go now, not at the next gc.
  await compressor.close();
  await writes.removeExcept(new Set([...archiveBlobs(image).map((d) => d.digest), ...layerDiffIds(image)]));
  return { path, format: info.format, archiveDigest, image, cached: false, key };
}

/** An OCI layout (tarred or not) has oci-layout and index.json; a docker archive has manifest.json. */
function planArchive(contents: ArchiveContents, tag: string | undefined): ImagePlan {
  if (contents.get('oci-layout') && contents.get('index.json')) return planOciArchive(contents, tag);
  if (tag !== undefined) throw new KocacheError('archive', `${contents.name} is a docker-archive, which has no tags to pick from (:${tag})`);
  if (contents.get('manifest.json')) return planDockerArchive(contents);
  throw new KocacheError('archive', `${contents.name} is a tar archive but not an image archive (no manifest.json, no oci-layout + index.json)`);
}

export function topDescriptor(image: ArchiveImage): Descriptor {
  return image.kind === 'manifest' ? image.manifest.descriptor : image.index.descriptor;
}

/** Every blob the image names, each once, as stored blobs (manifests, configs, layers). */
export function archiveBlobs(image: ArchiveImage): Descriptor[] {
  const manifests = image.kind === 'manifest' ? [image.manifest] : image.index.manifests;
  const out: Descriptor[] = image.kind === 'index' ? [image.index.descriptor] : [];
  for (const m of manifests) out.push(m.descriptor, m.config, ...m.layers.map((l) => l.descriptor));
  const seen = new Set<string>();
  return out.filter((d) => !seen.has(d.digest) && Boolean(seen.add(d.digest)));
}

/** The uncompressed tars of an image's layers: kept beside it (tar/ records name them). */
function layerDiffIds(image: ArchiveImage): Digest[] {
  const manifests = image.kind === 'manifest' ? [image.manifest] : image.index.manifests;
  return manifests.flatMap((m) => m.layers.flatMap((l) => (l.diffid ? [l.diffid] : [])));
}

/**
 * Whether every blob of an imported image is still there and intact (CacheStore.useBlob: re-hashed
 * unless its verified stamp vouches for it, dropped when damaged, and touched, so a concurrent gc
 * spares what this command uses). All at once: one after the other, a 50-layer image's checks were
 * a hundred file-system round trips.
 */
async function allPresent(cache: CacheStore, image: ArchiveImage): Promise<'ok' | 'missing' | 'corrupt'> {
  const each = await Promise.all(archiveBlobs(image).map((d) => cache.useBlob(d.digest, d.size)));
  return each.includes('corrupt') ? 'corrupt' : each.includes('missing') ? 'missing' : 'ok';
}

/** An `archive/...` record as read back from the index: a damaged one is a miss (re-import). */
function isArchiveRecord(m: unknown): m is ArchiveRecord {
  if (typeof m !== 'object' || m === null) return false;
  const image = (m as { image?: unknown }).image as { kind?: unknown; manifest?: unknown; index?: unknown } | undefined;
  if (typeof image !== 'object' || image === null) return false;
  const isLayer = (l: unknown) => typeof l === 'object' && l !== null && isDescriptor((l as ArchiveLayer).descriptor)
    && ((l as ArchiveLayer).diffid === undefined || (typeof (l as ArchiveLayer).diffid === 'string' && isDigest((l as ArchiveLayer).diffid!)));
  const isManifest = (x: unknown) => typeof x === 'object' && x !== null && isDescriptor((x as ArchiveManifest).descriptor)
    && isDescriptor((x as ArchiveManifest).config) && Array.isArray((x as ArchiveManifest).layers) && (x as ArchiveManifest).layers.every(isLayer);
  if (image.kind === 'manifest') return isManifest(image.manifest);
  const index = image.index as ArchiveIndex | undefined;
  return image.kind === 'index' && typeof index === 'object' && index !== null && isDescriptor(index.descriptor)
    && Array.isArray(index.manifests) && index.manifests.every(isManifest);
}

/**
 * sha256 of an archive file: how an archive seen before is recognised. The stat cache that spares
 * builds re-hashing unchanged sources (src/layer/statcache.ts: size, mtime, ctime, inode, device,
 * with racy timestamps re-hashed) remembers it, so pushing the same file again does not read it
 * again: hashing it was an eighth of a second push of the bench's archive (docs/performance.md).
 */
function archiveFileDigest(path: string, cacheDir: string): Digest {
  const takenAtMs = Date.now();
  const abs = resolve(path);
  const [entry] = walkSource(abs); // a file's own entry: the stat the cache compares
  const stats = new StatCache(cacheDir, `archive:${abs}`, takenAtMs);
  const hex = entry ? stats.hash(entry) : hashFileSync(abs);
  stats.save();
  return `sha256:${hex}`;
}

function countingProgress(report: (read: number, total: number) => void, total: number): (n: number) => void {
  let read = 0;
  return (n) => report((read += n), total);
}
