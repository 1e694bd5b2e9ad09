import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { usageError } from '../errors.js';
import { loadCommands } from './commands/index.js';
import { reportError } from './output.js';
import { globalOptions } from './context.js';
import { jsonAsked, normaliseArgv } from './argv.js';
import { refuseRepeats } from './once.js';
import { exitCleanlyOnSignals } from './signals.js';
import { prestartForFreshRunner } from './startup/hashworker.js';
import { traceEnabled, traceSnapshot } from '../util/trace.js';

// The bundler (scripts/bundle-cli.mjs) writes the package version in here, which spares yargs
// looking for package.json through the folders above it at every start; unbundled, yargs looks.
declare const KOCACHE_VERSION: string | undefined;
const BUNDLED_VERSION = typeof KOCACHE_VERSION === 'string' ? KOCACHE_VERSION : undefined;

async function main(given: string[]): Promise<number> {
  const argv = normaliseArgv(given);
  // yargs' completion command takes everything after it as words to complete: its --help printed
  // the script, and `completion bash` was a misspelt command. The global options are taken (an
  // alias may add them to every command) and change nothing in the script.
  if (argv[0] === 'completion' && argv.length > 1) {
    if (argv.includes('--help') || argv.includes('-h')) {
      process.stdout.write('kocache completion\n\nPrint a shell completion script for the shell in $SHELL (bash or zsh):\n  kocache completion >> ~/.bashrc\n\nThe global options are taken and change nothing; --json is refused (the script is not JSON).\n');
      return 0;
    }
    const json = jsonAsked(argv);
    let parsed: { _: (string | number)[]; json?: boolean };
    try {
      // The global options as every command parses them (short forms, --no-*, =values included).
      parsed = globalOptions(yargs(argv.slice(1)), { aliases: true })
        .strictOptions()
        .help(false)
        .version(false)
        .fail((msg, err) => {
          throw usageError(usageMessage(msg ?? err?.message ?? 'invalid arguments'));
        })
        .parseSync();
    } catch (err) {
      return reportError(err, json);
    }
    const word = parsed._[0];
    if (word !== undefined) return reportError(usageError(`completion takes no argument (it writes the script for the shell in $SHELL, bash or zsh), not ${JSON.stringify(String(word))}`), json);
    if (parsed.json) return reportError(usageError('completion writes a shell script, not JSON: run it without --json'), true);
    argv.length = 1;
  }
  prestartForFreshRunner(argv);
  const wantsJson = jsonAsked(argv);
  let failure: unknown;
  // What is missing (a command, a required option) is said only if no argument is unknown: yargs
  // checks for missing ones first, and `--import-paht x` was reported as --import-path missing.
  let missing: unknown;
  const commands = await loadCommands(argv);
  // Global options are known at the top level too, so `kocache --json ls` works like `kocache ls --json`.
  const base = globalOptions(yargs(argv), { aliases: true });
  const parser = (BUNDLED_VERSION ? base.version(BUNDLED_VERSION) : base.version())
    .scriptName('kocache')
    .usage('$0 <command> [options]\n\nA content-addressed layer cache for building and publishing OCI images.')
    .command(commands)
    .completion('completion', 'Print a shell completion script (bash or zsh): kocache completion >> ~/.bashrc')
    .demandCommand(1, NO_COMMAND)
    .strict()
    // Runs after yargs' checks, first, before any command: a missing argument held back stops it here.
    .middleware(() => {
      if (missing !== undefined) throw missing;
    })
    .middleware(refuseRepeats)
    .recommendCommands()
    .help()
    .alias('h', 'help')
    .detectLocale(false)
    .wrap(process.stdout.isTTY ? Math.min(110, process.stdout.columns || 100) : null)
    .fail((msg, err) => {
      // yargs reports its own validation failures and handler errors here; both become one line.
      // Thrown, not only kept: yargs goes on to run the command's handler after a failed check
      // unless this throws, so `kocache gc --dry-rn` collected garbage before saying so.
      // The parser's own complaints (an option without its value) come as yargs' YError.
      // A missing argument is held back (yargs goes on to its unknown-argument check), and thrown
      // by the first middleware, or after the parse, if nothing else failed.
      if (!err && isMissing(msg)) {
        missing ??= usageError(msg);
        return;
      }
      failure ??= err && err.name !== 'YError' ? err : usageError(usageMessage(msg ?? err?.message ?? 'invalid arguments'));
      throw failure;
    });
  skipHelpCache(parser);
  try {
    await parser.parseAsync();
  } catch (err) {
    failure ??= err;
  }
  failure ??= missing;
  if (failure !== undefined) return reportError(failure, wantsJson);
  return 0;
}

