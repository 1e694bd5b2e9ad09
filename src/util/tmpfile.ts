import { once } from 'node:events';
import { readdirSync, rmSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';

/**
 * Gives up on a temp file being written: closes its stream, then removes it. In that order: the
 * file may still be being opened, and removing it before the stream has closed let the open
 * create it again afterwards (a leftover temp file, seen in a test run).
 */
export async function abandonTempFile(out: WriteStream, tmp: string): Promise<void> {
  if (!out.closed) {
    const closed = once(out, 'close');
    out.destroy();
    await closed.catch(() => undefined);
  }
  rmSync(tmp, { force: true });
}

// Temp files being written right now, removed by an interrupted command (src/cli/signals.ts)
// before it exits: a renamed or abandoned file is forgotten again.
const live = new Set<string>();

/** Marks `path` as a temp file this process is writing; the returned function forgets it. */
export function trackTempFile(path: string): () => void {
  live.add(path);
  return () => live.delete(path);
}

/**
 * cacache names its temp files itself, under `<cache>/tmp/`, with the prefix it is given: this
 * process's prefix, so an interrupted command removes its own and never a concurrent one's.
 */
export const TEMP_PREFIX = `kocache-${process.pid}-${Date.now().toString(36)}`;
const prefixedDirs = new Set<string>();

/** Marks a folder where temp files named `TEMP_PREFIX-*` may be left by this process. */
export function trackTempPrefix(dir: string): void {
  prefixedDirs.add(dir);
}

/** Removes every tracked temp file, synchronously (it runs on the way out of a signal). */
export function removeTrackedTempFiles(): void {
  for (const path of live) rmSync(path, { force: true });
  live.clear();
  for (const dir of prefixedDirs) {
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      continue; // nothing was written there
    }
    for (const name of names) if (name.startsWith(`${TEMP_PREFIX}-`)) rmSync(join(dir, name), { force: true, recursive: true });
  }
}
