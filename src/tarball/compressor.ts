import { diffIdKey, LAYER_NAMESPACE } from '../cache/keys.js';
import type { CacheStore } from '../cache/store.js';
import { tap } from '../compress/chunks.js';
import { gzipStream, type GzipOptions } from '../compress/gzip.js';
import { blockKeySpec, compressionSpec } from '../compress/options.js';
import { zstdStream } from '../compress/zstd.js';
import { LayerBlocks } from '../compress/stitch.js';
import { type DiffIdRecord, isDiffIdRecord } from '../layer/build.js';
import type { Descriptor } from '../oci/descriptor.js';
import type { Digest } from '../oci/digest.js';
import { MediaType } from '../oci/mediatypes.js';
import { Limiter } from '../util/limit.js';

/**
 * The compression label for gzip bytes that came in an archive as they were. They are not what
 * kocache's own gzip settings would make, so they get their own key; a later plain copy of the
 * same layer may still reuse them rather than compress again.
 */
export const ARCHIVE_GZIP = 'gzip-archive';

/** Archive layers whose blocks a newly compressed one may copy (an image's layers, about). */
const ARCHIVE_RECENT = 16;

/** How far the compression of one layer is: tar bytes taken in, of the tar's size. */
export interface CompressProgress {
  diffid: Digest;
  done: number;
  size: number;
}

/** An uncompressed layer tar in the store. */
export interface LayerTar {
  diffid: Digest;
  size: number;
}

interface Made {
  descriptor: Descriptor;
  /** Compressed by this process: its diffid record and block map are still to be written. */
  fresh: boolean;
  blocks?: LayerBlocks;
}

/**
 * Gives each plain layer tar its compressed blob (gzip, or zstd when the settings say so), at most
 * once per diffid and setting ever. `start` may run while the archive is still being read (a large
 * plain tar entry is almost surely a layer, and reading an archive leaves a core idle), but records
 * are only written by `finish`, after the archive was checked: a bad archive leaves unreferenced
 * blobs for gc, never records.
 */
export class LayerCompressor {
  private readonly made = new Map<Digest, Promise<Made>>();
  private readonly slots: Limiter;

  constructor(private readonly opts: {
    cache: CacheStore;
    gzip: GzipOptions;
    jobs: number;
    warn?: ((m: string) => void) | undefined;
    /** Tar bytes of a layer fed to the compressor so far, of its size (progress lines). */
    onCompress?: ((e: CompressProgress) => void) | undefined;
  }) {
    this.slots = new Limiter(Math.max(1, opts.jobs));
  }

  start(tar: LayerTar): Promise<Made> {
    let p = this.made.get(tar.diffid);
    if (!p) {
      p = this.slots.run(() => this.make(tar));
      // Awaited by finish; a speculative start that nobody finishes must not be an unhandled rejection.
      p.catch(() => undefined);
      this.made.set(tar.diffid, p);
    }
    return p;
  }

  private closed = false;

  /**
   * Ends the compressor: speculative starts still waiting for a slot are dropped, and this resolves
   * once nothing started here is still running (failed or not), so what they wrote can be cleaned.
   */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.made.values()]);
  }

  async finish(tar: LayerTar): Promise<Descriptor> {
    const m = await this.start(tar);
    if (m.fresh) {
      const compression = compressionSpec(this.opts.gzip);
      const record: DiffIdRecord = { diffid: tar.diffid, compression, descriptor: m.descriptor };
      await this.opts.cache.putRecord(diffIdKey(LAYER_NAMESPACE, tar.diffid, compression), m.descriptor, record);
      await m.blocks?.save({ digest: m.descriptor.digest, size: m.descriptor.size });
    }
    return m.descriptor;
  }

  /**
   * A cached blob for this diffid (made by kocache's settings, or kept from an archive that had it
   * gzipped), checked before reuse (CacheStore.useBlob); else the stored tar compressed now.
   */
  private async make(tar: LayerTar): Promise<Made> {
    if (this.closed) throw new Error('compressor closed');
    const { cache } = this.opts;
    const zstd = this.opts.gzip.algorithm === 'zstd';
    const mediaType = zstd ? MediaType.OciLayerZstd : MediaType.OciLayerGzip;
    // gzip bytes kept from an archive serve gzip settings only.
    for (const compression of zstd ? [compressionSpec(this.opts.gzip)] : [compressionSpec(this.opts.gzip), ARCHIVE_GZIP]) {
      const rec = await cache.getRecord(diffIdKey(LAYER_NAMESPACE, tar.diffid, compression), isDiffIdRecord);
      if (!rec) continue;
      const d = rec.metadata.descriptor;
      const state = await cache.useBlob(d.digest, d.size);
      if (state === 'ok') {
        return { descriptor: { mediaType, digest: d.digest, size: d.size }, fresh: false };
      }
      if (state === 'corrupt') this.opts.warn?.(`cached layer ${d.digest} was corrupt; dropped it and compressing again`);
    }
    const report = this.opts.onCompress;
    let done = 0;
    report?.({ diffid: tar.diffid, done, size: tar.size });
    const source = report ? tap(cache.readBlob(tar.diffid, tar.size), (c) => report({ diffid: tar.diffid, done: (done += c.length), size: tar.size })) : cache.readBlob(tar.diffid, tar.size);
    if (zstd) {
      // Frames compressed in parallel; no block reuse (that is gzip's stitching).
      const blob = await cache.writeBlob(zstdStream(source, this.opts.gzip));
      return { descriptor: { mediaType, digest: blob.digest, size: blob.size }, fresh: true };
    }
    // Archive layers have no lineage of their own: the last ARCHIVE_RECENT compressed lend their blocks.
    const blocks = await LayerBlocks.open(cache, LAYER_NAMESPACE, blockKeySpec(this.opts.gzip), { warn: this.opts.warn, recent: ARCHIVE_RECENT });
    let blob;
    try {
      blob = await cache.writeBlob(gzipStream(source, this.opts.gzip, { reuse: blocks, onBlock: blocks.onBlock }));
    } finally {
      blocks.close();
    }
    // Its block map is a record too: saved by finish, once the archive is known to use the layer.
    return { descriptor: { mediaType: MediaType.OciLayerGzip, digest: blob.digest, size: blob.size }, fresh: true, blocks };
  }
}
