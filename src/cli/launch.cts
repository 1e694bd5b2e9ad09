#!/usr/bin/env node
// The `kocache` executable. CommonJS on purpose: it runs before Node's ESM loader has touched libuv's
// thread pool, which is created on first use with UV_THREADPOOL_SIZE threads (4 by default) and
// never resized. Compression runs on that pool (src/compress/gzip.ts), so with the default a
// 16-core machine would gzip on 4. Set from an ES module, the variable comes too late (measured:
// the pool already had its 4 threads). A value the user set is kept.
import { availableParallelism } from 'node:os';

/** Threads for libuv's pool: a block per core in flight plus one queued, and room for file I/O. */
export function threadPoolSize(cores: number): number {
  return Math.min(1024, Math.max(4, cores + 2));
}

if (require.main === module) {
  process.env['UV_THREADPOOL_SIZE'] ??= String(threadPoolSize(availableParallelism()));
  void import('./main.js');
}
