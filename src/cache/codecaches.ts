import { readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { errnoCode } from '../errors.js';

/** The folder, in the cache folder, where the launcher keeps the code caches V8 makes at run time. */
export const CODE_CACHE_DIR = 'node-compile-cache';

/** `cli.cjs.v8-<V8 version>-<bundle size>-<bundle mtime>.{hit,first}.codecache` (src/cli/startup/launch.cts). */
const RUN_TIME_CACHE = /^cli\.cjs\.v8-.+-(\d+-\d+)\.(?:hit|first)\.codecache$/;

/**
 * The bundle's part of its run-time code caches' names (size and whole-ms mtime, as the launcher
 * names them), or undefined when kocache does not run from its bundle (tests, the library).
 */
export function bundleStamp(bundle: string): string | undefined {
  try {
    const st = statSync(bundle);
    return st.isFile() ? `${st.size}-${Math.trunc(st.mtimeMs)}` : undefined;
  } catch {
    return undefined;
  }
}

/** The bundle beside the launcher kocache was started by, if that is how it was started. */
export function runningBundle(argv1: string | undefined = process.argv[1]): string | undefined {
  if (!argv1 || !argv1.endsWith('.cjs')) return undefined;
  return join(dirname(argv1), 'cli.cjs');
}

export type CodeCacheVerdict = 'current' | 'other-bundle' | 'node-folder' | 'temp' | 'unknown';

/**
 * What an entry of the code cache folder is to the running kocache. Folders are Node's own
 * compile caches (module.enableCompileCache), which kocache versions before the run-time caches
 * kept there; nothing reads them now.
 */
export function judgeCodeCacheEntry(name: string, isDir: boolean, stamp: string | undefined): CodeCacheVerdict {
  if (isDir) return 'node-folder';
  if (name.endsWith('.tmp')) return 'temp';
  const m = RUN_TIME_CACHE.exec(name);
  if (!m) return 'unknown';
  if (stamp === undefined) return 'current';
  return m[1] === stamp ? 'current' : 'other-bundle';
}

/** Names in the folder with whether each is a folder; none when it is missing or unreadable. */
export function listCodeCacheDir(dir: string): { name: string; isDir: boolean }[] {
  try {
    return readdirSync(dir, { withFileTypes: true }).map((d) => ({ name: d.name, isDir: d.isDirectory() }));
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EACCES' || code === 'EPERM') return [];
    throw err;
  }
}
