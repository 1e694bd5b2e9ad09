import type { CacheStore } from '../cache/store.js';
import { seenKey } from '../cache/keys.js';
import type { Digest } from '../oci/digest.js';

/** How many repositories per blob are remembered; mounts need one, a few cover deleted repos. */
const MAX_REPOSITORIES = 4;

interface SeenMetadata {
  repositories: string[];
}

function isSeenMetadata(m: unknown): m is SeenMetadata {
  return typeof m === 'object' && m !== null && Array.isArray((m as SeenMetadata).repositories);
}

/**
 * Where blobs are known to exist, per registry: go-containerregistry's "blob info cache". Kept in
 * memory for one run and, when a cache is given, in the kocache cache for the next. It is a hint:
 * a stale entry costs one failed mount, which the registry turns into an ordinary upload.
 */
export class BlobLocations {
  private readonly memory = new Map<string, string[]>();
  private readonly writing = new Set<Promise<void>>();

  constructor(private readonly cache?: CacheStore) {}

  /** Repositories on `registry` that held `digest`, most recent first. */
  async repositories(registry: string, digest: Digest): Promise<string[]> {
    const key = seenKey(registry, digest);
    const mem = this.memory.get(key);
    if (mem) return mem;
    if (!this.cache) return [];
    try {
      const rec = await this.cache.getRecord(key, isSeenMetadata);
      const repos = Array.isArray(rec?.metadata?.repositories) ? rec.metadata.repositories.filter((r) => typeof r === 'string') : [];
      this.memory.set(key, repos);
      return repos;
    } catch {
      return [];
    }
  }

  /**
   * Remembers that `repository` holds the blob. The cache write is not waited for here (a push
   * would otherwise hold its image's manifest back for it): `settled()` waits for every one.
   */
  record(registry: string, repository: string, digest: Digest, size: number): void {
    const write = this.write(registry, repository, digest, size);
    this.writing.add(write);
    void write.finally(() => this.writing.delete(write));
  }

  /** Every `record` so far has reached the cache (or failed, which only loses a hint). */
  async settled(): Promise<void> {
    while (this.writing.size > 0) await Promise.all(this.writing);
  }

  private async write(registry: string, repository: string, digest: Digest, size: number): Promise<void> {
    const key = seenKey(registry, digest);
    const before = await this.repositories(registry, digest);
    if (before[0] === repository) return;
    const repos = [repository, ...before.filter((r) => r !== repository)].slice(0, MAX_REPOSITORIES);
    this.memory.set(key, repos);
    if (!this.cache) return;
    try {
      await this.cache.putRecord<SeenMetadata>(key, { digest, size }, { repositories: repos });
    } catch {
      // Losing a hint only costs a later upload; it must not fail the push that earned it.
    }
  }
}
