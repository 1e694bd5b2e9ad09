/**
 * Fixed-size buffers handed out again once their last user is done with them. The layer writer
 * fills 1 MiB blocks that gzip holds until their deflate finishes; allocating each anew cost a
 * page fault per 4 KiB on first touch and garbage to collect (~29,000 faults for a 100 MB layer).
 * Holds at most `keep` free blocks; more than that are left to the garbage collector.
 */
export class BlockPool {
  private readonly free: Buffer[] = [];

  constructor(readonly size: number, private readonly keep: number) {}

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  /** A block nobody reads or writes any more; a shorter view (the last block) is not kept. */
  give(block: Buffer): void {
    if (block.length === this.size && block.byteOffset === 0 && this.free.length < this.keep) this.free.push(block);
  }
}
