import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, rmSync } from 'node:fs';
import { makeDirs } from '../util/mkdirs.js';
import { abandonTempFile, trackTempFile } from '../util/tmpfile.js';
import { rename } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import tar from 'tar-stream';
import { KocacheError, fsError } from '../errors.js';
import { type BlobSource, type PushableManifest, readSource } from '../oci/pushable.js';
import { digestHex } from '../oci/digest.js';
import { describeMismatch, verify } from '../util/verify.js';

/** One entry of a docker-archive's manifest.json, as `docker save` writes it. */
export interface DockerArchiveEntry {
  Config: string;
  RepoTags: string[];
  Layers: string[];
}

export interface DockerArchiveOptions {
  /** `registry/repo:tag` names `docker load` gives the image. */
  repoTags?: string[];
  /** mtime of every tar entry, seconds; fixed so the archive is the same bytes each time. */
  mtime?: number;
}

export interface DockerArchiveResult {
  /** The image ID `docker load` reports: the config digest. */
  imageId: string;
  bytes: number;
}

/** Where a blob lives inside the archive; the same paths Docker 25+ `docker save` uses. */
export function archivePath(blob: BlobSource): string {
  return `blobs/sha256/${digestHex(blob.descriptor.digest)}`;
}

/**
 * Writes one image as a `docker load`-able tar: every blob (config and compressed layers; `docker
 * load` and skopeo both decompress layers themselves), then manifest.json naming them. Written to
 * a temp file and renamed, so FILE is either the old one or a whole new archive.
 */
export async function writeDockerArchive(file: string, image: PushableManifest, o: DockerArchiveOptions = {}): Promise<DockerArchiveResult> {
  const mtime = new Date((o.mtime ?? 0) * 1000);
  const header = { uid: 0, gid: 0, uname: '', gname: '', mtime, mode: 0o644, type: 'file' as const };
  const blobs = uniqueBlobs([image.config, ...image.layers]);
  const manifest: DockerArchiveEntry[] = [
    { Config: archivePath(image.config), RepoTags: o.repoTags ?? [], Layers: image.layers.map(archivePath) },
  ];

  const pack = tar.pack();
  const produce = async () => {
    for (const dir of ['blobs/', 'blobs/sha256/']) await addEntry(pack, { ...header, name: dir, type: 'directory', mode: 0o755 });
    for (const b of blobs) await addBlob(pack, { ...header, name: archivePath(b), size: b.descriptor.size }, b);
    await addEntry(pack, { ...header, name: 'manifest.json' }, Buffer.from(JSON.stringify(manifest)));
    pack.finalize();
  };

  // Missing folders are made, as for a layout; one made here goes again if the write fails.
  let made: string | undefined;
  try {
    made = makeDirs(dirname(file));
  } catch (err) {
    throw fsError(err, file, 'write');
  }
  const tmp = join(dirname(file), `.${basename(file)}.tmp-${randomBytes(6).toString('hex')}`);
  const forget = trackTempFile(tmp);
  const out = createWriteStream(tmp);
  const failed = new Promise<never>((_, reject) => out.once('error', (e) => reject(fsError(e, file, 'write'))));
  failed.catch(() => undefined);
  let bytes = 0;
  try {
    const producing = produce();
    producing.catch((err: unknown) => pack.destroy(err instanceof Error ? err : new Error(String(err))));
    for await (const chunk of pack as unknown as AsyncIterable<Buffer>) {
      bytes += chunk.length;
      if (!out.write(chunk)) await Promise.race([once(out, 'drain'), failed]);
    }
    await producing;
    out.end();
    await Promise.race([once(out, 'finish'), failed]);
    await rename(tmp, file);
  } catch (err) {
    await abandonTempFile(out, tmp);
    if (made) rmSync(made, { recursive: true, force: true });
    if (err instanceof KocacheError) throw err;
    throw fsError(err, file, 'write');
  } finally {
    forget();
  }
  return { imageId: image.config.descriptor.digest, bytes };
}

/** What tar-stream needs of a header; it fills in the rest. */
type EntryHeader = Partial<tar.Header> & Pick<tar.Header, 'name'>;

function uniqueBlobs(blobs: BlobSource[]): BlobSource[] {
  const seen = new Set<string>();
  return blobs.filter((b) => !seen.has(b.descriptor.digest) && Boolean(seen.add(b.descriptor.digest)));
}

function addEntry(pack: tar.Pack, header: EntryHeader, body?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const cb = (err?: Error | null) => (err ? reject(err) : resolve());
    if (body) pack.entry({ ...header, size: body.length }, body, cb);
    else pack.entry(header, cb);
  });
}

/** Streams a blob into the tar, checking its digest and size: a wrong blob fails the archive. */
async function addBlob(pack: tar.Pack, header: EntryHeader, blob: BlobSource): Promise<void> {
  const { digest, size } = blob.descriptor;
  let settle!: (err?: Error | null) => void;
  const finished = new Promise<void>((resolve, reject) => {
    settle = (err) => (err ? reject(err) : resolve());
  });
  finished.catch(() => undefined);
  const sink = pack.entry(header, (err?: Error | null) => settle(err));
  // When the pack is torn down mid-entry the sink emits 'error' too; unheard, that would crash.
  sink.on('error', (err: Error) => settle(err));
  const bytes = verify(readSource(blob), { digest, size }, (m) => new KocacheError('digest-mismatch', `blob ${digest} came out as ${describeMismatch(m)}: archive not written`));
  for await (const chunk of bytes) {
    if (!sink.write(chunk)) await once(sink, 'drain');
  }
  // streamx's end() takes an optional last chunk; its typings make it mandatory.
  sink.end(undefined);
  await finished;
}
