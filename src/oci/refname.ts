import { KocacheError } from '../errors.js';
import type { Descriptor } from './descriptor.js';
import type { ImageIndex } from './manifest.js';

/** image-spec's annotation naming an index.json entry: the TAG of skopeo's `oci:DIR:TAG`. */
export const REF_NAME = 'org.opencontainers.image.ref.name';

/** The names (ref.name annotations) of a layout's entries, in index order, for messages. */
export function layoutTags(index: ImageIndex): string[] {
  return index.manifests.map((m) => m.annotations?.[REF_NAME]).filter((t): t is string => t !== undefined);
}

/**
 * The index's entries, one per digest and platform: a layout may name one image under several
 * tags (entries that differ only in their names). Entries for other platforms stay.
 */
export function distinctEntries(index: ImageIndex): Descriptor[] {
  const seen = new Set<string>();
  return index.manifests.filter((m) => {
    const key = `${m.digest} ${JSON.stringify(m.platform ?? null)}`;
    return !seen.has(key) && seen.add(key);
  });
}

/**
 * The index.json entry an `oci:DIR[:TAG]` names: the entry with that ref name, or, with no tag,
 * the only entry. Anything else is an error that lists what there is to choose from.
 */
export function selectLayoutEntry(index: ImageIndex, tag: string | undefined, where: string): Descriptor {
  const tags = layoutTags(index);
  const listed = () => {
    const untagged = index.manifests.length - tags.length;
    const names = tags.length ? `tags: ${tags.join(', ')}` : 'no tags';
    return untagged ? `${names}; ${untagged} untagged` : names;
  };
  if (index.manifests.length === 0) throw new KocacheError('layout', `${where} holds no image`);
  if (tag !== undefined) {
    const hits = index.manifests.filter((m) => m.annotations?.[REF_NAME] === tag);
    if (hits.length === 1) return hits[0]!;
    if (hits.length === 0) throw new KocacheError('layout', `${where} has no image tagged ${JSON.stringify(tag)} (${listed()})`);
    throw new KocacheError('layout', `${where} has ${hits.length} images tagged ${JSON.stringify(tag)}`);
  }
  const images = distinctEntries(index);
  if (images.length === 1) return images[0]!;
  throw new KocacheError('layout', `${where} holds ${images.length} images: name one as ${where}:TAG (${listed()})`, { exitCode: 2 });
}

/**
 * Whether a layout's index.json needs a tag to say which image is meant: several entries that are
 * not one multi-platform image (every entry naming its platform, as a multi-platform layout does)
 * nor one image under several tags.
 */
export function needsTag(index: ImageIndex): boolean {
  const images = distinctEntries(index);
  return images.length > 1 && !images.every((m) => m.platform);
}

/** Parses and checks a layout's index.json (read by tarball/layout.ts, within its bounds; an OCI archive's too). */
export function parseLayoutIndex(bytes: Buffer, where: string, code: 'layout' | 'archive' = 'layout'): ImageIndex {
  let parsed: ImageIndex;
  try {
    parsed = JSON.parse(bytes.toString('utf8')) as ImageIndex;
  } catch {
    throw new KocacheError(code, `${where}: index.json is not JSON`);
  }
  if (parsed?.schemaVersion !== 2 || !Array.isArray(parsed.manifests)) throw new KocacheError(code, `${where}: index.json is not an OCI image index`);
  return parsed;
}
