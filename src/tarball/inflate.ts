import { Readable, type Transform } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { zstdUnavailable } from '../compress/zstd.js';
import { KocacheError } from '../errors.js';
import { MediaType } from '../oci/mediatypes.js';
import { traceAdd } from '../util/trace.js';

/** The first bytes of every gzip member: magic 1f 8b and method 8 (deflate). */
export function isGzipMagic(head: Uint8Array): boolean {
  return head.length >= 3 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 0x08;
}

/** The first bytes of every zstd frame: magic 28 b5 2f fd. */
export function isZstdMagic(head: Uint8Array): boolean {
  return head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd;
}

/**
 * What was inflated: the whole archive, or one gzipped layer inside it. Each kind has its own
 * trace counter (`inflate.archive`, `inflate.layer`) so a test can prove every byte was inflated
 * exactly once, and that a second import of the same archive inflates nothing.
 */
export type InflateKind = 'archive' | 'layer';

/**
 * The one place kocache inflates gzip. node:zlib's gunzip reads every member of a multi-member
 * stream (fflate's gunzipSync stops after the first, silently); 1 MiB output chunks run much
 * faster than zlib's 16 KiB default (docs/compression.md). Errors become one line naming `what`.
 */
export async function* inflate(source: AsyncIterable<Uint8Array>, kind: InflateKind, what: string, format: 'gzip' | 'zstd' = 'gzip'): AsyncGenerator<Buffer> {
  const gunzip = format === 'zstd' ? zstdDecompressor(what) : createGunzip({ chunkSize: 1 << 20 });
  const input = Readable.from(source, { objectMode: false });
  let inputError: unknown;
  input.on('error', (err) => {
    inputError = err;
    gunzip.destroy(err);
  });
  input.pipe(gunzip);
  try {
    for await (const chunk of gunzip) {
      const buf = chunk as Buffer;
      traceAdd(`inflate.${kind}`, buf.length);
      yield buf;
    }
  } catch (err) {
    if (inputError !== undefined) throw inputError;
    throw format === 'zstd' ? zstdError(err, what) : gzipError(err, what);
  } finally {
    input.destroy();
    gunzip.destroy();
  }
}

/** node:zlib's zstd decompressor (Node 22.15+; zstd layers in archives are read nowhere else). */
function zstdDecompressor(what: string): Transform {
  const why = zstdUnavailable();
  if (why) throw new KocacheError('archive', `${what} is a zstd layer: ${why.replace(/; use --compression gzip or a newer Node$/, '')}`);
  const zlib = process.getBuiltinModule('node:zlib') as typeof import('node:zlib') & { createZstdDecompress(o: { chunkSize: number }): Transform };
  return zlib.createZstdDecompress({ chunkSize: 1 << 20 });
}

function zstdError(err: unknown, what: string): KocacheError {
  const msg = err instanceof Error ? err.message : String(err);
  return new KocacheError('archive', `${what}: corrupt or truncated zstd stream (${msg})`, { cause: err });
}

function gzipError(err: unknown, what: string): KocacheError {
  const msg = err instanceof Error ? err.message : String(err);
  const why = /unexpected end of file/i.test(msg) ? 'truncated gzip stream (unexpected end of file)' : `corrupt gzip stream (${msg})`;
  return new KocacheError('archive', `${what}: ${why}`, { cause: err });
}

/**
 * A layer blob's tar, by its media type: inflated (gzip or zstd), or the blob itself for a plain
 * tar; undefined where this Node cannot read zstd. Used to check a diffid a record names.
 */
export function unpackLayer(blob: AsyncIterable<Uint8Array>, mediaType: string, what: string): AsyncIterable<Uint8Array> | undefined {
  if (mediaType === MediaType.OciLayerZstd) return zstdUnavailable() ? undefined : inflate(blob, 'layer', what, 'zstd');
  if (mediaType === MediaType.OciLayer) return blob;
  return inflate(blob, 'layer', what, 'gzip');
}
