import type { Digest } from './digest.js';

/**
 * Where a blob's bytes may also go while the blob is being made (publish's upload, started before
 * the digest is known). A sink is never in the way of the making: one that fails or cannot keep up
 * drops its copy, and the blob is then sent from the content store as any other.
 */
export interface BlobSink {
  /** The next bytes. A promise asks the writer to wait for room; the sink copies what it keeps. */
  write(chunk: Uint8Array): void | Promise<void>;
  /** Every byte was written: this is the blob. */
  end(blob: { digest: Digest; size: number }): void;
  /** The blob will not be complete (its making failed): what was sent is of no use. */
  abort(): void;
}

/** Passes a blob's bytes through, giving each to `sink` first; a source that fails aborts it. */
export async function* teeTo<T extends Uint8Array>(source: AsyncIterable<T>, sink: BlobSink): AsyncGenerator<T> {
  let complete = false;
  try {
    for await (const chunk of source) {
      const room = sink.write(chunk);
      if (room) await room;
      yield chunk;
    }
    complete = true;
  } finally {
    if (!complete) sink.abort();
  }
}

/**
 * Writes a blob through `write` with its bytes given to `sink` on the way (when there is one),
 * then tells the sink what the blob is, or that it failed.
 */
export async function writeTeed<B extends { digest: Digest; size: number }>(
  source: AsyncIterable<Uint8Array>,
  sink: BlobSink | undefined,
  write: (s: AsyncIterable<Uint8Array>) => Promise<B>,
): Promise<B> {
  if (!sink) return write(source);
  let blob: B;
  try {
    blob = await write(teeTo(source, sink));
  } catch (err) {
    sink.abort();
    throw err;
  }
  sink.end(blob);
  return blob;
}
