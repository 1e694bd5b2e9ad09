import { acquireLease } from './lease.js';
import { CacheStore, ensureDir } from './store.js';

/** A cache opened for use: the store, held under a lease until `close()` (or process exit). */
export interface OpenCache extends CacheStore {
  /** Releases the lease; the store must not be used afterwards. Safe to call twice. */
  close(): void;
}

export interface OpenCacheOptions {
  /** What the lease file says is using the cache (shown to an operator looking at leases/). */
  purpose?: string;
}

/**
 * Opens (creating it if need be) the cache folder `dir` and takes a lease on it, as every kocache
 * command does, so a concurrent `collectGarbage` spares everything this process writes or uses
 * until it calls `close()` or exits (docs/cache.md, "gc and leases").
 */
export function openCache(dir: string, opts: OpenCacheOptions = {}): OpenCache {
  ensureDir(dir);
  const lease = acquireLease(dir, opts.purpose ?? 'library');
  return Object.assign(new CacheStore(dir), { close: () => lease.release() });
}
