import { errnoCode } from '../errors.js';
import type { Cacache } from './cacache.js';

/**
 * The journal: one index key whose lines name every key rewritten (given a line while it had a live
 * one) or removed since the last gc, and every blob stored. cacache's public calls show a key's
 * newest line only (`ls`, `get.info`), so the journal is how gc knows which keys hold older lines,
 * or a removal, to compact; and `put.stream`, cacache's public way to store content, records each
 * write under a key: this one. Lines are never references: gc empties the journal each run.
 */
export const JOURNAL_KEY = 'kocache/journal';

/** Notes that `key` is about to get a line over an older one (written first, so none goes unnoticed). */
export async function noteKey(cacache: Cacache, dir: string, key: string): Promise<void> {
  // A null integrity: the line points at no content, and `ls` never lists the journal for it.
  await cacache.index.insert(dir, JOURNAL_KEY, null as unknown as string, { metadata: { key } });
}

/**
 * Empties the journal and returns the keys it named. A line appended while the journal is rewritten
 * is lost with it: that key's older lines then wait for its next write to be compacted.
 */
export async function drainJournal(cacache: Cacache, dir: string): Promise<Set<string>> {
  const keys = new Set<string>();
  const collect = (e: { metadata?: unknown }) => {
    const m = e.metadata as { key?: unknown } | null | undefined;
    if (typeof m === 'object' && m !== null && typeof m.key === 'string') keys.add(m.key);
    return false;
  };
  try {
    await cacache.index.compact(dir, JOURNAL_KEY, () => false, { validateEntry: collect });
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
  return keys;
}
