import { statSync } from 'node:fs';
import type { CacheStore } from '../cache/store.js';
import type { Digest } from '../oci/digest.js';

/**
 * What one import wrote to the content store, so that what the image does not use leaves again
 * before the command ends. The pass stores large entries as they stream by (docker save, skopeo
 * and go-containerregistry all write the metadata naming the layers last, and reading a gzipped
 * archive twice would double the import), so an entry no manifest names is only known after the
 * pass: it is removed then, and everything is removed when the import is refused.
 */
export class ImportWrites {
  private readonly digests = new Set<Digest>();
  private readonly startMs = Date.now();

  constructor(private readonly cache: CacheStore) {}

  /**
   * The store as the import's code sees it: the same store, each blob it writes remembered. A
   * proxy rather than a copy, so whatever else the store is (its folder, its lease) stays one.
   */
  track(): CacheStore {
    const cache = this.cache;
    const digests = this.digests;
    const writeBlob: CacheStore['writeBlob'] = async (source, expect) => {
      const blob = await cache.writeBlob(source, expect);
      digests.add(blob.digest);
      return blob;
    };
    return new Proxy(cache, {
      get(target, prop) {
        if (prop === 'writeBlob') return writeBlob;
        const v: unknown = Reflect.get(target, prop, target);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  }

  /**
   * Removes the blobs this import wrote that are not in `keep` (the finished image's blobs, or
   * nothing when the import was refused). A blob some record names stays (an earlier import or
   * build uses it), and so does one whose file is older than this import: cacache keeps the file
   * it finds at a digest, so such a blob was someone else's and is only touched by this write.
   */
  async removeExcept(keep: ReadonlySet<Digest>): Promise<number> {
    const candidates = [...this.digests].filter((d) => !keep.has(d));
    if (candidates.length === 0) return 0;
    const named = new Set((await this.cache.listRecords()).map((r) => r.digest));
    let removed = 0;
    for (const d of candidates) {
      if (named.has(d)) continue;
      const st = statSync(this.cache.blobPath(d), { throwIfNoEntry: false });
      if (!st) continue;
      // birthtime is 0 where the file system does not keep it; the record check above then stands alone.
      if (st.birthtimeMs !== 0 && st.birthtimeMs < this.startMs) continue;
      await this.cache.dropBlob(d);
      removed += st.size;
    }
    return removed;
  }
}
