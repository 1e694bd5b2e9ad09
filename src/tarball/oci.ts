import { KocacheError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import { isDigest, sha256Digest } from '../oci/digest.js';
import type { ImageConfig, ImageIndex, ImageManifest } from '../oci/manifest.js';
import { MediaType, isIndexMediaType, isManifestMediaType } from '../oci/mediatypes.js';
import type { StoredFile } from './ingest.js';
import { layoutBlobPath } from './layout.js';
import { distinctEntries, needsTag, selectLayoutEntry } from '../oci/refname.js';
import { isObject, parseJsonFile } from './json.js';
import type { ImagePlan, LayerPlan, ManifestPlan } from './plan.js';
import type { ArchiveContents } from './scan.js';

/** How a layer media type says its bytes are packed; 'other' is not a filesystem layer. */
export function layerPacking(mediaType: string): 'tar' | 'gzip' | 'zstd' | 'other' {
  if (mediaType === MediaType.OciLayer || mediaType === 'application/vnd.docker.image.rootfs.diff.tar' || /\.tar$/.test(mediaType) && mediaType.includes('.layer.')) return 'tar';
  if (/(\+|\.)gzip$/.test(mediaType) && (mediaType.includes('.layer.') || mediaType.includes('rootfs'))) return 'gzip';
  if (/\+zstd$/.test(mediaType)) return 'zstd';
  return 'other';
}

/**
 * An OCI archive or layout: index.json names the image. One entry is pushed as that manifest or
 * index; several entries are pushed as index.json itself (a multi-platform layout).
 */
export function planOciArchive(contents: ArchiveContents, tag?: string): ImagePlan {
  const name = contents.name;
  const indexFile = contents.need('index.json', 'the OCI layout');
  if (!indexFile.bytes) throw new KocacheError('archive', `${name}: index.json is not a JSON document of reasonable size`);
  const indexBytes = indexFile.bytes;
  const index = readIndex(indexBytes, `${name}: index.json`);
  if (index.manifests.length === 0) throw new KocacheError('archive', `${name}: index.json lists no image`);
  // A tag (oci:DIR:TAG) picks its entry; several entries that are not one multi-platform image
  // are several images, and which one is meant must be said (the error lists the tags).
  const picked = tag !== undefined || needsTag(index) ? selectLayoutEntry(index, tag, name) : undefined;
  const images = distinctEntries(index);
  if (picked || images.length === 1) {
    const only = picked ?? images[0]!;
    if (isIndexMediaType(only.mediaType)) {
      const bytes = blobBytes(contents, only, 'index.json');
      const nested = readIndex(bytes, `${name}: index ${only.digest}`);
      return { kind: 'index', index: { original: { bytes, descriptor: only, index: nested }, manifests: nested.manifests.map((d) => planManifest(contents, d, `index ${only.digest}`)) } };
    }
    return { kind: 'manifest', manifest: planManifest(contents, only, 'index.json') };
  }
  // index.json itself becomes the pushed index. Layouts often leave out its mediaType (it is
  // optional on disk); a registry index should say what it is, so one is added when missing.
  const bytes = index.mediaType ? indexBytes : Buffer.from(JSON.stringify({ ...index, mediaType: MediaType.OciIndex }));
  const normalized: ImageIndex = { ...index, mediaType: index.mediaType ?? MediaType.OciIndex };
  const descriptor: Descriptor = { mediaType: normalized.mediaType!, digest: sha256Digest(bytes), size: bytes.length };
  return { kind: 'index', index: { original: { bytes, descriptor, index: normalized }, manifests: index.manifests.map((d) => planManifest(contents, d, 'index.json')) } };
}

function readIndex(bytes: Buffer, what: string): ImageIndex {
  const doc = parseJsonFile<unknown>(bytes, what);
  if (!isObject(doc) || !Array.isArray(doc.manifests)) throw new KocacheError('archive', `${what} is not an image index (no manifests list)`);
  for (const d of doc.manifests) checkDescriptor(d, what);
  return doc as unknown as ImageIndex;
}

function checkDescriptor(d: unknown, what: string): asserts d is Descriptor {
  if (!isObject(d) || typeof d.mediaType !== 'string' || typeof d.digest !== 'string' || typeof d.size !== 'number') {
    throw new KocacheError('archive', `${what} holds a descriptor without mediaType, digest and size`);
  }
  if (!isDigest(d.digest)) throw new KocacheError('archive', `${what} names ${JSON.stringify(d.digest)}; kocache reads sha256 digests only`);
}

/** The stored blob a descriptor names, checked against the descriptor's digest and size. */
function blobFile(contents: ArchiveContents, d: Descriptor, wantedBy: string): StoredFile {
  const f = contents.need(layoutBlobPath(d.digest), wantedBy);
  if (f.digest !== d.digest || f.size !== d.size) {
    throw new KocacheError('archive', `${contents.name}: blob ${d.digest} is corrupt (its ${f.size} bytes hash to ${f.digest})`);
  }
  return f;
}

function blobBytes(contents: ArchiveContents, d: Descriptor, wantedBy: string): Buffer {
  const f = blobFile(contents, d, wantedBy);
  if (!f.bytes) throw new KocacheError('archive', `${contents.name}: ${d.digest} is too big to be a manifest`);
  return f.bytes;
}

function planManifest(contents: ArchiveContents, d: Descriptor, wantedBy: string): ManifestPlan {
  const name = contents.name;
  if (isIndexMediaType(d.mediaType)) throw new KocacheError('archive', `${name}: ${wantedBy} nests index ${d.digest} inside an index; kocache pushes one level of index`);
  if (!isManifestMediaType(d.mediaType)) throw new KocacheError('archive', `${name}: ${wantedBy} names ${d.digest} of unknown type ${d.mediaType}`);
  const bytes = blobBytes(contents, d, wantedBy);
  const what = `manifest ${d.digest}`;
  const doc = parseJsonFile<unknown>(bytes, `${name}: ${what}`);
  if (!isObject(doc) || !Array.isArray(doc.layers)) throw new KocacheError('archive', `${name}: ${what} is not an image manifest (no layers list)`);
  checkDescriptor(doc.config, `${name}: ${what}`);
  for (const l of doc.layers) checkDescriptor(l, `${name}: ${what}`);
  const manifest = doc as unknown as ImageManifest;

  const packings = manifest.layers.map((l) => layerPacking(l.mediaType));
  const opaqueCount = packings.filter((p) => p === 'other').length;
  if (opaqueCount > 0 && opaqueCount < packings.length) {
    throw new KocacheError('archive', `${name}: ${what} mixes filesystem layers with layers of other types`);
  }
  const isImage = opaqueCount === 0;

  const config = blobFile(contents, manifest.config, what);
  let configJson: ImageConfig | undefined;
  if (isImage) {
    if (!config.bytes) throw new KocacheError('archive', `${name}: config ${manifest.config.digest} is too big to be an image config`);
    configJson = parseJsonFile<ImageConfig>(config.bytes, `${name}: config ${manifest.config.digest}`);
  }
  const layers: LayerPlan[] = manifest.layers.map((l, i) => {
    const file = blobFile(contents, l, what);
    const packing = packings[i];
    if (packing === 'zstd' && !file.zstd) throw new KocacheError('archive', `${name}: layer ${l.digest} is declared ${l.mediaType} but is not zstd`);
    if (packing === 'gzip' && (!file.gzipped || file.zstd)) throw new KocacheError('archive', `${name}: layer ${l.digest} is declared ${l.mediaType} but is not gzip`);
    if (packing === 'tar' && file.gzipped) throw new KocacheError('archive', `${name}: layer ${l.digest} is declared ${l.mediaType} but is ${file.zstd ? 'zstd' : 'gzip'}-compressed`);
    return { file, what: `${name}: layer ${l.digest}`, declared: l, opaque: !isImage };
  });
  const plan: ManifestPlan = { what: `${name}: ${what}`, original: { bytes, descriptor: d, manifest }, config, configMediaType: manifest.config.mediaType, layers };
  if (configJson) plan.configJson = configJson;
  return plan;
}
