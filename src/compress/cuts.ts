import type { BlockNames } from './blocknames.js';
import type { BlockPool } from './blockpool.js';

/**
 * Where gzip's blocks end: a pure function of the tar bytes, so that an edit moves only the cuts
 * near it and every block after them is the same bytes as before (and can be reused, stitch.ts).
 * Fixed offsets would not do: one inserted byte shifts every later block.
 *
 * The stream is read as tar. Before an entry's header a cut is made when the block so far is long
 * enough and a hash of the entry's name says so (the longer the block, the likelier: 1 in 64 up to
 * 1 MiB, 1 in 8 up to 2 MiB, always after that); before a big entry's header whenever the block is
 * long enough. A big entry is cut every PIECE bytes from the start of its own data, so a change
 * inside it disturbs one piece. Bytes that are not tar (a bad header checksum) are cut every HARD
 * bytes. A block never exceeds HARD bytes.
 *
 * The rule reads each header through the decision on it, never further, so the cuts do not depend
 * on how the bytes arrive. Any change to the rule changes output bytes: bump CUT_RULE.
 */
export const CUT_RULE = 'cdc1';

const KiB = 1024;
const MiB = 1024 * KiB;
const RECORD = 512;
/** No cut before an entry until the block has this many bytes (small blocks cost ratio and map space). */
const MIN = 256 * KiB;
/** Entries with at least this much data are cut into pieces from their own start. */
const BIG = 256 * KiB;
const PIECE = 1 * MiB;
const HARD = 4 * MiB;
/** Extension records (PAX, GNU long names) up to this size take part in the name hash. */
const MAX_EXT = 64 * KiB;
/** Room a block buffer needs: a whole block plus the look-ahead of a header decision. */
export const BLOCK_CAPACITY = HARD + MAX_EXT + 2 * RECORD;

type Kind = 0 | 1;
const Plain: Kind = 0;
/** A record that describes the next entry (PAX 'x', GNU 'L'/'K'): no cut between it and its entry. */
const Extension: Kind = 1;

/** The cut rule's state over one stream. */
export class TarCuts {
  /** Stream position where the current block starts. */
  private start = 0;
  /** Position of the next tar header record; Infinity once the stream is not tar. */
  private header = 0;
  /** The previous record was an extension, so `header` belongs to the same entry. */
  private continued = false;
  /** Data of the current big entry: [pieceFrom, pieceEnd). */
  private pieceFrom = 0;
  private pieceEnd = 0;
  /** Bytes a pending header decision needs, from the block start (0 when none is pending). */
  private need = 0;

  /**
   * `block` holds the stream's bytes from the current block's start. Returns the length of the
   * block to end now, or 0 while no cut falls within those bytes (or more are needed to decide).
   * `eof`: no more bytes will come (a header cut short is then not tar).
   */
  cut(block: Uint8Array, eof = false): number {
    const end = this.start + block.length;
    for (;;) {
      const fixed = Math.min(this.start + HARD, this.nextPiece());
      if (fixed <= this.header) {
        if (fixed > end) return 0;
        return this.take(fixed);
      }
      const h = this.header;
      const at = h - this.start;
      if (h + RECORD > end) {
        if (!eof) return (this.need = at + RECORD), 0;
        this.header = Infinity;
        continue;
      }
      const rec = block.subarray(at, at + RECORD);
      const parsed = parseHeader(rec);
      if (!parsed) {
        this.header = Infinity;
        continue;
      }
      const { size, kind } = parsed;
      let ext: Uint8Array | undefined;
      if (kind === Extension && size <= MAX_EXT) {
        if (h + RECORD + size > end) {
          if (!eof) return (this.need = at + RECORD + size), 0;
          this.header = Infinity;
          continue;
        }
        ext = block.subarray(at + RECORD, at + RECORD + size);
      }
      this.need = 0;
      const since = h - this.start;
      const big = kind === Plain && size >= BIG;
      let cut = false;
      if (since > 0 && !this.continued) {
        if (big) cut = since >= MIN;
        else if (since >= MIN) {
          const mask = since < 1 * MiB ? 63 : since < 2 * MiB ? 7 : 0;
          cut = (nameHash(rec, ext) & mask) === 0;
        }
      }
      this.header = h + RECORD + roundUp(size);
      this.continued = kind === Extension;
      if (big) {
        this.pieceFrom = h + RECORD;
        this.pieceEnd = h + RECORD + size;
      }
      if (cut) return this.take(h);
    }
  }

  /**
   * How many bytes may be added to a block of `length` bytes before `cut` must look again: up to
   * the next fixed cut or through the next header decision. Reading no further than this keeps a
   * cut from falling inside a read (the bytes after it would have to be moved).
   */
  room(length: number): number {
    const end = this.start + length;
    const fixed = Math.min(this.start + HARD, this.nextPiece());
    const stop = fixed <= this.header ? fixed : Math.max(this.header + RECORD, this.start + this.need);
    return Math.max(1, stop - end);
  }

  private nextPiece(): number {
    if (this.pieceEnd <= this.start) return Infinity;
    const k = Math.floor((this.start - this.pieceFrom) / PIECE) + 1;
    const p = this.pieceFrom + k * PIECE;
    return p < this.pieceEnd ? p : Infinity;
  }

  private take(at: number): number {
    const n = at - this.start;
    this.start = at;
    this.need = 0;
    return n;
  }
}

function roundUp(n: number): number {
  return Math.ceil(n / RECORD) * RECORD;
}

