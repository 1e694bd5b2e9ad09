import { blockMapKey, recentLayersKey } from '../cache/keys.js';
import type { BlobInfo, BlobRanges, CacheStore } from '../cache/store.js';
import type { Digest } from '../oci/digest.js';
import { traceAdd } from '../util/trace.js';
import { GZIP_HEADER, rangeCheck, type BlockSource, type ReusedBlock, type WrittenBlock } from './gzip.js';

/**
 * Block maps: for each compressed layer, the key, compressed size and the CRC-32s of the input and
 * of the compressed bytes of each of its deflate blocks (gzip.ts), in order, so a later layer can copy a block it shares with this one
 * from this layer's blob instead of deflating it. The copy is the same bytes deflate would give
 * (the key says so), so an incremental layer is byte for byte a cold one.
 *
 * A map is an index record beside the layer (keys.ts, blockMapKey), about 100 bytes a block; none
 * is kept where it would take more than 1% of the layer's size. Which maps a new layer reads: those
 * of the last RECENT layers of its lineage (the same namespace and destination).
 */

/**
 * Version of the map's encoding (2: block names beside the keys; 3: and the CRC-32 of a named
 * block's dictionary). Maps of another version are not read.
 */
const MAP_FORMAT = 3;
const KEY = 32;
/**
 * key, name (zeros: none), compressed size, CRC-32 of the input, CRC-32 of the compressed bytes,
 * CRC-32 of the dictionary (u32s)
 */
const ENTRY = KEY + KEY + 4 + 4 + 4 + 4;
const NO_NAME = Buffer.alloc(KEY);
/** Layers of one lineage whose blocks a new one may copy, unless the caller says otherwise. */
const RECENT = 4;
/** Bound on what a record may list, whatever the caller asks. */
const MAX_RECENT = 32;
/**
 * Compressed bytes read from a source layer at once (whole blocks from the one asked for, until
 * at least this much): the blocks a build copies mostly follow one another there. Larger
 * stretches cost more in page faults than they saved (docs/compression.md).
 */
const READ_AHEAD = 1 << 20;
/** A map's size at most this share of its layer's. */
const MAX_OVERHEAD = 0.01;
/** Index line around the metadata: key, integrity, time, size, the line's own hash. */
const RECORD_OVERHEAD = 300;

interface MapRecord {
  v: number;
  /** blockKeySpec of the layer: blocks made another way never match, so their maps are skipped. */
  spec: string;
  /** The entries, base64. */
  blocks: string;
}

interface RecentRecord {
  layers: Digest[];
}

interface Located {
  key: Buffer;
  digest: Digest;
  /** Its place among its layer's blocks. */
  index: number;
  offset: number;
  size: number;
  crc: number;
  check: number;
  dict: number;
}

// One update at a time per lineage in this process: a publish builds an image's layers at once.
const updating = new Map<string, Promise<void>>();

/** Blocks a new layer may copy (gzip's `reuse`), and the map of the one being written (`onBlock`). */
export class LayerBlocks implements BlockSource {
  private readonly index = new Map<string, Located>();
  private readonly names = new Map<string, Located>();
  private readonly written: WrittenBlock[] = [];
  private readonly bad = new Set<Digest>();
  /** Each source layer's blocks in order. */
  private readonly layers = new Map<Digest, Located[]>();
  /** Each source layer opened once for all its ranges. */
  private readonly opened = new Map<Digest, Promise<BlobRanges | undefined>>();
  /** The last stretch read from a source layer, covering the blocks after the one asked for. */
  private ahead: { digest: Digest; offset: number; length: number; bytes: Promise<Buffer | undefined> } | undefined;

  private constructor(
    private readonly cache: CacheStore,
    private readonly lineage: string,
    private readonly spec: string,
    private readonly warn: ((m: string) => void) | undefined,
    private readonly recent: number,
  ) {}

  get size(): number {
    return this.index.size;
  }

  /** How many of the blocks known have a name. */
  get named(): number {
    return this.names.size;
  }

