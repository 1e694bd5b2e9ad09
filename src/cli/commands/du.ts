import type { Argv, CommandModule } from 'yargs';
import { cacheUsage } from '../../cache/usage.js';
import { type GlobalArgs, globalOptions, makeContext } from '../context.js';
import { formatBytes } from '../output.js';

const LABELS = { layers: 'layers', tars: 'layer tars', 'base-images': 'base images', archives: 'archives', other: 'other' } as const;

export const duCommand: CommandModule<object, GlobalArgs> = {
  command: 'du',
  describe: 'Show how much the cache holds, by kind: layers, tars, base images, archives, index',
  builder: (y: Argv) => globalOptions(y) as unknown as Argv<GlobalArgs>,
  handler: async (args) => {
    const ctx = makeContext(args, { create: false });
    const u = await cacheUsage(ctx.cache);
    const rows: [string, string, string][] = [];
    for (const [kind, label] of Object.entries(LABELS) as [keyof typeof LABELS, string][]) {
      const k = u.kinds[kind];
      if (k.records === 0 && k.bytes === 0) continue;
      rows.push([label, formatBytes(k.bytes), `${k.blobs} blob${k.blobs === 1 ? '' : 's'}, ${k.records} record${k.records === 1 ? '' : 's'}`]);
    }
    rows.push(['index', formatBytes(u.index.bytes), `${u.index.records} records`]);
    if (u.stat.bytes) rows.push(['stat cache', formatBytes(u.stat.bytes), '']);
    if (u.codeCache.bytes) rows.push(['code caches', formatBytes(u.codeCache.bytes), 'node-compile-cache/']);
    if (u.unreferenced.blobs) rows.push(['unreferenced', formatBytes(u.unreferenced.bytes), `${u.unreferenced.blobs} blobs (kocache gc removes them)`]);
    if (u.temp.files) rows.push(['temp files', formatBytes(u.temp.bytes), `${u.temp.files} files`]);
    const width = Math.max(...rows.map((r) => r[0].length));
    const lines = rows.map(([a, b, c]) => `${a.padEnd(width)}  ${b.padStart(10)}  ${c}`.trimEnd());
    lines.push(`${u.dir}: ${formatBytes(u.total)} in all`);
    ctx.out.result(u, lines.join('\n'));
  },
};
