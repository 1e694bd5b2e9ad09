import { createHash } from 'node:crypto';
import type { Descriptor } from '../oci/descriptor.js';
import { type Digest, isDigest, sha256Digest } from '../oci/digest.js';
import type { ImageManifest } from '../oci/manifest.js';
import { MediaType } from '../oci/mediatypes.js';
import type { ArchiveImage, ArchiveManifest } from '../tarball/plan.js';

/**
 * The format of a record in a registry cache (docs/registry-cache.md): one OCI image manifest per
 * key, under a tag derived from the key's hash, so writers of different keys never touch the same
 * object and a lookup is one small GET whatever the size of the cache.
 *
 *   tag          kc1-<sha256 of the key text>
 *   artifactType application/vnd.kocache.record.v1+json (the config's media type too)
 *   config       a constant 32-byte blob, the same in every record
 *   layers       the blobs the record answers with: pinned, so the registry's GC keeps them, and
 *                mountable into another repository of the same registry
 *   annotations  the full key (checked against the key asked for: a tag swapped onto another
 *                record is a miss), what the layer is (diffid) or what the image is, and the UTC
 *                day it was written (gc --max-age reads it; same key, layer and day: same bytes)
 */
export const RECORD_MEDIA_TYPE = 'application/vnd.kocache.record.v1+json';
export const RECORD_CONFIG_BYTES = Buffer.from('{"kocache":"record","version":1}');
export const RECORD_CONFIG: Descriptor = { mediaType: RECORD_MEDIA_TYPE, digest: sha256Digest(RECORD_CONFIG_BYTES), size: RECORD_CONFIG_BYTES.length };
export const TAG_PREFIX = 'kc1-';

export const Annotation = {
  key: 'dev.kocache.record.key',
  kind: 'dev.kocache.record.kind',
  diffid: 'dev.kocache.record.diffid',
  image: 'dev.kocache.record.image',
  manifests: 'dev.kocache.record.manifests',
  created: 'org.opencontainers.image.created',
} as const;

/** Bounds past which a record is refused unread or unused: records are a few KB. */
export const MAX_LAYER_RECORD_BYTES = 64 << 10;
export const MAX_ARCHIVE_RECORD_BYTES = 4 << 20;
/** 1 TiB: a layer (or any blob) claiming more is a broken or hostile record. */
export const MAX_BLOB_SIZE = 2 ** 40;
const MAX_KEY_CHARS = 8192;

export type RecordKind = 'layer' | 'archive';

/** The text a record is filed under: format version, kind, and everything that decides the bytes. */
export function recordKey(kind: RecordKind, parts: readonly string[]): string {
  return ['kocache-record/v1', kind, ...parts].join('\n');
}

export function recordTag(key: string): string {
  return `${TAG_PREFIX}${createHash('sha256').update(key).digest('hex')}`;
}

export function isRecordTag(tag: string): boolean {
  return /^kc1-[a-f0-9]{64}$/.test(tag);
}

/** The UTC day of `ms`, as the record's created time: records written the same day are identical. */
export function recordDay(ms = Date.now()): string {
  return `${new Date(ms).toISOString().slice(0, 10)}T00:00:00Z`;
}

export interface LayerRecord {
  key: string;
  descriptor: Descriptor;
  diffid: Digest;
  created: string;
}

export interface ArchiveRecord {
  key: string;
  image: ArchiveImage;
  /** The exact bytes of every manifest and index the image names, by digest. */
  manifests: Map<Digest, Buffer>;
  created: string;
}

export function layerRecordManifest(r: LayerRecord): Buffer {
  const layer: Descriptor = { mediaType: r.descriptor.mediaType, digest: r.descriptor.digest, size: r.descriptor.size };
  return manifestBytes([layer], {
    [Annotation.key]: r.key,
    [Annotation.kind]: 'layer',
    [Annotation.diffid]: r.diffid,
    [Annotation.created]: r.created,
  });
}

export function archiveRecordManifest(r: ArchiveRecord): Buffer {
  const manifests: Record<string, string> = {};
  for (const [digest, bytes] of [...r.manifests].sort(([a], [b]) => (a < b ? -1 : 1))) manifests[digest] = bytes.toString('base64');
  return manifestBytes(archivePins(r.image), {
    [Annotation.key]: r.key,
    [Annotation.kind]: 'archive',
    [Annotation.image]: JSON.stringify(r.image),
    [Annotation.manifests]: JSON.stringify(manifests),
    [Annotation.created]: r.created,
  });
}

