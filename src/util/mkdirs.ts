import { existsSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { errnoCode } from '../errors.js';

/**
 * `mkdir -p`; the first folder it made (undefined if `dir` was there), for a caller that takes a
 * failed write back. Node 20's recursive mkdir never returns where a folder exists but nothing can
 * be made in it (under /proc it retries the same ENOENT forever, a core busy), so the first
 * missing folder is made on its own, which fails once and plainly there. Throws the fs error.
 */
export function makeDirs(dir: string): string | undefined {
  const target = resolve(dir);
  if (existsSync(target)) return undefined;
  let first = target;
  while (!existsSync(dirname(first))) first = dirname(first);
  let made: string | undefined = first;
  try {
    mkdirSync(first);
  } catch (err) {
    if (errnoCode(err) !== 'EEXIST') throw err;
    made = undefined; // another process made it meanwhile
  }
  const rest = first === target ? undefined : mkdirSync(target, { recursive: true });
  return made ?? rest;
}
