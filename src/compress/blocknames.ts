import { createHash } from 'node:crypto';

/** gzip.ts WINDOW: a block's dictionary is the 32 KiB of input before it. */
const WINDOW = 32 * 1024;
/** Bump on any change to how a name is made. */
const NAME_FORMAT = 'bn2';

/** Bytes of a block left unread (a lazy tar, tar.ts): `length` bytes of entry `entry` from `offset`, at `pos`. */
export interface Hole {
  pos: number;
  length: number;
  entry: number;
  offset: number;
}

/**
 * Block names: a gzip block's key (gzip.ts) worked out from what is known of its bytes instead of
 * hashing them. A tar block is header and padding bytes and ranges of files, each range named by
 * the file's sha256 (from the stat cache or a hash already taken), the offset and the length. Its
 * own name hashes the layout (each segment's kind, length and offset) with the header and padding
 * bytes, then the files' hashes in order; its key is the names of the blocks before it that cover
 * the 32 KiB dictionary, then its own. So a key still determines the block's bytes and its
 * dictionary exactly, given that each file's sha256 is right: what a cache hit already trusts (and
 * a copied block's input CRC-32 is checked against the bytes read, gzip.ts). A block with a file
 * range of unknown hash gets no name, nor do the blocks whose dictionary reaches into it.
 *
 * `deferred`: the files' hashes come only after the blocks (a cold build hashes each file as it
 * reads it). Each block's layout is hashed as it is cut, its files kept as entry indexes (see
 * `source`), and `resolve` gives the names once the hashes are known; `onKey` hears none.
 */
export class BlockNames {
  /** Segment starts in the current block; a segment runs to the next one's start. */
  private starts: number[] = [];
  /**
   * Per segment: the file's sha256 (hex), '' for literal bytes, undefined for an unknown file, the
   * entry's index for a file whose hash comes later (deferred).
   */
  private files: (string | number | undefined)[] = [];
  /** Per segment: offset in its file of the segment's first byte. */
  private offsets: number[] = [];
  /** Per segment: the entry whose bytes were left unread there (-1: the bytes are in place). */
  private holes: number[] = [];
  private hole = -1;
  /** The file being read (`source`) and where in it the next committed bytes are. */
  private file: string | number | undefined = '';
  private at = 0;
  /** Names and lengths of the blocks before, newest last, as far back as the window reaches. */
  private recent: { name: Buffer | undefined; length: number }[] = [];

  private readonly spec: string;
  /** Deferred: the blocks cut, in order, named by `resolve`. */
  private readonly later: Later[] = [];

  /**
   * `keySpec`: gzip's blockKeySpec; `onKey` hears each block's key (undefined: no name, or
   * `deferred`) and the bytes left unread in it (none unless `source` was told of an entry).
   */
  constructor(
    keySpec: string,
    private readonly onKey: (block: Buffer, key: Buffer | undefined, holes: Hole[]) => void,
    private readonly deferred = false,
  ) {
    // Its own format, so a name never equals a key of blockKey's.
    this.spec = `${NAME_FORMAT}-${keySpec}`;
  }

  /**
   * The next committed bytes are the data of a file with this sha256 (undefined: not known);
   * `unread`: they are entry `unread`'s, committed without being read (a hole); `entry`: its index,
   * by which `resolve` asks for a hash not known yet (deferred).
   */
  source(sha256: string | undefined, unread = -1, entry = -1): void {
    this.file = sha256 ?? (this.deferred && entry >= 0 ? entry : undefined);
    this.at = 0;
    this.hole = unread;
  }

  /** Bytes at `pos` of the current block, written as they are. */
  literal(pos: number): void {
    const last = this.files.length - 1;
    if (last >= 0 && this.files[last] === '') return;
    this.push(pos, '', 0, -1);
  }

  /** `n` bytes of the current source read in at `pos`. */
  data(pos: number, n: number): void {
    if (this.file === '') return this.literal(pos);
    const last = this.files.length - 1;
    const contiguous = last >= 0 && this.files[last] === this.file && this.offsets[last]! + (pos - this.starts[last]!) === this.at;
    if (!contiguous) this.push(pos, this.file, this.at, this.hole);
    this.at += n;
  }

