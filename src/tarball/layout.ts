import { closeSync } from 'node:fs';
import { KocacheError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import { type Digest, digestHex, isDigest } from '../oci/digest.js';
import { isIndexMediaType, isManifestMediaType } from '../oci/mediatypes.js';
import type { ArchiveEntry } from './entries.js';
import { type FolderFile, openInFolder, readAll, streamAll } from '../util/folder.js';
import { isObject, parseJsonFile } from './json.js';

/** Manifests and indexes are small; anything bigger in their place is not one. */
export const MAX_MANIFEST = 4 << 20;
/** oci-layout holds one short JSON object. */
const MAX_MARKER = 64 << 10;

/** Path of a blob inside an OCI layout (image-spec image-layout.md). */
export function layoutBlobPath(digest: string): string {
  return `blobs/sha256/${digest.slice('sha256:'.length)}`;
}

/**
 * index.json of an OCI layout directory, read under the same bounds as the rest of the layout.
 * Its digest is how an imported layout is recognised.
 */
export function readLayoutIndex(dir: string): Buffer {
  return readAll(need(dir, 'index.json', MAX_MANIFEST));
}

/**
 * The files of an OCI layout directory as archive entries, so a layout goes through the same
 * import as an archive. Only `oci-layout`, `index.json` and the blobs reachable from index.json are
 * listed (a shared layout may hold many other images); a referenced blob that is absent is simply
 * not listed, and the import then names it as missing. Every file is opened through openInFolder
 * and read up to what its descriptor (or, for index.json and oci-layout, the format) allows.
 */
export async function* readLayoutEntries(dir: string): AsyncGenerator<ArchiveEntry> {
  const marker = need(dir, 'oci-layout', MAX_MARKER);
  const index = readAll(need(dir, 'index.json', MAX_MANIFEST));
  yield { type: 'file', name: 'oci-layout', size: marker.size, body: streamAll(marker) };
  yield { type: 'file', name: 'index.json', size: index.length, body: once(index) };
  for (const [digest, d] of reachableBlobs(dir, index)) {
    const rel = layoutBlobPath(digest);
    const f = openBlob(dir, d, Number.MAX_SAFE_INTEGER);
    if (f) yield { type: 'file', name: rel, size: f.size, body: streamAll(f) };
  }
}

function need(dir: string, rel: string, max: number): FolderFile {
  const f = openInFolder(dir, rel, { what: rel, max, code: 'archive' });
  if (!f) throw new KocacheError('archive', `${dir} is a directory but not an OCI image layout (no ${rel})`);
  return f;
}

/**
 * A blob's file, refused when its size is not the descriptor's: a wrong size is a corrupt blob,
 * found without reading it (a huge file in place of a small blob is never read).
 */
function openBlob(dir: string, d: Descriptor, max: number): FolderFile | undefined {
  const f = openInFolder(dir, layoutBlobPath(d.digest), { what: `blob ${d.digest}`, max, code: 'archive' });
  if (f && typeof d.size === 'number' && f.size !== d.size) {
    closeSync(f.fd);
    throw new KocacheError('archive', `${dir}: blob ${d.digest} is corrupt (the file is ${f.size} bytes, its descriptor says ${d.size})`);
  }
  return f;
}

/** Every blob reachable from an index, walking nested indexes and manifests, in first-seen order. */
function reachableBlobs(dir: string, indexBytes: Buffer): Map<Digest, Descriptor> {
  const seen = new Map<Digest, Descriptor>();
  const visit = (bytes: Buffer, what: string) => {
    const doc = parseJsonFile<unknown>(bytes, `${dir}: ${what}`);
    if (!isObject(doc)) throw new KocacheError('archive', `${dir}: ${what} is not a JSON object`);
    const children: unknown[] = [
      ...(Array.isArray(doc.manifests) ? doc.manifests : []),
      ...(doc.config !== undefined ? [doc.config] : []),
      ...(Array.isArray(doc.layers) ? doc.layers : []),
    ];
    for (const child of children) {
      if (!isObject(child) || typeof child.digest !== 'string') continue;
      const d = child as unknown as Descriptor;
      if (!isDigest(d.digest)) throw new KocacheError('archive', `${dir}: ${what} names ${JSON.stringify(d.digest)}; kocache reads sha256 digests only`);
      if (seen.has(d.digest)) continue;
      seen.set(d.digest, d);
      if (isIndexMediaType(d.mediaType) || isManifestMediaType(d.mediaType)) {
        const f = openBlob(dir, d, MAX_MANIFEST);
        if (f) visit(readAll(f), `manifest ${digestHex(d.digest).slice(0, 12)}`);
      }
    }
  };
  visit(indexBytes, 'index.json');
  return seen;
}

async function* once(b: Buffer): AsyncGenerator<Buffer> {
  yield b;
}
