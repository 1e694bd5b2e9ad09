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
  const id = createHash('sha256').update(all.join('\n')).digest('hex').slice(0, 16);
  return { id, patterns: all };
}

/** The entries that stay: the root always, every other one unless the patterns exclude it. */
export async function applyExcludes(entries: SourceEntry[], filter: ExcludeFilter | undefined): Promise<SourceEntry[]> {
  if (!filter) return entries;
  // Loaded only when a layer has excludes (not on every build's start-up).
  const mod = (await import('@balena/dockerignore')) as unknown as { default: () => Ignore };
  const ig = mod.default().add(filter.patterns);
  return entries.filter((e) => e.rel === '' || !ig.ignores(e.rel));
}
