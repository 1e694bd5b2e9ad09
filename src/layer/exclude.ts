import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Ignore } from '@balena/dockerignore';
import { fsError, usageError } from '../errors.js';
import type { SourceEntry } from './walk.js';

/**
 * Paths left out of a layer, written as in a .dockerignore file: patterns relative to SRC, `*`,
 * `?`, `**` across folders, `!` to take a path back, the last matching pattern deciding, a
 * folder's exclusion covering what is under it. @balena/dockerignore implements Docker's rules;
 * kocache only feeds it and keys the layer by the patterns.
 */
export interface ExcludeFilter {
  /** sha256 (hex, first 16) of the patterns in order: part of the layer's key (tar spec). */
  id: string;
  patterns: string[];
}

/** The patterns given and those of .dockerignore-style files (`--exclude`, `--exclude-from`), in order; undefined for none. */
export function excludeFilter(patterns: readonly string[], files: readonly string[] = []): ExcludeFilter | undefined {
  const all: string[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw fsError(err, file, 'read exclude file');
    }
    // .dockerignore: one pattern a line, # comments, blank lines ignored, surrounding space trimmed.
    for (const line of text.split(/\r?\n/)) {
      const p = line.trim();
      if (p && !p.startsWith('#')) all.push(p);
    }
  }
  for (const p of patterns) {
    if (p.trim() === '') throw usageError('empty exclude pattern');
    all.push(p.trim());
  }
  if (all.length === 0) return undefined;
  // 'p1': the folders above a path taken back stay (applyExcludes); layers keyed before that differ.
  const id = createHash('sha256').update(`p1\n${all.join('\n')}`).digest('hex').slice(0, 16);
  return { id, patterns: all };
}

/**
 * The entries that stay: the root always, every other one unless the patterns exclude it, and the
 * folders above an entry that stays (`logs` then `!logs/keep.log` keeps `logs/`, as BuildKit sends
 * it: else the runtime would make the folder with its own owner and mode).
 */
export async function applyExcludes(entries: SourceEntry[], filter: ExcludeFilter | undefined): Promise<SourceEntry[]> {
  if (!filter) return entries;
  // Loaded only when a layer has excludes (not on every build's start-up).
  const mod = (await import('@balena/dockerignore')) as unknown as { default: () => Ignore };
  const ig = mod.default().add(filter.patterns);
  const kept = entries.map((e) => e.rel === '' || !ig.ignores(e.rel));
  const keptDirs = new Set<string>();
  entries.forEach((e, i) => {
    if (!kept[i]) return;
    for (let cut = e.rel.lastIndexOf('/'); cut > 0 && !keptDirs.has(e.rel.slice(0, cut)); cut = e.rel.lastIndexOf('/', cut - 1)) keptDirs.add(e.rel.slice(0, cut));
  });
  return entries.filter((e, i) => kept[i] || (e.type === 'directory' && keptDirs.has(e.rel)));
}