const NO_COMMAND = 'name a command (see kocache --help)';

/** yargs' words for a command, positional or required option that was not given. */
function isMissing(msg: string | null | undefined): msg is string {
  return msg === NO_COMMAND || /^(Missing required arguments?|Not enough non-option arguments):/.test(msg ?? '');
}

/**
 * yargs' words for an option given without its value (every option that takes one is declared
 * `requiresArg`, so `--platform` at the end of the line is refused rather than read as '').
 */
function usageMessage(msg: string): string {
  const unknown = /^(Unknown arguments?): (.+)$/.exec(msg);
  if (unknown) {
    // yargs names an unknown --foo-bar twice, as typed and as fooBar.
    const names = unknown[2]!.split(', ');
    const typed = names.filter((n) => !names.some((k) => k !== n && k.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase()) === n));
    return `${typed.length === 1 ? 'Unknown argument' : 'Unknown arguments'}: ${typed.join(', ')}`;
  }
  const m = /^Not enough arguments following: (.+)$/.exec(msg);
  if (!m) return msg;
  const name = m[1]!;
  return `${name.length === 1 ? '-' : '--'}${name} needs a value`;
}

/**
 * yargs renders the whole help text before every command handler runs, to have it at hand should
 * the handler fail, at a measured cost to every command (docs/performance.md). Our .fail() reports one line and never
 * prints help, so that text is never used. This reaches into yargs' internals; a yargs without
 * this hook simply keeps rendering it.
 */
function skipHelpCache(parser: unknown): void {
  const internal = (parser as { getInternalMethods?: () => { getUsageInstance?: () => { cacheHelpMessage?: unknown } } }).getInternalMethods?.();
  const usage = internal?.getUsageInstance?.();
  if (usage && typeof usage.cacheHelpMessage === 'function') usage.cacheHelpMessage = () => {};
}

exitCleanlyOnSignals();
// A reader that went away (`kocache ls | head -1`) is not an error of kocache's: it ends quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

if (traceEnabled()) {
  process.once('exit', () => process.stderr.write(`kocache-trace: ${JSON.stringify(traceSnapshot())}\n`));
}

// On failure the process ends as soon as the error is out: work still under way (a build whose
// publish already failed on an upload) is not waited for. The cache stays whole: blobs are renamed
// into place only when complete and records written only after them.
const finish = (code: number) => {
  process.exitCode = code;
  // Both streams flushed first (`--json` errors go to stdout; pipes are asynchronous on macOS).
  if (code !== 0) process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
};
let settled = false;
// A command stalled for good (waiting on a promise nothing will settle) empties the event loop, and
// Node would exit 0 with the work undone: a CI job would pass. Said as the bug it is instead.
process.once('beforeExit', () => {
  if (!settled) finish(reportError(new Error('the command stopped before it finished, waiting on nothing'), jsonAsked(hideBin(process.argv))));
});
main(hideBin(process.argv)).then(
  (code) => ((settled = true), finish(code)),
  (err: unknown) => ((settled = true), finish(reportError(err, jsonAsked(hideBin(process.argv))))),
);
