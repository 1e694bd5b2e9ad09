/**
 * Work counters (bytes tarred, gzipped, inflated, uploaded...). With KOCACHE_TRACE set, the CLI
 * prints them as one `kocache-trace: {...}` JSON line on stderr at exit, so tests and users can see
 * what a command really did: a cache hit must show no tar and no gzip bytes at all.
 */
// Kept on a global symbol so that the launcher (dist/bin/kocache.cjs, not part of the bundle) can
// count what it did too: whether V8 took the code cache.
const TRACE = Symbol.for('kocache.trace');
const counters: Map<string, number> = ((globalThis as Record<symbol, unknown>)[TRACE] as Map<string, number> | undefined) ?? new Map();
(globalThis as Record<symbol, unknown>)[TRACE] = counters;

export function traceAdd(name: string, n: number): void {
  counters.set(name, (counters.get(name) ?? 0) + n);
}

export function traceSnapshot(): Record<string, number> {
  return Object.fromEntries([...counters.entries()].sort(([a], [b]) => (a < b ? -1 : 1)));
}

export function traceEnabled(env = process.env): boolean {
  return Boolean(env.KOCACHE_TRACE);
}