  /** The maps of the lineage's recent layers. A map that cannot be read is passed over. */
  static async open(
    cache: CacheStore,
    lineage: string,
    spec: string,
    o: { warn?: ((m: string) => void) | undefined; recent?: number } = {},
  ): Promise<LayerBlocks> {
    const recentCount = Math.min(MAX_RECENT, Math.max(1, o.recent ?? RECENT));
    const self = new LayerBlocks(cache, lineage, spec, o.warn, recentCount);
    const recent = await cache.getRecord<RecentRecord>(recentLayersKey(lineage));
    for (const digest of validDigests(recent?.metadata.layers).slice(0, recentCount)) {
      const rec = await cache.getRecord<MapRecord>(blockMapKey(digest));
      if (!rec || rec.digest !== digest) continue;
      const entries = decodeMap(rec.metadata, spec);
      if (!entries) continue;
      let offset = GZIP_HEADER.length;
      const order: Located[] = [];
      for (const e of entries) {
        const k = e.key.toString('hex');
        const at = { key: e.key, digest, index: order.length, offset, size: e.size, crc: e.crc, check: e.check, dict: e.dict };
        order.push(at);
        // Newest layer first: its copy of a block wins.
        if (!self.index.has(k)) self.index.set(k, at);
        if (e.name) {
          const n = e.name.toString('hex');
          if (!self.names.has(n)) self.names.set(n, at);
        }
        offset += e.size;
      }
      self.layers.set(digest, order);
    }
    return self;
  }

  /**
   * The compressed bytes of a block with this key from an earlier layer, checked against the map's
   * CRC-32 of them (what gzip itself trusts to find damage); undefined when no layer had it, or its layer is gone or does not match (then the block
   * is deflated, and a corrupt layer is checked whole and dropped).
   */
  find(key: Buffer): Promise<ReusedBlock | undefined> {
    return this.read(this.index.get(key.toString('hex')));
  }

  /** By name (blocknames.ts); the caller checks the input CRC-32 against the block's bytes. */
  findName(name: Buffer): Promise<ReusedBlock | undefined> {
    return this.read(this.names.get(name.toString('hex')));
  }

  private async read(at: Located | undefined): Promise<ReusedBlock | undefined> {
    if (!at || this.bad.has(at.digest)) return undefined;
    const bytes = await this.range(at);
    if (bytes && rangeCheck([bytes]) === at.check) return { bytes, key: at.key, crc: at.crc, check: at.check, dict: at.dict };
    if (this.bad.has(at.digest)) return undefined;
    this.bad.add(at.digest);
    if (!bytes) {
      traceAdd('stitch.missing', 1);
      return undefined;
    }
    traceAdd('stitch.corrupt', 1);
    const state = await this.cache.verifyBlob(at.digest);
    this.warn?.(`cached layer ${at.digest} does not match its block map${state === 'corrupt' ? ' (corrupt: dropped it)' : ''}; compressing those blocks again`);
    return undefined;
  }

  /**
   * A block's compressed bytes, from the stretch last read when it holds them. A stretch ends
   * where a block does, so the block after it starts a new one without reading any byte twice.
   */
  private async range(at: Located): Promise<Buffer | undefined> {
    let a = this.ahead;
    if (!a || a.digest !== at.digest || at.offset < a.offset || at.offset + at.size > a.offset + a.length) {
      const order = this.layers.get(at.digest) ?? [];
      let length = at.size;
      for (let i = at.index + 1; i < order.length && length < READ_AHEAD; i++) length += order[i]!.size;
      let source = this.opened.get(at.digest);
      if (!source) this.opened.set(at.digest, (source = this.cache.blobRanges(at.digest)));
      const offset = at.offset;
      a = this.ahead = { digest: at.digest, offset, length, bytes: source.then((r) => r?.read(offset, length)) };
    }
    const bytes = await a.bytes;
    return bytes?.subarray(at.offset - a.offset, at.offset - a.offset + at.size);
  }

  /** Closes the source layers opened for their blocks (save does too). */
  close(): void {
    for (const source of this.opened.values()) void source.then((r) => r?.close(), () => undefined);
    this.opened.clear();
    this.ahead = undefined;
  }

