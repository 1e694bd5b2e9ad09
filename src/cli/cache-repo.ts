import type { Argv } from 'yargs';
import { usageError } from '../errors.js';
import { type Reference, formatRepository, parseReference } from '../reference/reference.js';
import type { CacheRepos } from '../regcache/cache.js';

/** The registry-cache flags of build, publish, push and warm. */
export interface CacheRepoArgs {
  'cache-repo'?: string | string[] | undefined;
  'cache-from'?: string | string[] | undefined;
  'cache-to'?: string | string[] | undefined;
  'cache-check'?: boolean | undefined;
}

export function cacheRepoOptions<T>(y: Argv<T>): Argv<T & CacheRepoArgs> {
  return y
    .option('cache-repo', { requiresArg: true, type: 'string', describe: 'REGISTRY/REPO holding shared cache records, read and written (default $KOCACHE_REPO)' })
    .option('cache-from', { requiresArg: true, type: 'string', describe: 'REGISTRY/REPO of cache records to read only, repeatable, asked in order (pull requests)' })
    .option('cache-to', { requiresArg: true, type: 'string', describe: 'REGISTRY/REPO to write cache records to only' })
    .option('cache-check', { type: 'boolean', default: false, describe: 'Rebuild what the registry cache answers and fail if the digest differs' }) as Argv<T & CacheRepoArgs>;
}

function many(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : (Array.isArray(v) ? v : [v]).map(String);
}

/** A cache repository: a repository name, no tag or digest (records have their own tags). */
export function parseCacheRepo(s: string, flag: string): Reference {
  const at = s.includes('@');
  const ref = parseReference(s);
  const tagged = ref.tag !== undefined && !(ref.tag === 'latest' && !/:latest$/.test(s));
  if (at || tagged) throw usageError(`--${flag} ${s}: name a repository (REGISTRY/REPO), without a tag or digest`);
  return { registry: ref.registry, repository: ref.repository };
}

/** The repositories the flags and KOCACHE_REPO name, or undefined when the registry cache is off. */
export function cacheReposFrom(args: CacheRepoArgs, env = process.env): CacheRepos | undefined {
  const repoFlag = many(args['cache-repo']);
  const repoText = repoFlag[0] ?? (env.KOCACHE_REPO ? env.KOCACHE_REPO : undefined);
  const repo = repoText === undefined ? undefined : parseCacheRepo(repoText, repoFlag[0] ? 'cache-repo' : 'cache-repo (KOCACHE_REPO)');
  const from = many(args['cache-from']).map((s) => parseCacheRepo(s, 'cache-from'));
  const to = many(args['cache-to']).map((s) => parseCacheRepo(s, 'cache-to'));
  const check = Boolean(args['cache-check']);
  if (!repo && from.length === 0 && to.length === 0) {
    if (check) throw usageError('--cache-check needs a registry cache to check: --cache-repo, --cache-from or KOCACHE_REPO');
    return undefined;
  }
  const unique = (list: Reference[]) => [...new Map(list.map((r) => [formatRepository(r), r])).values()];
  return { read: unique([...(repo ? [repo] : []), ...from]), write: unique([...(repo ? [repo] : []), ...to]), check };
}
