import { createHash } from 'node:crypto';

/** What a stream of bytes should be: its sha256 digest, and its size when known. */
export interface Expected {
  digest: string;
  size?: number | undefined;
}

/**
 * How the bytes differed. `size`: there were `bytes` of them where `want` were expected (more: the
 * stream was stopped there, unhashed to its end, so `digest` is absent); `digest`: the size was
 * right (or not given) and the bytes hash to `digest`.
 */
export interface Mismatch {
  reason: 'size' | 'digest';
  bytes: number;
  want: Expected;
  digest?: string;
}

/**
 * The one hash-and-compare of kocache: passes `source` through while hashing and counting it, and
 * throws `fail(mismatch)` (each caller words its own error: a corrupt cache entry, a registry that
 * sent the wrong bytes, a blob source that lied) once the bytes cannot be the expected ones: as
 * soon as there are more than `size`, else at the end. A consumer must not trust the bytes until
 * the stream has ended without throwing. `onChunk` sees each chunk passed on (progress, counters).
 */
export async function* verify(
  source: AsyncIterable<Uint8Array>,
  want: Expected,
  fail: (m: Mismatch) => Error,
  onChunk?: (chunk: Uint8Array) => void,
): AsyncGenerator<Buffer> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const raw of source) {
    const chunk = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    bytes += chunk.length;
    if (want.size !== undefined && bytes > want.size) throw fail({ reason: 'size', bytes, want });
    hash.update(chunk);
    onChunk?.(chunk);
    yield chunk;
  }
  const digest = `sha256:${hash.digest('hex')}`;
  if (want.size !== undefined && bytes !== want.size) throw fail({ reason: 'size', bytes, want, digest });
  if (digest !== want.digest) throw fail({ reason: 'digest', bytes, want, digest });
}

/** Reads `source` to its end through verify; says whether it was what was expected. */
export async function matches(source: AsyncIterable<Uint8Array>, want: Expected): Promise<boolean> {
  const mismatch = new Error('mismatch');
  try {
    for await (const _ of verify(source, want, () => mismatch)) { /* hashed as it streams */ }
    return true;
  } catch (err) {
    if (err === mismatch) return false;
    throw err;
  }
}

/** A mismatch in words: `N bytes hashing to D (want M bytes)`, for the callers' messages. */
export function describeMismatch(m: Mismatch): string {
  const got = m.digest ? `${m.bytes} bytes hashing to ${m.digest}` : `more than ${m.want.size} bytes`;
  return m.want.size === undefined ? got : `${got} (want ${m.want.size} bytes)`;
}
