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

/**
 * Whether `--json` is on, as the parser will read it, known before it runs (its own errors are
 * said in JSON too): `--json` or `--json=true`, turned off by `--no-json` or `--json=false`, the
 * last one winning; nothing after `--` counts.
 */
export function jsonAsked(argv: readonly string[]): boolean {
  let on = false;
  for (const a of argv) {
    if (a === '--') break;
    if (a === '--json' || a === '--json=true') on = true;
    else if (a === '--no-json' || a === '--json=false') on = false;
  }
  return on;
}
