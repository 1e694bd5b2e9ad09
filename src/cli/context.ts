import { statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Argv } from 'yargs';
import { resolveCacheLocation } from '../cache/location.js';
import { openCache } from '../cache/open.js';
import { CacheStore, ensureDir } from '../cache/store.js';
import { DEFAULT_GZIP, type GzipOptions, levelRange } from '../compress/options.js';
import { DEFAULT_ZSTD_LEVEL, zstdUnavailable } from '../compress/zstd.js';
import { errnoCode, usageError } from '../errors.js';
import { MAX_TAR_SECONDS } from '../layer/tarheader.js';
import { DEFAULT_TIMEOUTS, type Timeouts } from '../remote/timeouts.js';
import { trackTempPrefix } from '../util/tmpfile.js';
import { cacheDirError } from './hints.js';
import { Output } from './output.js';

/** Options every command takes. */
export interface GlobalArgs {
  'cache-dir'?: string | undefined;
  cache?: boolean | undefined;
  json?: boolean | undefined;
  quiet?: boolean | undefined;
  /** Text, so that a bad value is shown as typed (yargs turns a number option's `abc` into NaN). */
  jobs?: string | undefined;
  level?: string | undefined;
  compression?: string | undefined;
}

/**
 * Adds the options every command takes. main.ts adds them at the top level too (so they may come
 * before the command word), with the short aliases: yargs carries a top-level alias into every
 * command, and would list one given at both levels twice.
 */
export function globalOptions<T>(y: Argv<T>, opts: { aliases?: boolean } = {}): Argv<T & GlobalArgs> {
  const alias = (a: string) => (opts.aliases === true ? { alias: a } : {});
  return y
    .option('cache-dir', { requiresArg: true, type: 'string', describe: 'Cache folder (used when $KOCACHE is unset; default $XDG_CACHE_HOME/kocache)' })
    .option('cache', { type: 'boolean', default: true, describe: 'Use the cache (--no-cache, or KOCACHE=off, runs with a throwaway one)' })
    .option('json', { type: 'boolean', default: false, describe: 'Machine-readable output on stdout' })
    .option('quiet', { ...alias('q'), type: 'boolean', default: false, describe: 'No progress or info on stderr' })
    .option('jobs', { ...alias('j'), requiresArg: true, type: 'string', describe: 'Parallel compression and transfer jobs (default: cores)' })
    .option('compression', { requiresArg: true, type: 'string', describe: 'Layer compression: gzip (default) or zstd (OCI media type ...tar+zstd; needs Node.js 22.15+); part of the cache key' })
    .option('level', { requiresArg: true, type: 'string', describe: `Compression level of the layers kocache compresses: gzip 1-9 (default ${DEFAULT_GZIP.level}), zstd 1-19 (default ${DEFAULT_ZSTD_LEVEL}); part of the cache key` }) as Argv<T & GlobalArgs>;
}

/** Options of the commands that talk to registries. */
export interface RegistryArgs {
  'connect-timeout'?: string | undefined;
  'idle-timeout'?: string | undefined;
  'registry-timeout'?: string | undefined;
}

const TIMEOUT_FLAGS = [
  ['connect-timeout', 'KOCACHE_CONNECT_TIMEOUT', 'connectMs', 'Seconds to open a connection to a registry (TLS included)'],
  ['idle-timeout', 'KOCACHE_IDLE_TIMEOUT', 'idleMs', 'Seconds a registry may stay silent within one request (waiting for its answer, or mid-body) before it is retried'],
  ['registry-timeout', 'KOCACHE_REGISTRY_TIMEOUT', 'totalMs', 'Seconds a registry may stay silent, retries included, before the command fails'],
] as const;

/** Adds the timeout options (defaults from KOCACHE_CONNECT_TIMEOUT, KOCACHE_IDLE_TIMEOUT, KOCACHE_REGISTRY_TIMEOUT). */
export function registryOptions<T>(y: Argv<T>): Argv<T & RegistryArgs> {
  let out = y as Argv<T & RegistryArgs>;
  for (const [flag, env, key, describe] of TIMEOUT_FLAGS) {
    out = out.option(flag, { requiresArg: true, type: 'string', describe: `${describe} (default ${DEFAULT_TIMEOUTS[key] / 1000}; $${env})` }) as Argv<T & RegistryArgs>;
  }
  return out;
}

/** The registry timeouts the flags (or, without them, the environment) ask for; checked. */
export function registryTimeouts(args: RegistryArgs, env = process.env): Partial<Timeouts> {
  const out: Partial<Timeouts> = {};
  for (const [flag, name, key] of TIMEOUT_FLAGS) {
    const given = args[flag];
    const raw = given !== undefined ? String(given) : env[name];
    if (raw === undefined || raw === '') continue;
    const seconds = Number(raw);
    if (!/^\s*\d*\.?\d+\s*$/.test(raw) || !(seconds > 0) || seconds > 3600) {
      throw usageError(`${given !== undefined ? `--${flag}` : name} must be seconds, more than 0 and at most 3600, not ${JSON.stringify(raw)}`);
    }
    // At least 1 ms: 0 is how undici spells "no timeout", the opposite of what a tiny value asks.
    out[key] = Math.max(1, Math.round(seconds * 1000));
  }
  return out;
}

