import { createReadStream, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { KocacheError, errnoCode, fsError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import { digestHex, isDigest } from '../oci/digest.js';
import { isIndexMediaType, isManifestMediaType } from '../oci/mediatypes.js';
import type { ArchiveEntry } from '../tarball/entries.js';
import { isObject, parseJsonFile } from '../tarball/json.js';

/** Manifests and indexes are small; anything bigger in their place is not one. */
const MAX_MANIFEST = 4 << 20;

/** Path of a blob inside an OCI layout (image-spec image-layout.md). */
export function layoutBlobPath(digest: string): string {
  return `blobs/sha256/${digest.slice('sha256:'.length)}`;
}

/**
 * The files of an OCI layout directory as archive entries, so a layout goes through the same
 * import as an archive. Only `oci-layout`, `index.json` and the blobs reachable from index.json are
 * listed (a shared layout may hold many other images); a referenced blob that is absent is simply
 * not listed, and the import then names it as missing.
 */
export async function* readLayoutEntries(dir: string): AsyncGenerator<ArchiveEntry> {
  const marker = join(dir, 'oci-layout');
  const indexPath = join(dir, 'index.json');
  for (const p of [marker, indexPath]) {
    try {
      statSync(p);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') throw new KocacheError('archive', `${dir} is a directory but not an OCI image layout (no ${p.slice(dir.length + 1)})`);
      throw fsError(err, p, 'read');
    }
  }
  yield fileEntry(dir, 'oci-layout');
  yield fileEntry(dir, 'index.json');
  for (const digest of reachableBlobs(dir, readSmall(indexPath, 'index.json', dir))) {
    const rel = layoutBlobPath(digest);
    let exists = true;
    try {
      statSync(join(dir, rel));
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw fsError(err, join(dir, rel), 'read');
      exists = false;
    }
    if (exists) yield fileEntry(dir, rel);
  }
}

/** Every blob digest reachable from an index, walking nested indexes and manifests, in first-seen order. */
function reachableBlobs(dir: string, indexBytes: Buffer): string[] {
  const seen = new Set<string>();
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
      seen.add(d.digest);
      if (isIndexMediaType(d.mediaType) || isManifestMediaType(d.mediaType)) {
        const path = join(dir, layoutBlobPath(d.digest));
        let child: Buffer;
        try {
          child = readSmall(path, `blob ${digestHex(d.digest).slice(0, 12)}`, dir);
        } catch (err) {
          if (errnoCode((err as { cause?: unknown }).cause) === 'ENOENT') continue;
          throw err;
        }
        visit(child, `manifest ${d.digest}`);
      }
    }
  };
  visit(indexBytes, 'index.json');
  return [...seen];
}

function readSmall(path: string, what: string, dir: string): Buffer {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (err) {
    throw fsError(err, path, 'read');
  }
  if (size > MAX_MANIFEST) throw new KocacheError('archive', `${dir}: ${what} is ${size} bytes, too big for a manifest`);
  try {
    return readFileSync(path);
  } catch (err) {
    throw fsError(err, path, 'read');
  }
}

function fileEntry(dir: string, rel: string): ArchiveEntry {
  const path = join(dir, rel);
  const size = statSync(path).size;
  async function* body(): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) yield chunk as Buffer;
    } catch (err) {
      throw fsError(err, path, 'read');
    }
  }
  return { type: 'file', name: rel, size, body: body() };
}
