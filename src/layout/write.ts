import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { abandonTempFile, trackTempFile } from '../util/tmpfile.js';
import { rename, rm, stat, writeFile } from 'node:fs/promises';
import { makeDirs } from '../util/mkdirs.js';
import { once } from 'node:events';
import { join } from 'node:path';
import { KocacheError, errnoCode, errnoReason, fsError, notAFolder } from '../errors.js';
import { type BlobSource, type Pushable, readSource } from '../oci/pushable.js';
import type { Descriptor } from '../oci/descriptor.js';
import { type Digest, digestHex } from '../oci/digest.js';
import type { ImageIndex } from '../oci/manifest.js';
import { MediaType } from '../oci/mediatypes.js';
import { bytesBlob } from '../image/blobs.js';
import { openInFolder, readAll } from '../util/folder.js';
import { runBounded } from '../util/limit.js';
import { describeMismatch, matches, verify } from '../util/verify.js';

/** image-spec annotation naming an index.json entry; `skopeo copy oci:DIR:<name>` selects by it. */
export const REF_NAME = 'org.opencontainers.image.ref.name';
/** containerd's annotation for the full image name, used by `ctr image import`. */
export const CONTAINERD_NAME = 'io.containerd.image.name';

export interface LayoutWriteOptions {
  /** The tag (ref.name) and full reference (containerd name) to record in index.json. */
  refName?: string | undefined;
  imageName?: string | undefined;
  /** Blobs written at once. */
  jobs?: number;
}

export interface LayoutWriteResult {
  /** The descriptor recorded in index.json. */
  descriptor: Descriptor;
  /** Blobs written now; the rest were already in the layout, intact. */
  written: number;
  present: number;
}

/**
 * Writes an image into an OCI image layout (image-spec image-layout.md): `oci-layout`, every blob
 * under `blobs/sha256/<hex>`, and an `index.json` entry for the image. An existing layout is
 * added to: entries with the same ref name are replaced, others kept, intact blobs not rewritten.
 * Each blob goes to a temp file, is hashed as it is written and renamed into place only if it
 * matches its digest, so a reader never sees a partial or wrong blob.
 */
export async function writeLayout(dir: string, image: Pushable, o: LayoutWriteOptions = {}): Promise<LayoutWriteResult> {
  const blobDir = join(dir, 'blobs', 'sha256');
  // The first folder this call made (DIR itself for a new layout), so a failure can take it back.
  let made: string | undefined;
  try {
    made = makeDirs(blobDir);
  } catch (err) {
    throw new KocacheError('fs', `cannot create OCI layout folder ${dir}: ${notAFolder(dir, errnoCode(err)) ?? errnoReason(err)}`, { cause: err });
  }
  const added: string[] = [];
  let written = 0;
  try {
    const index = await readIndex(dir);

    const blobs = imageBlobs(image);
    await runBounded(blobs, o.jobs ?? 4, async (b) => {
      const wrote = await writeBlobFile(blobDir, b);
      if (wrote) written++;
      if (wrote?.newPath) added.push(wrote.newPath);
    });

    const descriptor: Descriptor = { mediaType: image.descriptor.mediaType, digest: image.descriptor.digest, size: image.descriptor.size };
    const annotations: Record<string, string> = {};
    if (o.imageName !== undefined) annotations[CONTAINERD_NAME] = o.imageName;
    if (o.refName !== undefined) annotations[REF_NAME] = o.refName;
    if (Object.keys(annotations).length > 0) descriptor.annotations = annotations;

    const kept = index.manifests.filter((m) =>
      o.refName !== undefined ? m.annotations?.[REF_NAME] !== o.refName : m.digest !== descriptor.digest || m.annotations?.[REF_NAME] !== undefined,
    );
    const next: ImageIndex = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [...kept, descriptor] };
    if (index.annotations) next.annotations = index.annotations;
    await atomicWrite(join(dir, 'oci-layout'), Buffer.from('{"imageLayoutVersion":"1.0.0"}'));
    // The commit point: once index.json names the image, every blob it needs is in place.
    await atomicWrite(join(dir, 'index.json'), Buffer.from(JSON.stringify(next)));
    return { descriptor, written, present: blobs.length - written };
  } catch (err) {
    // A failed write leaves the folder as it was: the blobs it added go (an existing layout keeps
    // only what its index.json names), and a layout this call created goes entirely.
    await Promise.all(added.map((p) => rm(p, { force: true })));
    if (made !== undefined) await rm(made, { recursive: true, force: true });
    throw err;
  }
}

