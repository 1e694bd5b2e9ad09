import { createReadStream } from 'node:fs';
import type { CacheStore } from '../cache/store.js';
import { tap } from '../compress/chunks.js';
import { KocacheError, fsError } from '../errors.js';
import { readTarEntries, type ArchiveEntry } from './entries.js';
import { inflate } from './inflate.js';
import { ingestFile, type StoredFile } from './ingest.js';
import type { Digest } from '../oci/digest.js';

/** Everything one pass over an archive found: its files (hashed, stored or held) and its links. */
export class ArchiveContents {
  readonly files = new Map<string, StoredFile>();
  readonly links = new Map<string, string>();

  constructor(readonly name: string) {}

  /** A file by archive path, following links inside the archive. */
  get(path: string): StoredFile | undefined {
    let p = path.replace(/^\.\//, '');
    for (let hops = 0; hops < 32; hops++) {
      const f = this.files.get(p);
      if (f) return f;
      const next = this.links.get(p);
      if (next === undefined) return undefined;
      p = next;
    }
    throw new KocacheError('archive', `${this.name}: too many levels of links at ${JSON.stringify(path)}`);
  }

  /** Like get, but a missing file is an error naming who wanted it. */
  need(path: string, wantedBy: string): StoredFile {
    const f = this.get(path);
    if (!f) throw new KocacheError('archive', `${this.name}: ${wantedBy} names ${JSON.stringify(path)}, which is not in the archive`);
    return f;
  }
}

/** Told of each large plain tar entry once it is stored (a layer, most likely). */
export type PlainTarHook = (tar: { diffid: Digest; size: number }) => void;

/** Feeds entries (from a tar, or from a layout directory) through the store, one at a time. */
export async function collectEntries(cache: CacheStore, entries: AsyncIterable<ArchiveEntry>, name: string, onPlainTar?: PlainTarHook): Promise<ArchiveContents> {
  const contents = new ArchiveContents(name);
  for await (const e of entries) {
    if (e.type === 'link') contents.links.set(e.name, e.target);
    else contents.files.set(e.name, await ingestFile(cache, e, name, onPlainTar));
  }
  return contents;
}

/**
 * The single pass over a tar archive: read the file once, inflate it once when gzipped, read the
 * tar once, and store every file entry as it goes by. docker save writes manifest.json last, so
 * what is a layer is only known afterwards; see ingestFile.
 */
export function scanTarArchive(cache: CacheStore, path: string, opts: { gzipped: boolean; onRead?: ((bytes: number) => void) | undefined; onPlainTar?: PlainTarHook }): Promise<ArchiveContents> {
  const onRead = opts.onRead;
  const raw = onRead ? tap(readFile(path), (c) => onRead(c.length)) : readFile(path);
  const tarBytes = opts.gzipped ? inflate(raw, 'archive', path) : raw;
  return collectEntries(cache, readTarEntries(tarBytes, path), path, opts.onPlainTar);
}

async function* readFile(path: string): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) yield chunk as Buffer;
  } catch (err) {
    throw fsError(err, path, 'read archive');
  }
}
