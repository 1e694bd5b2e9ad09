import { createHash } from 'node:crypto';
import { type Scout, hashFiles, writeStatFilesLater } from './hashpool.js';
import type { StatCache } from './statcache.js';
import type { SourceEntry } from './walk.js';

/**
 * A build id computed from the input itself: every entry's relative path, type, permission bits,
 * size, link target and content hash, in sorted order. Any byte change in any file, a rename, a
 * chmod or a new empty directory gives another id. `read` holds content hashes already taken (by
 * the tar writer, of the bytes it read), which are used instead of reading the files again.
 */
export function fingerprint(entries: readonly SourceEntry[], stats: StatCache, read?: ReadonlyMap<SourceEntry, string>): string {
  return fingerprintOf(entries, (e) => {
    const taken = read?.get(e);
    if (taken === undefined) return stats.hash(e);
    stats.record(e, taken);
    return taken;
  });
}

/** The fingerprint given each file's content hash (`content` is asked once per file, in order). */
function fingerprintOf(entries: readonly SourceEntry[], content: (e: SourceEntry, i: number) => string): string {
  const h = createHash('sha256');
  // Lines go to the hash ~64 KB at a time: an update per entry showed in a hit (docs/performance.md).
  let pending = '';
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    const c = e.type === 'file' ? content(e, i) : e.type === 'symlink' ? (e.linkTarget ?? '') : '';
    // NUL separates fields: it cannot occur in a path or a link target.
    pending += `${e.type}\0${e.mode.toString(8)}\0${e.size}\0${e.rel}\0${c}\n`;
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
 * already hashed excepted. The same value. Each file's stamp is looked up once and the new ones
 * recorded in walk order, the order the stat cache reads fastest.
 */
export async function fingerprintTree(
  entries: readonly SourceEntry[],
  stats: StatCache,
  scout?: Scout,
  opts: { secondThread?: boolean; onHashes?: (hashes: readonly (string | undefined)[]) => void } = {},
): Promise<string> {
  const scouted = await scout?.stop();
  // The worker that walked the tree, idle now, writes its ~100k stamps while the key is looked up.
  if (scout) stats.writeWith(writeStatFilesLater);
  const hashes = new Array<string | undefined>(entries.length);
  const fresh = new Uint8Array(entries.length);
  const todo: SourceEntry[] = [];
  const todoAt: number[] = [];
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (e.type !== 'file') continue;
    const stamped = stats.lookup(e);
    if (stamped !== undefined) {
      hashes[i] = stamped;
      continue;
    }
    fresh[i] = 1;
    const h = e.rawAbs ? undefined : scouted?.hash(e);
    if (h !== undefined) hashes[i] = h;
    else {
      todo.push(e);
      todoAt.push(i);
    }
  }
  const done = await hashFiles(todo, { secondThread: opts.secondThread ?? true });
  todoAt.forEach((i, k) => (hashes[i] = done[k]!));
  opts.onHashes?.(hashes);
  stats.recordAll(entries, hashes, fresh);
  // The worker writes the stamps while this thread works out the fingerprint (the listing waits for it).
  if (scout) stats.saveAhead(entries);
  return fingerprintOf(entries, (_e, i) => hashes[i]!);
}
