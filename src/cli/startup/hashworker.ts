import { lastingCacheDir } from '../../cache/location.js';
import { prestartHashWorker } from '../../layer/hashpool.js';
import { hasAnyStamps } from '../../layer/statcache.js';

const CACHE_FLAGS = ['--cache-from', '--cache-repo'];

/**
 * A fresh runner with a registry cache hashes its whole tree for the key before anything else, on
 * two threads when the tree is big (src/layer/build.ts), and the hashing worker takes tens of ms
 * to start. Started here, before the command's modules are set up and its arguments parsed, that
 * start-up runs beside the process's own (docs/performance.md). Judged from the raw command line
 * (`argv` as normaliseArgv gives it, the command first): a wrong guess costs the other core the
 * worker's start-up, no more (an unused worker ends on its own and never holds the process open).
 */
export function prestartForFreshRunner(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): void {
  if (looksLikeFreshRunner(argv, env)) prestartHashWorker();
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
