import type { BlobInfo, CacheStore } from './store.js';

/**
 * Passes a stream through unchanged while also storing it in the cache, so bytes fetched once
 * for one purpose (a base layer uploaded to another registry) are there the next time. Storing
 * is best effort: if it fails, or the consumer stops early, nothing is stored and the consumer
 * never notices. At most `lead` chunks wait for the cache writer, so a slow disk slows the
 * stream rather than filling memory.
 */
export async function* keepWhileStreaming(
  cache: CacheStore,
  source: AsyncIterable<Uint8Array>,
  expect: BlobInfo,
  onStored: () => Promise<void>,
  lead = 16,
): AsyncGenerator<Uint8Array> {
  const pipe = new Pipe(lead);
  const stored = cache.writeBlob(pipe, expect).then(onStored, () => { /* a cache that cannot keep it just misses next time */ });
  let finished = false;
  try {
    for await (const chunk of source) {
      await pipe.push(chunk);
      yield chunk;
    }
    finished = true;
    pipe.end();
  } finally {
    if (!finished) pipe.fail(new Error('stream stopped before its end'));
    await stored;
  }
}

/** A bounded single-consumer queue that is itself an async iterable. */
class Pipe implements AsyncIterable<Uint8Array> {
  private readonly queue: Uint8Array[] = [];
  private done = false;
  private error: Error | undefined;
  private wakeReader: (() => void) | undefined;
  private wakeWriter: (() => void) | undefined;

  constructor(private readonly lead: number) {}

  async push(chunk: Uint8Array): Promise<void> {
    if (this.done || this.error) return;
    this.queue.push(chunk);
    this.wake();
    while (this.queue.length > this.lead && !this.done && !this.error) {
      await new Promise<void>((resolve) => (this.wakeWriter = resolve));
    }
  }

  end(): void {
    this.done = true;
    this.wake();
  }

  fail(err: Error): void {
    this.error = err;
    this.wake();
  }

  private wake(): void {
    const r = this.wakeReader;
    this.wakeReader = undefined;
    r?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    try {
      for (;;) {
        if (this.error) throw this.error;
        const chunk = this.queue.shift();
        if (chunk) {
          const w = this.wakeWriter;
          this.wakeWriter = undefined;
          w?.();
          yield chunk;
          continue;
        }
        if (this.done) return;
        await new Promise<void>((resolve) => (this.wakeReader = resolve));
      }
    } finally {
      // The writer gave up (a write error): release a producer waiting for room.
      this.error ??= new Error('cache writer stopped');
      const w = this.wakeWriter;
      this.wakeWriter = undefined;
      w?.();
    }
  }
}
