import type { Argv, CommandModule } from 'yargs';
import { type GlobalArgs, globalOptions, makeContext } from '../context.js';
import { formatBytes } from '../output.js';

export const lsCommand: CommandModule<object, GlobalArgs> = {
  command: 'ls',
  describe: 'List the cache index: key, blob size, time written',
  builder: (y: Argv) => globalOptions(y) as unknown as Argv<GlobalArgs>,
  handler: async (args) => {
    const ctx = makeContext(args, { create: false });
    const records = await ctx.cache.listRecords();
    const rows = records.map((r) => ({ key: r.key, digest: r.digest, size: r.size, time: new Date(r.time).toISOString() }));
    const lines = rows.map((r) => `${r.time}  ${formatBytes(r.size).padStart(10)}  ${r.key}`);
    // The summary counts each blob once: several records may point at one.
    const blobs = new Map(rows.map((r) => [r.digest, r.size]));
    const bytes = [...blobs.values()].reduce((n, b) => n + b, 0);
    lines.push(rows.length ? `${rows.length} record${rows.length === 1 ? '' : 's'}, ${blobs.size} blob${blobs.size === 1 ? '' : 's'}, ${formatBytes(bytes)}` : '(cache is empty)');
    ctx.out.result(rows, lines.join('\n'));
  },
};
