import { BlockNames, type Hole } from '../compress/blocknames.js';
import { BlockPool } from '../compress/blockpool.js';
import { BLOCK_CAPACITY } from '../compress/cuts.js';
import { gzipBlocks, type GzipOptions, type LazyBlocks } from '../compress/gzip.js';
import { blockKeySpec } from '../compress/options.js';
import { tap } from '../compress/chunks.js';
import { zstdStream } from '../compress/zstd.js';
import { LayerBlocks } from '../compress/stitch.js';
import { localHash, startWorkerHash, type StreamDigest } from '../compress/streamhash.js';
import type { BlobInfo, CacheStore } from '../cache/store.js';
import type { Digest } from '../oci/digest.js';
import { type BlobSink, writeTeed } from '../oci/sink.js';
import { traceAdd } from '../util/trace.js';
import { assertUnchangedFiles, readHole, tarBlocks } from './tar.js';
import type { TarOptions } from './tarspec.js';
import type { SourceEntry } from './walk.js';

/** Layers with at least this much file data hash their diffid off the main thread (docs/compression.md). */
const OFF_THREAD_BYTES = 32 << 20;
/** Files this big are left for the worker to read in an edit (see `unread`; the size measured in docs/compression.md). */
const UNREAD_MIN = 16 << 10;

export interface PackOptions {
  /** Layers of the same lineage (namespace and destination) lend their compressed blocks. */
  lineage: string;
  onBytes?: ((n: number) => void) | undefined;
  onFileHash?: ((e: SourceEntry, sha256: string) => void) | undefined;
  /** A file's sha256 once onFileHash has had it: names the blocks after they are written. */
  hashOf?: ((e: SourceEntry) => string | undefined) | undefined;
  /** Each file's sha256 by entry index where known (the stat cache's): names gzip's blocks. */
  known?: ((index: number) => string | undefined) | undefined;
  warn?: ((m: string) => void) | undefined;
  /** Also gets the blob's bytes as they are written (publish's upload while the layer is built). */
  sink?: BlobSink | undefined;
}

/** A lazy build whose copies by name the worker's reading did not bear out (LazyBlocks.verify). */
class UnreadMismatch extends Error {}

/**
 * The work a cache miss does, in one pass: tar -> sha256 (diffid) -> gzip (copying the blocks an
 * earlier layer of the lineage had) -> sha256 (digest) -> content store, then the layer's block
 * map. A module of its own so a cache hit never loads the tar writer.
 */
export async function packToCache(
  entries: readonly SourceEntry[],
  tarOpts: TarOptions,
  gzip: GzipOptions,
  cache: CacheStore,
  o: PackOptions,
): Promise<Packed> {
  try {
    return await pack(entries, tarOpts, gzip, cache, o, true);
  } catch (err) {
    if (!(err instanceof UnreadMismatch)) throw err;
    // Rare (a stat cache fooled, a file changed during the build, a map that lies): the blob
    // written was dropped (and a sink told so: the blob goes from the store instead); built again
    // reading every file here, which checks each copy itself.
    traceAdd('stitch.unread.again', 1);
    return { ...(await pack(entries, tarOpts, gzip, cache, { ...o, sink: undefined }, false)), doubted: true };
  }
}

export interface Packed {
  blob: BlobInfo;
  diffid: Digest;
  /**
   * A block named by the files' hashes (the stat cache's) was not what its name promised: the
   * layer is right (built from the bytes read), but those hashes, and a fingerprint taken from
   * them, may not be.
   */
  doubted?: boolean | undefined;
}

