import { mkdtempSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

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
  const fromEnv = env.KOCACHE;
  if (opts.noCache || (fromEnv !== undefined && OFF_VALUES.has(fromEnv.toLowerCase()))) {
    const dir = mkdtempSync(join(tmpdir(), 'kocache-ephemeral-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    return { dir, ephemeral: true };
  }
  if (fromEnv) return { dir: resolve(fromEnv), ephemeral: false };
  if (opts.cacheDir) return { dir: resolve(opts.cacheDir), ephemeral: false };
  const xdg = env.XDG_CACHE_HOME;
  const base = xdg && xdg.startsWith('/') ? xdg : join(homedir(), '.cache');
  return { dir: join(base, 'kocache'), ephemeral: false };
}
