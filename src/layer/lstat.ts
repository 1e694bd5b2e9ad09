import { lstatSync } from 'node:fs';

/** The fields of an lstat that a walk keeps. Times are ms with a fraction, as in fs.Stats. */
export interface FileStat {
  mode: number;
  size: number;
  ino: number;
  dev: number;
  mtimeMs: number;
  ctimeMs: number;
}

export type Lstat = (path: string) => FileStat;

/** lstat through the public API. */
export const statsLstat: Lstat = (path) => {
  const st = lstatSync(path);
  return { mode: st.mode, size: st.size, ino: st.ino, dev: st.dev, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
};

interface FsBinding {
  lstat(path: string, bigint: false, req: undefined, throwIfNoEntry: true): Float64Array;
}

// How Node 20.10+ (and 21+) calls its binding in lstatSync: errors thrown from C++, with the same
// code, syscall, path and message as lstatSync's. Older Node passed a context object in that place.
const NODE_CALL = /binding\.lstat\(\s*pathModule\.toNamespacedPath\(path\),\s*options\.bigint,\s*undefined,\s*options\.throwIfNoEntry,?\s*\)/;

/**
 * lstat through Node's file-system binding, the call fs.lstatSync makes itself, keeping the numbers
 * and skipping what lstatSync builds around them: Node 20's fs.Stats makes four Date objects per
 * call, eagerly, which was ~5 ms of a cache hit's walk of 1,346 entries, and garbage to collect.
 * Undefined where that binding is not there to use in exactly this way: see `chooseLstat`.
 */
export function bindingLstat(): Lstat | undefined {
  const proc = process as unknown as { binding?: (name: string) => FsBinding; permission?: unknown };
  if (typeof proc.binding !== 'function') return undefined;
  // Under --pending-deprecation (or NODE_PENDING_DEPRECATION=1) Node wraps process.binding in a
  // function that warns (DEP0111) and names it so: then stay on the public API.
  if (proc.binding.name !== 'binding') return undefined;
  // The permission model checks access in lstatSync, not in the binding: never go around it. (Node
  // 20 also refuses process.binding itself there; this does not rely on that.)
  if (proc.permission) return undefined;
  if (!NODE_CALL.test(lstatSync.toString())) return undefined;
  let binding: FsBinding;
  try {
    binding = proc.binding('fs');
  } catch {
    return undefined;
  }
  if (typeof binding?.lstat !== 'function') return undefined;
  // The array's layout is Node's (lib/internal/fs/utils.js, getStatsFromBinding): dev, mode,
  // nlink, uid, gid, rdev, blksize, ino, size, blocks, then seconds and nanoseconds of atime,
  // mtime, ctime, birthtime; ms computed as Node does, so the doubles are the same bits.
  return (path) => {
    // lstatSync refuses a NUL in a path; the binding would stop reading the path there.
    if (path.includes('\0')) return statsLstat(path);
    const s = binding.lstat(path, false, undefined, true);
    return {
      mode: s[1]!,
      size: s[8]!,
      ino: s[7]!,
      dev: s[0]!,
      mtimeMs: s[12]! * 1000 + s[13]! / 1e6,
      ctimeMs: s[14]! * 1000 + s[15]! / 1e6,
    };
  };
}

const FIELDS = ['mode', 'size', 'ino', 'dev', 'mtimeMs', 'ctimeMs'] as const satisfies readonly (keyof FileStat)[];

// Decided once per process, by the first probe that could be read.
let chosen: Lstat | undefined;

/**
 * The binding's lstat if, on `probe` (an existing path), it gives exactly what fs.lstatSync gives;
 * else the public API. Either way the result is the same: the choice is only one of speed.
 */
export function chooseLstat(probe: string): Lstat {
  if (chosen) return chosen;
  const fast = bindingLstat();
  if (!fast) return (chosen = statsLstat);
  let expected: FileStat;
  try {
    expected = statsLstat(probe);
  } catch {
    return statsLstat; // nothing to compare with: decide at the next walk
  }
  try {
    const got = fast(probe);
    chosen = FIELDS.every((f) => got[f] === expected[f]) ? fast : statsLstat;
  } catch {
    chosen = statsLstat;
  }
  return chosen;
}