async function pack(
  entries: readonly SourceEntry[],
  tarOpts: TarOptions,
  gzip: GzipOptions,
  cache: CacheStore,
  o: PackOptions,
  mayLazy: boolean,
): Promise<Packed> {
  let bytes = 0;
  let files = 0;
  for (const e of entries) if (e.type === 'file') (bytes += e.size), files++;
  // A big layer's diffid (and its files' hashes, when asked for) are hashed on a worker thread, on
  // the core the main thread leaves idle.
  const offThread = bytes >= OFF_THREAD_BYTES;
  const filesOffThread = offThread && o.onFileHash !== undefined;
  const zstd = gzip.algorithm === 'zstd';
  const spec = blockKeySpec(gzip);
  // A cold build hashes each file as it reads it, so its blocks cannot be named while they are
  // written: they are named once the hashes are in (BlockNames deferred). The next build, of an
  // edit, then copies them by name (and leaves big files to the worker) as an edit after an edit
  // does. Their keys are hashed all the same: a block whose name changed while its bytes did not
  // (a piece of a big file changed elsewhere, the block after an edited one) is found by key.
  const deferred = !zstd && o.known === undefined && o.onFileHash !== undefined && o.hashOf !== undefined;
  // Started before the block maps are read (which loads cacache): its start-up overlaps that.
  const starting = offThread ? startWorkerHash() : undefined;
  let blocks: LayerBlocks | undefined;
  try {
    blocks = zstd ? undefined : await LayerBlocks.open(cache, o.lineage, spec, { warn: o.warn });
  } catch (err) {
    starting?.close();
    throw err;
  }
  // Blocks found by name need no key; else the worker hashes gzip's block keys as it reads each
  // block, so the main thread skips a second pass.
  const byName = o.known !== undefined && blocks !== undefined && blocks.named > 0;
  // With blocks to copy by name and the worker hashing the diffid, the big files whose hash is
  // known are not read here at all: the worker reads them, and only the blocks that are not
  // copied are filled (LazyBlocks). Small files stay here: opening one costs about as much as
  // reading it, and the worker's other work is the diffid over the whole tar. Nor where files are
  // small on average: the worker then parses every header to find the few it reads, which cost
  // more than their reading saved here (docs/compression.md).
  const lazy = mayLazy && offThread && byName && o.onFileHash === undefined && bytes >= files * UNREAD_MIN;
  const unread = lazy ? (i: number) => entries[i]!.size >= UNREAD_MIN && o.known!(i) !== undefined : undefined;
  const paths = unread && entries.flatMap((e, i) => (e.type !== 'file' ? [] : unread(i) ? [e.rawAbs ?? e.abs] : [null]));
  // In an edit the blob is hashed on the worker too: the main thread then only copies each chunk
  // into shared memory. (A cold build keeps it here: both cores are busy deflating there.)
  const blobOffThread = blocks !== undefined && blocks.size > 0 && !lazy;
  const diffHash = starting ? starting.configure({ files: filesOffThread, keys: zstd || byName ? undefined : spec, paths, blob: blobOffThread }) : localHash();
  let digested: Promise<StreamDigest> | undefined;
  const digest = () => (digested ??= diffHash.digest());
  const keys = new Map<Buffer, Promise<Buffer>>();
  const names = new Map<Buffer, Buffer>();
  const holes = new Map<Buffer, Hole[]>();
  const naming = !zstd && (o.known || deferred)
    ? {
        names: new BlockNames(
          spec,
          (b, k, h) => {
            if (k) names.set(b, k);
            if (h.length > 0) holes.set(b, h);
          },
          deferred,
        ),
        known: o.known ?? (() => undefined),
        unread,
      }
    : undefined;
  const blobHash = diffHash.blob;
  const store = blobHash
    ? (s: AsyncIterable<Uint8Array>) => writeTeed(tap(s, (c) => blobHash.add(c)), o.sink, (t) => cache.writeBlob(t, undefined, () => blobHash.end()))
    : (s: AsyncIterable<Uint8Array>) => writeTeed(s, o.sink, (t) => cache.writeBlob(t));
  const tarred = async (): Promise<Digest> => {
    const d = await digest();
    if (filesOffThread) fileHashes(entries, d.files, o.onFileHash!);
    return `sha256:${d.hex}`;
  };
  try {
    const pool = new BlockPool(BLOCK_CAPACITY, gzip.jobs * 4 + 4, diffHash.shared);
    // A block has two readers, the hash and the compressor: it goes back to the pool after both.
    const readers = new Map<ArrayBufferLike, number>();
    const release = (b: Buffer) => {
      const left = (readers.get(b.buffer) ?? 1) - 1;
      if (left > 0) return void readers.set(b.buffer, left);
      readers.delete(b.buffer);
      pool.give(b);
    };
    const tarBytes = tap(tarBlocks(entries, tarOpts, o.onBytes, filesOffThread ? undefined : o.onFileHash, pool, naming), (c) => {
      readers.set(c.buffer, 2);
      const key = diffHash.add(c, () => release(c));
      if (key) keys.set(c, key);
      traceAdd('tar.out', c.length);
    });
    if (!blocks) {
      // zstd frames compressed in parallel; no block reuse (that is gzip's stitching).
      const blob = await store(zstdStream(tarBytes, gzip, release));
      return { blob, diffid: await tarred() };
    }
    const take = <T>(m: Map<Buffer, T>) => (b: Buffer) => {
      const v = m.get(b);
      m.delete(b);
      return v;
    };
    const holey: LazyBlocks | undefined = lazy
      ? {
          holes: take(holes),
          fill: (h, into, at) => {
            traceAdd('tar.filled', h.length);
            readHole(entries[h.entry]!, h.offset, into, at, h.length);
          },
          verify: async (used) => checkUnread(await digest(), used),
        }
      : undefined;
    let doubted = false;
    const onStale = () => void (doubted = true);
    const blob = await store(gzipBlocks(tarBytes, gzip, { recycle: release, reuse: blocks, onBlock: blocks.onBlock, key: take(keys), name: take(names), lazy: holey, namedLater: deferred, onStale }));
    // The files the worker read, not this thread: checked once it is done with them.
    if (unread) assertUnchangedFiles(entries.filter((e, i) => e.type === 'file' && unread(i)));
    const diffid = await tarred();
    if (deferred && naming) {
      const named = naming.names.resolve((i) => o.hashOf!(entries[i]!));
      if (blocks.nameWritten(named)) traceAdd('stitch.named.after', named.filter(Boolean).length);
    }
    await blocks.save(blob);
    return { blob, diffid, doubted };
  } finally {
    diffHash.close();
    blocks?.close();
  }
}