/** Every blob an image consists of, each once: layers, configs, manifests, the index. */
export function imageBlobs(image: Pushable): BlobSource[] {
  const seen = new Map<Digest, BlobSource>();
  const add = (b: BlobSource) => {
    if (!seen.has(b.descriptor.digest)) seen.set(b.descriptor.digest, b);
  };
  const manifests = image.kind === 'index' ? image.manifests : [image];
  for (const m of manifests) {
    for (const l of m.layers) add(l);
    add(m.config);
    add(bytesBlob(m.descriptor.mediaType, m.bytes));
  }
  if (image.kind === 'index') add(bytesBlob(image.descriptor.mediaType, image.bytes));
  return [...seen.values()];
}

/** index.json can list many images, but not without bound. */
const MAX_INDEX = 64 << 20;

async function readIndex(dir: string): Promise<ImageIndex> {
  // Read like any input: only a regular file inside DIR, and not past its size (a link to
  // /dev/zero or a FIFO in its place is refused, not read forever).
  const f = openInFolder(dir, 'index.json', { what: 'index.json', max: MAX_INDEX, code: 'layout' });
  if (!f) return { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] };
  const text = readAll(f).toString('utf8');
  try {
    const parsed = JSON.parse(text) as ImageIndex;
    if (parsed.schemaVersion === 2 && Array.isArray(parsed.manifests)) return parsed;
  } catch {
    // reported below
  }
  throw new KocacheError('layout', `${join(dir, 'index.json')} is not an OCI image index: refusing to overwrite it`);
}

/**
 * Writes one blob unless an intact copy is there. Returns whether it wrote, and the path when the
 * file is new (a damaged copy replaced is not taken back on failure: its old bytes are gone).
 */
async function writeBlobFile(blobDir: string, blob: BlobSource): Promise<{ newPath?: string } | undefined> {
  const { digest, size } = blob.descriptor;
  const path = join(blobDir, digestHex(digest));
  const state = await blobState(path, digest, size);
  if (state === 'intact') return undefined;
  const tmp = join(blobDir, `.tmp-${digestHex(digest).slice(0, 16)}-${randomBytes(6).toString('hex')}`);
  const forget = trackTempFile(tmp);
  const out = createWriteStream(tmp);
  const failed = new Promise<never>((_, reject) => out.once('error', (e) => reject(fsError(e, tmp, 'write'))));
  failed.catch(() => undefined);
  try {
    // Renamed into place only once verify has seen all of it match.
    const bytes = verify(readSource(blob), blob.descriptor, (m) => new KocacheError('digest-mismatch', `blob ${digest} came out as ${describeMismatch(m)}: not written`));
    for await (const chunk of bytes) {
      if (!out.write(chunk)) await Promise.race([once(out, 'drain'), failed]);
    }
    out.end();
    await Promise.race([once(out, 'finish'), failed]);
    await rename(tmp, path);
    return state === 'absent' ? { newPath: path } : {};
  } catch (err) {
    await abandonTempFile(out, tmp);
    throw err;
  } finally {
    forget();
  }
}

async function blobState(path: string, digest: Digest, size: number): Promise<'intact' | 'absent' | 'damaged'> {
  try {
    if ((await stat(path)).size !== size) return 'damaged';
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return 'absent';
    throw fsError(err, path, 'read');
  }
  return (await matches(createReadStream(path, { highWaterMark: 1 << 20 }), { digest, size })) ? 'intact' : 'damaged';
}

async function atomicWrite(path: string, bytes: Buffer): Promise<void> {
  const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  const forget = trackTempFile(tmp);
  try {
    await writeFile(tmp, bytes);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw fsError(err, path, 'write');
  } finally {
    forget();
  }
}