/** Size and kind of a header record; an all-zero record (end of archive) is an empty entry; undefined when not tar. */
function parseHeader(rec: Uint8Array): { size: number; kind: Kind } | undefined {
  // The checksum field counts as eight spaces; a record whose bytes all sum to zero is all zeros.
  let sum = 0;
  for (let i = 0; i < 148; i++) sum += rec[i]!;
  for (let i = 156; i < RECORD; i++) sum += rec[i]!;
  let field = 0;
  for (let i = 148; i < 156; i++) field += rec[i]!;
  if (sum + field === 0) return { size: 0, kind: Plain };
  if (readOctal(rec, 148, 8) !== sum + 8 * 0x20) return undefined;
  const size = readSize(rec);
  if (size === undefined) return undefined;
  const type = rec[156];
  // 'x' PAX, 'L' and 'K' GNU long name and link
  const kind = type === 0x78 || type === 0x4c || type === 0x4b ? Extension : Plain;
  return { size, kind };
}

function readOctal(rec: Uint8Array, off: number, len: number): number | undefined {
  let i = off;
  const end = off + len;
  while (i < end && rec[i] === 0x20) i++;
  let n = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = rec[i]!;
    if (c === 0 || c === 0x20) break;
    if (c < 0x30 || c > 0x37) return undefined;
    n = n * 8 + (c - 0x30);
    digits++;
  }
  return digits === 0 ? undefined : n;
}

/** The size field: octal, or GNU base-256 for sizes that need more than 11 octal digits. */
function readSize(rec: Uint8Array): number | undefined {
  if (rec[124]! & 0x80) {
    let n = 0;
    for (let i = 125; i < 136; i++) n = n * 256 + rec[i]!;
    return n <= Number.MAX_SAFE_INTEGER ? n : undefined;
  }
  const zeroSize = rec.subarray(124, 136).every((b) => b === 0);
  return zeroSize ? 0 : readOctal(rec, 124, 12);
}

/** FNV-1a over the name and prefix fields and any extension data, then mixed (murmur3's finaliser). */
function nameHash(rec: Uint8Array, ext: Uint8Array | undefined): number {
  let h = 0x811c9dc5;
  const add = (from: number, to: number, bytes: Uint8Array) => {
    for (let i = from; i < to; i++) {
      const b = bytes[i]!;
      if (b === 0 && bytes === rec) break;
      h = Math.imul(h ^ b, 0x01000193);
    }
  };
  add(0, 100, rec);
  add(345, 500, rec);
  if (ext) add(0, ext.length, ext);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Fills block buffers and ends them where the rule says. The producer either copies bytes in
 * (`write`) or reads straight into `buffer` at `length` up to `room()` bytes, then `commit`s them;
 * both return the blocks that ended. A block handed out is a view of its buffer from offset 0,
 * so the pool can take it back.
 */
export class BlockCutter {
  private readonly cuts = new TarCuts();
  buffer: Buffer;
  length = 0;
  /** Below this length the rule has nothing to decide (TarCuts.room): commits skip it. */
  private check: number;

  constructor(
    private readonly pool?: BlockPool,
    /** Told what each byte is (written, or a file's data) and where blocks end, to name them. */
    private readonly names?: BlockNames,
  ) {
    this.buffer = this.fresh();
    this.check = this.cuts.room(0);
  }

  room(): number {
    return Math.min(this.check - this.length, this.buffer.length - this.length);
  }

  /** `n` bytes read into `buffer` at `length`: data of the names' current source. */
  commit(n: number): Buffer[] {
    if (n > 0) this.names?.data(this.length, n);
    return this.advance(n);
  }

  private advance(n: number): Buffer[] {
    this.length += n;
    if (this.length < this.check) return NONE;
    const out: Buffer[] = [];
    for (;;) {
      const c = this.cuts.cut(this.buffer.subarray(0, this.length));
      if (c === 0) break;
      out.push(this.split(c));
    }
    this.check = this.length + this.cuts.room(this.length);
    return out;
  }

  write(bytes: Uint8Array): Buffer[] {
    let out = NONE;
    let off = 0;
    while (off < bytes.byteLength) {
      const n = Math.min(this.room(), bytes.byteLength - off);
      this.buffer.set(bytes.subarray(off, off + n), this.length);
      if (n > 0) this.names?.literal(this.length);
      off += n;
      const done = this.advance(n);
      if (done.length > 0) out = out === NONE ? done : out.concat(done);
    }
    return out;
  }

  /** The blocks left once the stream has ended. */
  end(): Buffer[] {
    const out: Buffer[] = [];
    for (;;) {
      const c = this.cuts.cut(this.buffer.subarray(0, this.length), true);
      if (c === 0) break;
      out.push(this.split(c));
    }
    if (this.length > 0) {
      const last = this.buffer.subarray(0, this.length);
      this.names?.cut(last, this.length);
      out.push(last);
    }
    this.length = 0;
    return out;
  }

  private split(c: number): Buffer {
    const full = this.buffer;
    const block = full.subarray(0, c);
    this.names?.cut(block, this.length);
    const rest = this.length - c;
    this.buffer = this.fresh();
    // At most a header's look-ahead, or the tail of a write past a cut.
    if (rest > 0) full.copy(this.buffer, 0, c, this.length);
    this.length = rest;
    return block;
  }

  private fresh(): Buffer {
    return this.pool ? this.pool.take() : Buffer.allocUnsafeSlow(BLOCK_CAPACITY);
  }
}

const NONE: Buffer[] = [];

/** A byte stream cut into blocks by the rule (for input that was not written by tar.ts). */
export async function* cutBlocks(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<Buffer> {
  const cutter = new BlockCutter();
  for await (const chunk of source) yield* cutter.write(chunk);
  yield* cutter.end();
}