/** Throws UnreadMismatch unless the worker read what each block's input CRC-32 and its dictionary's say. */
function checkUnread(d: StreamDigest, used: readonly { crc: number; dict: number }[]): void {
  const b = d.blocks;
  if (!b || 'failed' in b) throw new UnreadMismatch(b?.failed ?? 'no block checks from the worker');
  if (b.crcs.length !== used.length) throw new UnreadMismatch(`${b.crcs.length} blocks read, ${used.length} written`);
  used.forEach((u, i) => {
    if (b.crcs[i] !== u.crc >>> 0 || b.dicts[i] !== u.dict >>> 0) throw new UnreadMismatch(`block ${i} is not what its name promised`);
  });
}

/**
 * The worker's file hashes, in tar order, matched to the file entries in the same order. Should
 * the counts or any size not match, none is given: the caller hashes those files itself.
 */
function fileHashes(entries: readonly SourceEntry[], got: StreamDigest['files'], onFileHash: (e: SourceEntry, sha256: string) => void): void {
  const files = entries.filter((e) => e.type === 'file');
  if (!got || got.sizes.length !== files.length || got.hashes.length !== files.length * 64) return;
  if (files.some((e, i) => got.sizes[i] !== e.size)) return;
  files.forEach((e, i) => onFileHash(e, got.hashes.slice(i * 64, i * 64 + 64)));
  traceAdd('tar.files.worker', files.length);
}
