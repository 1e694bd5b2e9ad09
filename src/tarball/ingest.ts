import type { CacheStore } from '../cache/store.js';
import { type Digest, sha256Digest } from '../oci/digest.js';
import type { ArchiveFile } from './entries.js';
import { inflate, isGzipMagic, isZstdMagic } from './inflate.js';
import { tee } from './tee.js';

/**
 * Entries held in memory instead of streamed to the store: JSON documents (manifests, configs,
 * indexes: they are parsed after the pass) up to 4 MiB, anything else up to 64 KiB. A layer of
 * any real size is never held.
 */
export const SMALL_JSON = 4 << 20;
export const SMALL_ENTRY = 64 << 10;

/** What the one pass learned about a gzipped entry: its inflated tar's digest (the diffid), or why it did not inflate. */
export type GzipFacts = { diffid: Digest; size: number } | { error: string };

/** One regular file of an archive after the pass: hashed, and stored or held. */
export interface StoredFile {
  name: string;
  size: number;
  /** sha256 of the bytes as they are in the archive. */
  digest: Digest;
  /** Small entries are held here and written to the store only if the image uses them. */
  bytes?: Buffer;
  /** For a large entry starting with gzip (or zstd) magic: inflated on the fly while it was stored. */
  gzip?: GzipFacts;
  /** Compressed: gzip, or zstd when `zstd` is set too. */
  gzipped: boolean;
  zstd?: true;
}

/**
 * Takes one file entry as it streams by. A small one is read into memory. A large one is written
 * to the content store while being hashed; when it starts with gzip magic (a gzipped layer) its
 * bytes are teed: the compressed bytes are stored as they are AND inflated into a second blob, the
 * uncompressed layer tar, whose digest is the diffid. Nothing is read twice.
 */
export async function ingestFile(cache: CacheStore, file: ArchiveFile, archive: string, onPlainTar?: (tar: { diffid: Digest; size: number }) => void): Promise<StoredFile> {
  const { head, body } = await peek(file.body, 512);
  const json = head[0] === 0x7b || head[0] === 0x5b; // '{' or '['
  if (file.size <= SMALL_ENTRY || (json && file.size <= SMALL_JSON)) {
    const parts: Buffer[] = [];
    for await (const chunk of body) parts.push(chunk);
    const bytes = Buffer.concat(parts);
    const zstd = isZstdMagic(bytes);
    return { name: file.name, size: bytes.length, digest: sha256Digest(bytes), bytes, gzipped: isGzipMagic(bytes) || zstd, ...(zstd ? { zstd } : {}) };
  }
  const zstd = isZstdMagic(head);
  if (!isGzipMagic(head) && !zstd) {
    const blob = await cache.writeBlob(body);
    if (looksLikeTar(head)) onPlainTar?.({ diffid: blob.digest, size: blob.size });
    return { name: file.name, size: blob.size, digest: blob.digest, gzipped: false };
  }

  const [raw, toInflate] = tee(body, 2) as [AsyncIterable<Buffer>, AsyncIterable<Buffer>];
  const what = `${archive}: ${file.name}`;
  const [stored, inflated] = await Promise.allSettled([
    cache.writeBlob(raw),
    cache.writeBlob(inflate(toInflate, 'layer', what, zstd ? 'zstd' : 'gzip')),
  ]);
  if (stored.status === 'rejected') throw stored.reason;
  // A gzip entry that does not inflate is only an error if the image uses it as a layer.
  const gzip: GzipFacts = inflated.status === 'fulfilled'
    ? { diffid: inflated.value.digest, size: inflated.value.size }
    : { error: inflated.reason instanceof Error ? inflated.reason.message : String(inflated.reason) };
  return { name: file.name, size: stored.value.size, digest: stored.value.digest, gzip, gzipped: true, ...(zstd ? { zstd } : {}) };
}

/** A held buffer as a stream, for the store's streaming writer. */
export async function* bytesSource(b: Buffer): AsyncGenerator<Buffer> {
  yield b;
}

/** POSIX, PAX and GNU tar headers all carry "ustar" at offset 257. */
function looksLikeTar(head: Buffer): boolean {
  return head.length >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar';
}

/** Reads at least `n` bytes of a stream (fewer if it is shorter) and returns them with the whole stream. */
async function peek(source: AsyncIterable<Buffer>, n: number): Promise<{ head: Buffer; body: AsyncIterable<Buffer> }> {
  const it = source[Symbol.asyncIterator]();
  const taken: Buffer[] = [];
  let have = 0;
  let finished = false;
  while (have < n) {
    const r = await it.next();
    if (r.done) {
      finished = true;
      break;
    }
    taken.push(r.value);
    have += r.value.length;
  }
  async function* body(): AsyncGenerator<Buffer> {
    yield* taken;
    if (finished) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield r.value;
    }
  }
  return { head: Buffer.concat(taken).subarray(0, n), body: body() };
}
