/**
 * Block buffers handed out again once their last user is done with them. The layer writer fills
 * blocks that gzip holds until their deflate finishes; allocating each anew cost a page fault per
 * 4 KiB on first touch and garbage to collect (docs/compression.md).
 * Holds at most `keep` free buffers; more than that are left to the garbage collector.
 */
export class BlockPool {
  private readonly free: Buffer[] = [];

  /** `shared`: buffers in shared memory, which a worker thread reads where they are (streamhash.ts). */
  constructor(readonly size: number, private readonly keep: number, private readonly shared = false) {}

  take(): Buffer {
    return this.free.pop() ?? (this.shared ? Buffer.from(new SharedArrayBuffer(this.size)) : Buffer.allocUnsafeSlow(this.size));
  }

  /** A block nobody reads or writes any more: a view from the start of a buffer `take` gave. */
  give(block: Buffer): void {
    if (block.byteOffset !== 0 || block.buffer.byteLength !== this.size || this.free.length >= this.keep) return;
    this.free.push(Buffer.from(block.buffer, 0, this.size));
  }
}