  /** The current block ends: `block` is its bytes; the buffer held `length`, the rest starts the next. */
  cut(block: Buffer, length: number): void {
    const c = block.length;
    const h = createHash('sha256');
    const field = Buffer.alloc(13);
    let known = true;
    const ranges: (string | number)[] = [];
    let keep = this.starts.length;
    const holes: Hole[] = [];
    for (let i = 0; i < this.starts.length; i++) {
      const from = this.starts[i]!;
      if (from >= c) {
        keep = i;
        break;
      }
      const to = Math.min(i + 1 < this.starts.length ? this.starts[i + 1]! : length, c);
      const file = this.files[i];
      if (this.holes[i]! >= 0) holes.push({ pos: from, length: to - from, entry: this.holes[i]!, offset: this.offsets[i]! });
      if (file === undefined) known = false;
      if (file === undefined || !known) continue;
      // Tag, length and offset, and the bytes of a literal: with the files' hashes after them
      // (keyOf), no two blocks share a name.
      field[0] = file === '' ? 0x4c : 0x46;
      field.writeUInt32BE(to - from, 1);
      field.writeDoubleBE(file === '' ? 0 : this.offsets[i]!, 5);
      h.update(field);
      if (file === '') h.update(block.subarray(from, to));
      else ranges.push(file);
    }
    // The segment the cut falls in goes on in the next block, from the cut.
    const starts: number[] = [];
    const files: (string | number | undefined)[] = [];
    const offsets: number[] = [];
    const unread: number[] = [];
    const split = keep - 1;
    if (split >= 0 && (split + 1 < this.starts.length ? this.starts[split + 1]! : length) > c) {
      starts.push(0);
      files.push(this.files[split]);
      offsets.push(this.offsets[split]! + (this.files[split] === '' ? 0 : c - this.starts[split]!));
      unread.push(this.holes[split]!);
    }
    for (let i = keep; i < this.starts.length; i++) {
      starts.push(this.starts[i]! - c);
      files.push(this.files[i]);
      offsets.push(this.offsets[i]!);
      unread.push(this.holes[i]!);
    }
    this.starts = starts;
    this.files = files;
    this.offsets = offsets;
    this.holes = unread;
    const named = { layout: known ? h.digest() : undefined, files: ranges, length: c };
    if (this.deferred) {
      this.later.push(named);
      return this.onKey(block, undefined, holes);
    }
    this.onKey(block, this.keyOf(named, () => undefined), holes);
  }

  /**
   * Deferred: each block's key, in order, now that `hashOf` gives each entry's sha256 (undefined:
   * not known, and the block gets none).
   */
  resolve(hashOf: (entry: number) => string | undefined): (Buffer | undefined)[] {
    return this.later.splice(0).map((b) => this.keyOf(b, hashOf));
  }

  /**
   * A block's key: its own name (the layout hash, then the sha256 of each file range in it, in
   * order; `hashOf` for those kept as entry numbers) after those of the blocks its dictionary
   * reaches into. Called once per block, in order.
   */
  private keyOf({ layout, files, length }: Later, hashOf: (entry: number) => string | undefined): Buffer | undefined {
    const hashes = layout && files.map((f) => (typeof f === 'number' ? hashOf(f) : f));
    let name: Buffer | undefined;
    if (hashes && !hashes.includes(undefined)) {
      const own = createHash('sha256').update(layout!);
      for (const sha of hashes) own.update(sha!);
      name = own.digest();
    }
    const k = createHash('sha256').update(this.spec).update('\0');
    let known = name !== undefined;
    for (const r of this.recent) {
      if (!r.name) known = false;
      if (!r.name || !known) break;
      const len = Buffer.alloc(4);
      len.writeUInt32BE(r.length);
      k.update(len).update(r.name);
    }
    const key = known ? k.update('|').update(name!).digest() : undefined;
    this.recent.push({ name, length });
    // Keep the blocks the next dictionary reaches into: newest back to 32 KiB.
    let covered = 0;
    let from = this.recent.length;
    while (from > 0 && covered < WINDOW) covered += this.recent[--from]!.length;
    if (from > 0) this.recent = this.recent.slice(from);
    return key;
  }

  private push(pos: number, file: string | number | undefined, offset: number, hole: number): void {
    this.starts.push(pos);
    this.files.push(file);
    this.offsets.push(offset);
    this.holes.push(hole);
  }
}

/** A block as cut, to be named: its layout hash (undefined: a file of unknown hash), its files' hashes or entry numbers, its length. */
interface Later {
  layout: Buffer | undefined;
  files: (string | number)[];
  length: number;
}
