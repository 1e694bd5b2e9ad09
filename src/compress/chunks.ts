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

/** Passes chunks through while feeding each to `observe` (a hash, a byte counter). */
export async function* tap<T extends Uint8Array>(source: AsyncIterable<T>, observe: (chunk: T) => void): AsyncGenerator<T> {
  for await (const chunk of source) {
    observe(chunk);
    yield chunk;
  }
}