  /** gzip's onBlock: the new layer's map, in order. */
  readonly onBlock = (b: WrittenBlock): void => {
    this.written.push(b);
  };

  /**
   * Names for the new layer's blocks, in order, worked out once they were written (a cold build
   * learns its files' hashes only as it reads them). Taken only if there is one per block.
   */
  nameWritten(names: readonly (Buffer | undefined)[]): boolean {
    if (names.length !== this.written.length) return false;
    this.written.forEach((b, i) => (b.name ??= names[i]));
    return true;
  }

  /** Records the new layer's map (unless too large a share of it) and makes it its lineage's newest. */
  async save(blob: BlobInfo): Promise<void> {
    this.close();
    const map: MapRecord = { v: MAP_FORMAT, spec: this.spec, blocks: encodeEntries(this.written) };
    const bytes = map.blocks.length + map.spec.length + RECORD_OVERHEAD;
    if (this.written.length === 0 || bytes > blob.size * MAX_OVERHEAD) return;
    const key = blockMapKey(blob.digest);
    const existing = await this.cache.getRecord<MapRecord>(key);
    if (!existing || decodeMap(existing.metadata, this.spec) === undefined) await this.cache.putRecord(key, blob, map);
    const previous = updating.get(this.lineage) ?? Promise.resolve();
    const next = previous.then(() => this.addRecent(blob));
    updating.set(this.lineage, next.catch(() => undefined));
    await next;
  }

  private async addRecent(blob: BlobInfo): Promise<void> {
    const key = recentLayersKey(this.lineage);
    const rec = await this.cache.getRecord<RecentRecord>(key);
    const old = validDigests(rec?.metadata.layers);
    if (old[0] === blob.digest) return;
    const layers = [blob.digest, ...old.filter((d) => d !== blob.digest)].slice(0, this.recent);
    await this.cache.putRecord<RecentRecord>(key, blob, { layers });
  }
}

function validDigests(x: unknown): Digest[] {
  if (!Array.isArray(x)) return [];
  return x.filter((d): d is Digest => typeof d === 'string' && /^sha256:[a-f0-9]{64}$/.test(d)).slice(0, MAX_RECENT);
}

function encodeEntries(blocks: readonly WrittenBlock[]): string {
  const out = Buffer.alloc(blocks.length * ENTRY);
  blocks.forEach((b, i) => {
    const at = i * ENTRY;
    b.key.copy(out, at);
    (b.name ?? NO_NAME).copy(out, at + KEY);
    out.writeUInt32BE(b.size, at + 2 * KEY);
    out.writeUInt32BE(b.crc >>> 0, at + 2 * KEY + 4);
    out.writeUInt32BE(b.check >>> 0, at + 2 * KEY + 8);
    out.writeUInt32BE(b.dict >>> 0, at + 2 * KEY + 12);
  });
  return out.toString('base64');
}

function decodeMap(m: unknown, spec: string): { key: Buffer; name: Buffer | undefined; size: number; crc: number; check: number; dict: number }[] | undefined {
  const rec = m as Partial<MapRecord> | null | undefined;
  if (!rec || rec.v !== MAP_FORMAT || rec.spec !== spec || typeof rec.blocks !== 'string') return undefined;
  const raw = Buffer.from(rec.blocks, 'base64');
  if (raw.length % ENTRY !== 0) return undefined;
  const out = [];
  for (let at = 0; at < raw.length; at += ENTRY) {
    const name = raw.subarray(at + KEY, at + 2 * KEY);
    out.push({
      key: raw.subarray(at, at + KEY),
      name: name.equals(NO_NAME) ? undefined : name,
      size: raw.readUInt32BE(at + 2 * KEY),
      crc: raw.readUInt32BE(at + 2 * KEY + 4),
      check: raw.readUInt32BE(at + 2 * KEY + 8),
      dict: raw.readUInt32BE(at + 2 * KEY + 12),
    });
  }
  return out;
}
