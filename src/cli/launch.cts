#!/usr/bin/env node
// The `kocache` program, started by dist/bin/kocache (src/cli/kocache.sh). CommonJS on purpose: it runs before Node's ESM loader has touched libuv's
// thread pool, which is created on first use with UV_THREADPOOL_SIZE threads (4 by default) and
// never resized. Compression runs on that pool (src/compress/gzip.ts), so with the default a
// 16-core machine would gzip on 4. Set from an ES module, the variable comes too late (measured:
// the pool already had its 4 threads). A value the user set is kept.
import { availableParallelism } from 'node:os';
import { setFlagsFromString } from 'node:v8';

/** Threads for libuv's pool: a block per core in flight plus one queued, and room for file I/O. */
export function threadPoolSize(cores: number): number {
  return Math.min(1024, Math.max(4, cores + 2));
}

if (require.main === module) {
  process.env['UV_THREADPOOL_SIZE'] ??= String(threadPoolSize(availableParallelism()));
  // The shell launcher (kocache.sh) kept NODE_EXTRA_CA_CERTS from Node's start-up; programs
  // kocache runs (credential helpers) still get it. src/remote/extra-ca.ts loads it when needed.
  const deferredCa = process.env['KOCACHE_DEFERRED_CA_CERTS'];
  if (deferredCa) process.env['NODE_EXTRA_CA_CERTS'] ??= deferredCa;
  // undici parses HTTP with llhttp compiled to WebAssembly. V8 first compiles it with its fast
  // baseline compiler, then re-compiles hot functions in the background, and a process does not
  // exit until those background jobs finish: 70-90 ms at the end of every publish, push and warm
  // here, for parsing a few dozen small responses. Baseline code is what a short run uses anyway.
  setFlagsFromString('--liftoff-only');
  void import('./main.js');
}