/** `text` as a whole number, NaN unless it is only digits (not `0x10` or `1e3`, which Number takes). */
function wholeNumber(text: string): number {
  return /^\s*\d+\s*$/.test(String(text)) ? Number(text) : NaN;
}

/** What a command handler works with: the cache, the output, and the parallelism. */
export interface Context {
  cache: CacheStore;
  out: Output;
  jobs: number;
  gzip: GzipOptions;
  ephemeralCache: boolean;
  /** The cache folder is not there, and was not made (makeContext's `create: false`). */
  absent: boolean;
}

/**
 * `lease: false` is for gc alone: every other command holds a lease on the cache while it runs
 * (src/cache/lease.ts), so a concurrent gc spares what it writes and uses. `create: false` is for
 * the commands that only look (ls, du, gc): a cache folder that is not there is read as empty,
 * neither made nor leased (`absent`).
 */
export function makeContext(args: GlobalArgs, opts: { lease?: boolean; create?: boolean } = {}): Context {
  const out = new Output({ json: Boolean(args.json), quiet: Boolean(args.quiet) });
  const jobs = args.jobs === undefined ? availableParallelism() : wholeNumber(args.jobs);
  if (!(jobs >= 1 && jobs <= 256)) throw usageError(`--jobs must be a whole number from 1 to 256, not ${JSON.stringify(String(args.jobs))}`);
  const algorithm = args.compression ?? 'gzip';
  if (algorithm !== 'gzip' && algorithm !== 'zstd') throw usageError(`--compression must be gzip or zstd, not ${JSON.stringify(algorithm)}`);
  if (algorithm === 'zstd') {
    const why = zstdUnavailable();
    if (why) throw usageError(`--compression zstd: ${why}`);
  }
  const [min, max] = levelRange(algorithm);
  const level = args.level === undefined ? (algorithm === 'zstd' ? DEFAULT_ZSTD_LEVEL : DEFAULT_GZIP.level) : wholeNumber(args.level);
  if (!(level >= min && level <= max)) throw usageError(`--level must be a whole number from ${min} to ${max} for ${algorithm}, not ${JSON.stringify(String(args.level))}`);
  if (args.cache === false && args['cache-dir'] !== undefined) throw usageError('--no-cache runs with a throwaway cache: give it or --cache-dir, not both');
  const loc = resolveCacheLocation({ cacheDir: args['cache-dir'], noCache: args.cache === false });
  const absent = opts.create === false && !loc.ephemeral && notThere(loc.dir);
  const leased = !loc.ephemeral && opts.lease !== false && !absent;
  let cache: CacheStore;
  try {
    if (!leased && !absent) ensureDir(loc.dir);
    // The lease is released at process exit (the command ends with the process).
    cache = leased ? openCache(loc.dir, { purpose: process.argv.slice(2, 3).join(' ') }) : new CacheStore(loc.dir);
  } catch (err) {
    throw cacheDirError(err, loc.dir);
  }
  trackTempPrefix(join(loc.dir, 'tmp'));
  return { cache, out, jobs, gzip: { ...DEFAULT_GZIP, algorithm, level, jobs }, ephemeralCache: loc.ephemeral, absent };
}

/** Nothing at `path` (a parent that is a file is no answer of "empty": the caller says what is wrong). */
function notThere(path: string): boolean {
  try {
    statSync(path);
    return false;
  } catch (err) {
    return errnoCode(err) === 'ENOENT';
  }
}

/**
 * `--platform` values as given: repeated, or comma lists. `all` (every platform of `whose`) only
 * alone.
 */
export function platformTexts(values: readonly unknown[], whose: string): string[] {
  const texts = values.flatMap((p) => String(p).split(',')).map((p) => p.trim());
  if (texts.includes('all') && texts.length > 1) throw usageError(`--platform all means every platform of ${whose}: give it alone`);
  return texts;
}

/** SOURCE_DATE_EPOCH as seconds, validated; 0 when unset. */
export function sourceDateEpoch(env = process.env): number {
  const v = env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return 0;
  if (!/^\d+$/.test(v)) throw usageError(`SOURCE_DATE_EPOCH must be whole seconds since 1970, not ${JSON.stringify(v)}`);
  if (Number(v) > MAX_TAR_SECONDS) throw usageError(`SOURCE_DATE_EPOCH ${v} is beyond what a tar header holds (at most ${MAX_TAR_SECONDS}, in the year 2242)`);
  return Number(v);
}
