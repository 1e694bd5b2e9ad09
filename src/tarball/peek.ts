import { createReadStream } from 'node:fs';
import { fsError } from '../errors.js';
import { detectArchive } from './detect.js';
import { inflate, isGzipMagic } from './inflate.js';
import { readTarEntries } from './entries.js';
import { SMALL_JSON } from './ingest.js';

/** An archive's members as listed, without importing anything: sizes, and the bytes of small ones. */
export interface ArchivePeek {
  /** Member name -> size as stored (a link has its target's). */
  sizes: Map<string, number>;
  /** Member name -> bytes, for members up to SMALL_JSON bytes (manifests, configs, index.json). */
  small: Map<string, Buffer>;
  /** Member names whose bytes start as gzip does. */
  gzipped: Set<string>;
}

/**
 * Reads a tar or gzipped tar archive once, keeping only what an inspection needs. Large members
 * (layers) are read through and dropped: nothing is written, nothing is cached.
 */
export async function peekArchive(path: string): Promise<ArchivePeek> {
  const info = await detectArchive(path);
  async function* raw(): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) yield chunk as Buffer;
    } catch (err) {
      throw fsError(err, path, 'read archive');
    }
  }
  const source = info.format === 'gzip' ? inflate(raw(), 'archive', path) : raw();
  const peek: ArchivePeek = { sizes: new Map(), small: new Map(), gzipped: new Set() };
  const links: [string, string][] = [];
  for await (const e of readTarEntries(source, path)) {
    if (e.type === 'link') {
      links.push([e.name, e.target]);
      continue;
    }
    peek.sizes.set(e.name, e.size);
    const keep = e.size <= SMALL_JSON;
    const parts: Buffer[] = [];
    let first = true;
    for await (const chunk of e.body) {
      if (first && chunk.length > 0) {
        if (isGzipMagic(chunk)) peek.gzipped.add(e.name);
        first = false;
      }
      if (keep) parts.push(chunk);
    }
    if (keep) peek.small.set(e.name, Buffer.concat(parts));
  }
  for (const [name, target] of links) {
    const size = peek.sizes.get(target);
    if (size === undefined) continue;
    peek.sizes.set(name, size);
    const bytes = peek.small.get(target);
    if (bytes) peek.small.set(name, bytes);
    if (peek.gzipped.has(target)) peek.gzipped.add(name);
  }
  return peek;
}
