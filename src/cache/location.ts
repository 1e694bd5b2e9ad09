import { mkdtempSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { atExit } from '../util/exit.js';

export interface CacheLocation {
  dir: string;
  /** A throwaway cache (KOCACHE=off or --no-cache): removed when the process exits. */
  ephemeral: boolean;
}

const OFF_VALUES = new Set(['off', 'none', 'false', '0']);

/**
 * Where the cache lives: `$KOCACHE` if set, else `--cache-dir`, else `$XDG_CACHE_HOME/kocache`
 * (default `~/.cache/kocache`). `KOCACHE=off` or `--no-cache` gives a throwaway cache that lasts
 * one command, so every code path still reads and writes through one store.
 */
export function resolveCacheLocation(opts: { cacheDir?: string | undefined; noCache?: boolean | undefined }, env = process.env): CacheLocation {
  const dir = lastingCacheDir(opts, env);
  if (dir !== undefined) return { dir, ephemeral: false };
  const tmp = mkdtempSync(join(tmpdir(), 'kocache-ephemeral-'));
  atExit(() => rmSync(tmp, { recursive: true, force: true }));
  return { dir: tmp, ephemeral: true };
}

/** The folder resolveCacheLocation names, made or not; undefined for a throwaway cache. */
export function lastingCacheDir(opts: { cacheDir?: string | undefined; noCache?: boolean | undefined }, env = process.env): string | undefined {
  const fromEnv = env.KOCACHE;
  if (opts.noCache || (fromEnv !== undefined && OFF_VALUES.has(fromEnv.toLowerCase()))) return undefined;
  if (fromEnv) return resolve(fromEnv);
  if (opts.cacheDir) return resolve(opts.cacheDir);
  const xdg = env.XDG_CACHE_HOME;
  const base = xdg && xdg.startsWith('/') ? xdg : join(homedir(), '.cache');
  return join(base, 'kocache');
}
