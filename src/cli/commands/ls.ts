import type { Argv, CommandModule } from 'yargs';
import { type GlobalArgs, globalOptions, makeContext } from '../context.js';
import { formatBytes } from '../output.js';

export const lsCommand: CommandModule<object, GlobalArgs> = {
  command: 'ls',
  describe: 'List the cache index: key, blob size, time written',
  builder: (y: Argv) => globalOptions(y) as unknown as Argv<GlobalArgs>,
  handler: async (args) => {
    const ctx = makeContext(args);
    const records = await ctx.cache.listRecords();
    const rows = records.map((r) => ({ key: r.key, digest: r.digest, size: r.size, time: new Date(r.time).toISOString() }));
    const text = rows.map((r) => `${r.time}  ${formatBytes(r.size).padStart(10)}  ${r.key}`).join('\n');
    ctx.out.result(rows, rows.length ? text : '(cache is empty)');
  },
};
