import { type Digest, isDigest } from '../oci/digest.js';

/**
 * Records that describe something elsewhere rather than a blob here (`seen/`: which remote
 * repositories hold a digest, for mounts). Their digest is usually not in the content store, so
 * they are neither references that keep content alive nor dead when it is absent; only
 * --max-age ends them.
 */
export function isMetadataKey(key: string): boolean {
  return key.startsWith('seen/');
}

/**
 * The blobs a record keeps alive: its own, and every descriptor its metadata names (an imported
 * archive's config and layers). None for a metadata record. gc keeps these, and du counts them
 * as in use, by this one rule.
 */
export function pinnedDigests(key: string, digest: Digest | undefined, metadata: unknown): Set<Digest> {
  if (digest === undefined || isMetadataKey(key)) return new Set();
  return namedDigests(metadata, new Set([digest]));
}

/** The `digest` of every descriptor within a record's metadata, added to `out`. */
function namedDigests(m: unknown, out: Set<Digest>, depth = 0): Set<Digest> {
  if (depth > 12 || typeof m !== 'object' || m === null) return out;
  for (const [k, v] of Array.isArray(m) ? m.entries() : Object.entries(m)) {
    if (k === 'digest' && typeof v === 'string' && isDigest(v)) out.add(v);
    else namedDigests(v, out, depth + 1);
  }
  return out;
}
