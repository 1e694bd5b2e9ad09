/**
 * Re-chunks a byte stream into blocks of exactly `size` bytes (the last may be shorter).
 * tar-stream emits 512-byte headers and small bodies; feeding those to zlib or a hash one by one
 * costs more than the work itself, so everything downstream of tar sees 1 MiB blocks.
 */
export async function* rechunk(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, size: number): AsyncGenerator<Buffer> {
  let block = Buffer.allocUnsafe(size);
  let fill = 0;
  for await (const chunk of source) {
    let off = 0;
    // Whole blocks already in place pass through as views, uncopied: gzipStream re-chunks what
    // build.ts already chunked, and each copy is another 100 MB of allocation for a 100 MB layer.
    while (fill === 0 && chunk.byteLength - off >= size) {
      yield Buffer.from(chunk.buffer, chunk.byteOffset + off, size);
      off += size;
    }
    while (off < chunk.byteLength) {
      const n = Math.min(size - fill, chunk.byteLength - off);
      block.set(chunk.subarray(off, off + n), fill);
      fill += n;
      off += n;
      if (fill === size) {
        yield block;
        block = Buffer.allocUnsafe(size);
        fill = 0;
      }
    }
  }
  if (fill > 0) yield block.subarray(0, fill);
}

/**
 * Passes chunks through while feeding each to `observe` (a hash, a byte counter); one that returns
 * a promise holds the chunk back until it settles.
 */
export async function* tap<T extends Uint8Array>(source: AsyncIterable<T> | Iterable<T>, observe: (chunk: T) => void | Promise<void>): AsyncGenerator<T> {
  for await (const chunk of source) {
    const wait = observe(chunk);
    if (wait instanceof Promise) await wait;
    yield chunk;
  }
}

/**
 * Pulls up to `depth` items ahead of the consumer. The producer (tar: file reads on the thread
 * pool, header encoding on the main thread) then runs while the consumer awaits compression,
 * instead of only after, which took a large part off tar+gzip on 2 cores (docs/compression.md).
 * Memory stays bounded by `depth` items.
 */
export async function* readAhead<T>(source: AsyncIterable<T>, depth: number): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  const queue: Promise<IteratorResult<T>>[] = [];
  const pull = () => {
    const next = it.next();
    // Awaited in order below; this only keeps a failure from being reported as unhandled meanwhile.
    next.catch(() => undefined);
    queue.push(next);
  };
  try {
    for (let i = 0; i < depth; i++) pull();
    for (;;) {
      const r = await queue.shift()!;
      if (r.done) return;
      pull();
      yield r.value;
    }
  } finally {
    await it.return?.();
  }
}
