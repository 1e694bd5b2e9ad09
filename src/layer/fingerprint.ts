import { createHash } from 'node:crypto';
import { type Scout, hashFiles } from './hashpool.js';
import type { StatCache } from './statcache.js';
import type { SourceEntry } from './walk.js';

/**
 * A build id computed from the input itself: every entry's relative path, type, permission bits,
 * size, link target and content hash, in sorted order. Any byte change in any file, a rename, a
 * chmod or a new empty directory gives another id. `read` holds content hashes already taken (by
 * the tar writer, of the bytes it read), which are used instead of reading the files again.
 */
export function fingerprint(entries: readonly SourceEntry[], stats: StatCache, read?: ReadonlyMap<SourceEntry, string>): string {
  const h = createHash('sha256');
  // Lines go to the hash ~64 KB at a time: an update per entry showed in a hit (docs/performance.md).
  let pending = '';
  for (const e of entries) {
    let content = '';
    if (e.type === 'file') {
      const taken = read?.get(e);
      if (taken === undefined) {
        content = stats.hash(e);
      } else {
        stats.record(e, taken);
        content = taken;
      }
    } else if (e.type === 'symlink') {
      content = e.linkTarget ?? '';
    }
    // NUL separates fields: it cannot occur in a path or a link target.
    pending += `${e.type}\0${e.mode.toString(8)}\0${e.size}\0${e.rel}\0${content}\n`;
    if (pending.length >= 65536) {
      h.update(pending);
      pending = '';
    }
  }
  return `fp:${h.update(pending).digest('hex')}`;
}

/**
 * `fingerprint` of a tree whose files the stat cache may not know: the files it has no stamp for
 * are hashed first, on two threads when there are enough of them (hashpool.ts), those a scout
 * already hashed excepted. The same value.
 */
export async function fingerprintTree(entries: readonly SourceEntry[], stats: StatCache, scout?: Scout, opts: { secondThread?: boolean } = {}): Promise<string> {
  const scouted = await scout?.stop();
  const known = new Map<SourceEntry, string>();
  const todo: SourceEntry[] = [];
  for (const e of entries) {
    if (e.type !== 'file' || stats.lookup(e) !== undefined) continue;
    const h = e.rawAbs ? undefined : scouted?.hash(e);
    if (h === undefined) todo.push(e);
    else known.set(e, h);
  }
  const hashes = await hashFiles(todo, { secondThread: opts.secondThread ?? true });
  todo.forEach((e, i) => known.set(e, hashes[i]!));
  return fingerprint(entries, stats, known);
}