/** The blobs an archive record pins: every layer and config, once each, in image order. */
export function archivePins(image: ArchiveImage): Descriptor[] {
  const out = new Map<Digest, Descriptor>();
  for (const m of archiveManifests(image)) {
    for (const d of [m.config, ...m.layers.map((l) => l.descriptor)]) {
      if (!out.has(d.digest)) out.set(d.digest, { mediaType: d.mediaType, digest: d.digest, size: d.size });
    }
  }
  return [...out.values()];
}

function archiveManifests(image: ArchiveImage): ArchiveManifest[] {
  return image.kind === 'manifest' ? [image.manifest] : image.index.manifests;
}

function manifestBytes(layers: Descriptor[], annotations: Record<string, string>): Buffer {
  const m = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    artifactType: RECORD_MEDIA_TYPE,
    config: RECORD_CONFIG,
    layers,
    annotations,
  };
  return Buffer.from(JSON.stringify(m));
}

/** Why a record was not used: said in the one warning a broken record gets. */
export class BrokenRecord extends Error {}

/**
 * A layer the registry cache answered before its blob was checked, whose check then failed (the
 * record was broken, or its repository failed): the push that waited for the blob fails with this,
 * and the image is made again without the record.
 */
export class Withdrawn extends Error {}

interface RecordManifest extends ImageManifest {
  artifactType?: unknown;
}

/** The manifest of a record, checked for the shape every record has, or BrokenRecord. */
function parseShape(bytes: Buffer, key: string, kind: RecordKind): { m: RecordManifest; a: Record<string, string> } {
  let m: RecordManifest;
  try {
    m = JSON.parse(bytes.toString('utf8')) as RecordManifest;
  } catch {
    throw new BrokenRecord('not JSON');
  }
  if (!m || typeof m !== 'object' || Array.isArray(m)) throw new BrokenRecord('not a manifest');
  if (m.schemaVersion !== 2 || m.mediaType !== MediaType.OciManifest) throw new BrokenRecord('not an OCI image manifest');
  if (m.artifactType !== RECORD_MEDIA_TYPE) throw new BrokenRecord(`artifactType is ${JSON.stringify(m.artifactType ?? null)}, not ${RECORD_MEDIA_TYPE}`);
  const c = m.config as Partial<Descriptor> | undefined;
  if (!c || c.mediaType !== RECORD_MEDIA_TYPE || c.digest !== RECORD_CONFIG.digest || c.size !== RECORD_CONFIG.size) {
    throw new BrokenRecord('its config is not a kocache record config');
  }
  const a = m.annotations as Record<string, unknown> | undefined;
  if (!a || typeof a !== 'object') throw new BrokenRecord('no annotations');
  for (const v of Object.values(a)) if (typeof v !== 'string') throw new BrokenRecord('an annotation is not a string');
  const anns = a as Record<string, string>;
  const got = anns[Annotation.key];
  if (typeof got !== 'string' || got.length > MAX_KEY_CHARS) throw new BrokenRecord('no key annotation');
  // A tag moved onto another record (by mistake or on purpose) must not answer for this key.
  if (got !== key) throw new BrokenRecord('its key annotation is not the key asked for (a record under the wrong tag)');
  if (anns[Annotation.kind] !== kind) throw new BrokenRecord(`it is not a ${kind} record`);
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(anns[Annotation.created] ?? '')) throw new BrokenRecord('no created time');
  if (!Array.isArray(m.layers) || m.layers.length === 0) throw new BrokenRecord('no layers');
  for (const l of m.layers) checkDescriptor(l, 'a pinned blob');
  return { m, a: anns };
}

function checkDescriptor(d: unknown, what: string): asserts d is Descriptor {
  const x = d as Partial<Descriptor> | undefined;
  if (!x || typeof x !== 'object') throw new BrokenRecord(`${what} is not a descriptor`);
  if (typeof x.digest !== 'string' || !isDigest(x.digest)) throw new BrokenRecord(`${what} has a bad digest`);
  if (typeof x.mediaType !== 'string' || x.mediaType === '') throw new BrokenRecord(`${what} has no media type`);
  if (!Number.isSafeInteger(x.size) || (x.size as number) <= 0 || (x.size as number) > MAX_BLOB_SIZE) {
    throw new BrokenRecord(`${what} has an absurd size (${String(x.size)})`);
  }
}

