import type { CommandModule } from 'yargs';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyCommand = CommandModule<any, any>;

/**
 * Every subcommand, one file each in this folder, loaded only when it runs: the registry client
 * (undici) is slow to load (docs/performance.md), and `kocache build` on a cache hit must not pay for it.
 */
export const commandLoaders: Record<string, () => Promise<AnyCommand>> = {
  build: async () => (await import('./build.js')).buildCommand,
  du: async () => (await import('./du.js')).duCommand,
  gc: async () => (await import('./gc.js')).gcCommand,
  inspect: async () => talksToRegistries((await import('./inspect.js')).inspectCommand),
  ls: async () => (await import('./ls.js')).lsCommand,
  publish: async () => talksToRegistries((await import('./publish.js')).publishCommand),
  push: async () => talksToRegistries((await import('./push.js')).pushCommand),
  warm: async () => talksToRegistries((await import('./warm.js')).warmCommand),
};

/** Registry commands parse HTTP with WebAssembly: see wasm.ts (loaded after the command's modules). */
async function talksToRegistries(command: AnyCommand): Promise<AnyCommand> {
  (await import('../startup/wasm.js')).baselineWasmOnly();
  return command;
}

// Global options that take a value, so the command word can be told from an option's value.
export const VALUE_OPTIONS = new Set(['--cache-dir', '--jobs', '-j', '--level', '--compression']);

/** Where the command word is in `argv` (-1 when there is none). */
export function commandIndex(argv: readonly string[]): number {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return -1;
    if (VALUE_OPTIONS.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith('-')) continue;
    return Object.hasOwn(commandLoaders, a) || a === 'completion' ? i : -1;
  }
  return -1;
}

/** The subcommands needed to parse `argv`: the one named, or all of them (for help and errors). */
export async function loadCommands(argv: readonly string[]): Promise<AnyCommand[]> {
  const at = commandIndex(argv);
  const load = at >= 0 ? commandLoaders[argv[at]!] : undefined;
  if (load) return [await load()];
  return Promise.all(Object.values(commandLoaders).map((load) => load()));
}
