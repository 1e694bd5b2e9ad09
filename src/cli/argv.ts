import { commandIndex } from './commands/index.js';

/**
 * The command line as the parser wants it. Bare `kocache` asks for the help. Global options given
 * before the command word (`kocache -q build ...`, as git and kubectl allow) are moved after it,
 * where the command's own parser knows every one of them, short forms included.
 */
export function normaliseArgv(argv: readonly string[]): string[] {
  if (argv.length === 0) return ['--help'];
  if (argv[0] === '--get-yargs-completions') return [...argv];
  const at = commandIndex(argv);
  if (at <= 0) return [...argv];
  return [argv[at]!, ...argv.slice(0, at), ...argv.slice(at + 1)];
}
