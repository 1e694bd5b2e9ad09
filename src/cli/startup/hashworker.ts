import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { lastingCacheDir } from '../../cache/location.js';
import { prescoutTree, prestartHashWorker } from '../../layer/hashpool.js';
import { parseLayerSpecText } from '../../layer/source.js';
import { hasAnyStamps } from '../../layer/statcache.js';

const CACHE_FLAGS = ['--cache-from', '--cache-repo'];
const LAUNCHED = Symbol.for('kocache.hashWorker');

/**
 * A fresh runner with a registry cache hashes its whole tree for the key before anything else, on
 * two threads when the tree is big (src/layer/build.ts), and the hashing worker takes tens of ms
 * to start. Started here, before the command's modules are set up and its arguments parsed, that
 * start-up runs beside the process's own (docs/performance.md). Judged from the raw command line
 * (`argv` as normaliseArgv gives it, the command first): a wrong guess costs the other core the
 * worker's start-up, no more (an unused worker ends on its own and never holds the process open).
 */
export function prestartForFreshRunner(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): void {
  // The launcher's thread, started on a first look at the command line (launch.cts).
  const global = globalThis as Record<symbol, unknown>;
  const launched = global[LAUNCHED] as Worker | undefined;
  delete global[LAUNCHED];
  if (!looksLikeFreshRunner(argv, env)) {
    void launched?.terminate();
    return;
  }
  prestartHashWorker(launched);
  // The one folder the command line names as a layer: the worker lists it and starts hashing it
  // at once (the layer builder takes that up when the layer's source is this folder).
  const tree = namedTree(argv);
  if (tree !== undefined) void prescoutTree(tree);
}

/**
 * The folder named as `SRC:/DEST` on the command line, when exactly one is: a guess made before
 * yargs has parsed anything (a wrong one costs the other core some work, no more). Sources from a
 * project file, several layers, or a SRC with a platform's {os} {arch} are not guessed.
 */
export function namedTree(argv: readonly string[], cwd = process.cwd()): string | undefined {
  let found: string | undefined;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if (a.startsWith('-') || !a.includes(':/') || a.includes('{')) continue;
    let dir: string;
    try {
      dir = resolve(cwd, parseLayerSpecText(a).src);
      if (!statSync(dir).isDirectory()) continue;
    } catch {
      continue;
    }
    if (found !== undefined && found !== dir) return undefined;
    found = dir;
  }
  return found;
}

/** Whether the command will hash a whole tree for a registry cache's key, as far as `argv` tells. */
export function looksLikeFreshRunner(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): boolean {
  if (argv[0] !== 'publish' && argv[0] !== 'build') return false;
  let cacheRepo = Boolean(env['KOCACHE_REPO']);
  let cacheDir: string | undefined;
  let noCache = false;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    const [flag, value] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, argv[i + 1]];
    // A build id names the layer: no tree is hashed for the key.
    if (flag === '--build-id') return false;
    if (CACHE_FLAGS.includes(flag)) cacheRepo = true;
    else if (flag === '--cache-dir') cacheDir = value;
    else if (flag === '--no-cache') noCache = true;
  }
  if (!cacheRepo) return false;
  const dir = lastingCacheDir({ cacheDir, noCache }, env);
  return dir === undefined || !hasAnyStamps(dir);
}