/**
 * A layer record as read from a registry, verified against the key asked for and the media type
 * the key's compression gives: exactly one layer of that type and a sane size, a diffid.
 */
export function parseLayerRecord(bytes: Buffer, key: string, mediaType: string): LayerRecord {
  if (bytes.length > MAX_LAYER_RECORD_BYTES) throw new BrokenRecord(`${bytes.length} bytes, more than a layer record can be`);
  const { m, a } = parseShape(bytes, key, 'layer');
  if (m.layers.length !== 1) throw new BrokenRecord(`${m.layers.length} layers, not 1`);
  const layer = m.layers[0]!;
  if (layer.mediaType !== mediaType) throw new BrokenRecord(`its layer is ${layer.mediaType}, not ${mediaType}`);
  const diffid = a[Annotation.diffid] ?? '';
  if (!isDigest(diffid)) throw new BrokenRecord('no diffid');
  return { key, descriptor: { mediaType: layer.mediaType, digest: layer.digest, size: layer.size }, diffid, created: a[Annotation.created]! };
}

/**
 * An archive record, verified: the key, every manifest's bytes hashing to its digest, every blob
 * the image names (configs and layers) pinned by the record.
 */
export function parseArchiveRecord(bytes: Buffer, key: string): ArchiveRecord {
  if (bytes.length > MAX_ARCHIVE_RECORD_BYTES) throw new BrokenRecord(`${bytes.length} bytes, more than an archive record can be`);
  const { m, a } = parseShape(bytes, key, 'archive');
  let image: ArchiveImage;
  let encoded: Record<string, unknown>;
  try {
    image = JSON.parse(a[Annotation.image] ?? '') as ArchiveImage;
    encoded = JSON.parse(a[Annotation.manifests] ?? '') as Record<string, unknown>;
  } catch {
    throw new BrokenRecord('its image annotations are not JSON');
  }
  const manifests = new Map<Digest, Buffer>();
  for (const [digest, b64] of Object.entries(encoded ?? {})) {
    if (!isDigest(digest) || typeof b64 !== 'string') throw new BrokenRecord('a manifest entry is malformed');
    const raw = Buffer.from(b64, 'base64');
    if (sha256Digest(raw) !== digest) throw new BrokenRecord(`the bytes given for manifest ${digest} hash to something else`);
    manifests.set(digest, raw);
  }
  if (!image || (image.kind !== 'manifest' && image.kind !== 'index')) throw new BrokenRecord('no image');
  const tops: Descriptor[] = image.kind === 'index' ? [image.index.descriptor] : [];
  const list = image.kind === 'manifest' ? [image.manifest] : Array.isArray(image.index?.manifests) ? image.index.manifests : [];
  if (list.length === 0) throw new BrokenRecord('an image with no manifest');
  const pinned = new Map(m.layers.map((l) => [l.digest, l]));
  for (const im of list) {
    checkDescriptor(im?.descriptor, 'a manifest');
    checkDescriptor(im.config, 'a config');
    if (!Array.isArray(im.layers)) throw new BrokenRecord('a manifest with no layers list');
    tops.push(im.descriptor);
    for (const d of [im.config, ...im.layers.map((l) => l?.descriptor)]) {
      checkDescriptor(d, 'a blob of the image');
      const pin = pinned.get(d.digest);
      if (!pin || pin.size !== d.size) throw new BrokenRecord(`blob ${d.digest} of the image is not pinned by the record`);
    }
  }
  for (const d of tops) {
    checkDescriptor(d, 'a manifest');
    const raw = manifests.get(d.digest);
    if (!raw || raw.length !== d.size) throw new BrokenRecord(`manifest ${d.digest} is missing from the record`);
  }
  return { key, image, manifests, created: a[Annotation.created]! };
}

/** The created day of any record manifest (gc), or undefined when it is not a kocache record. */
export function recordCreated(bytes: Buffer): { created: number; kind: string } | undefined {
  try {
    const m = JSON.parse(bytes.toString('utf8')) as RecordManifest;
    if (m.artifactType !== RECORD_MEDIA_TYPE && (m.config as Partial<Descriptor> | undefined)?.mediaType !== RECORD_MEDIA_TYPE) return undefined;
    const a = (m.annotations ?? {}) as Record<string, unknown>;
    const t = Date.parse(String(a[Annotation.created] ?? ''));
    return { created: Number.isNaN(t) ? 0 : t, kind: String(a[Annotation.kind] ?? '') };
  } catch {
    return undefined;
  }
}
