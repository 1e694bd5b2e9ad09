import { usageError } from '../errors.js';

/**
 * Options a command takes more than once (and positionals that are lists); '*' for every command
 * that has them. Any other option given twice reaches a handler as an array, whose intent is
 * unclear: it is refused here, for every command, before anything runs.
 */
const REPEATABLE: Readonly<Record<string, readonly string[]>> = {
  '*': ['sources', 'targets', 'cache-from', 'exclude', 'exclude-from', 'tag', 'annotation', 'insecure-registry', 'env', 'label', 'also'],
  publish: ['platform'],
  warm: ['platform', 'tarball'],
};

const HINTS: Readonly<Record<string, string>> = {
  'cache-repo': ' (add readers with --cache-from)',
};

/** yargs middleware: a usage error for an option given more than once where once is meant. */
export function refuseRepeats(argv: Record<string, unknown>): void {
  const command = String((argv['_'] as unknown[] | undefined)?.[0] ?? '');
  for (const [key, value] of Object.entries(argv)) {
    // The camelCase and one-letter aliases yargs adds carry the same value as the long name.
    if (!Array.isArray(value) || key === '_' || key.length === 1 || /[A-Z]/.test(key)) continue;
    if (REPEATABLE['*']!.includes(key) || REPEATABLE[command]?.includes(key)) continue;
    throw usageError(`--${key} given ${value.length} times: give it once${HINTS[key] ?? ''}`);
  }
}
