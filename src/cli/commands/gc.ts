import type { Argv, CommandModule } from 'yargs';
import { collectGarbage, type GcReport } from '../../cache/gc.js';
import { runningBundle } from '../../cache/codecaches.js';
import { KocacheError, usageError } from '../../errors.js';
import { unpackLayer } from '../../tarball/inflate.js';
import { parseCacheRepo } from '../cache-repo.js';
import { Output } from '../output.js';
import { type GlobalArgs, type RegistryArgs, globalOptions, makeContext, registryOptions, registryTimeouts } from '../context.js';
import { formatBytes } from '../output.js';

interface GcArgs extends GlobalArgs, RegistryArgs {
  'cache-repo'?: string | undefined;
  'insecure-registry'?: string | string[] | undefined;
  'max-size'?: string | undefined;
  'max-age'?: string | undefined;
  verify?: boolean | undefined;
  'dry-run'?: boolean | undefined;
}

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12,
  kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40,
};

/** `500MB` (decimal), `2GiB` (binary), `1.5G`, or plain bytes. */
export function parseSize(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(s);
  const unit = m?.[2]?.toLowerCase() ?? '';
  const factor = SIZE_UNITS[unit];
  if (!m || factor === undefined) {
    throw usageError(`invalid --max-size ${JSON.stringify(s)}: want bytes or a number with a unit, e.g. 500MB, 2GiB, 1048576`);
  }
  return Math.floor(Number(m[1]) * factor);
}

const DURATION_UNITS: Record<string, number> = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 };

/** `30d`, `12h`, `90m`, `1h30m` (s, m, h, d, w): milliseconds. */
export function parseDuration(s: string): number {
  const text = s.trim().toLowerCase();
  let ms = 0;
  let rest = text;
  const part = /^(\d+(?:\.\d+)?)([smhdw])/;
  while (rest !== '') {
    const m = part.exec(rest);
    if (!m) break;
    ms += Number(m[1]) * (DURATION_UNITS[m[2] as string] ?? 0);
    rest = rest.slice(m[0].length);
  }
  if (text === '' || rest !== '') {
    throw usageError(`invalid --max-age ${JSON.stringify(s)}: want a duration such as 30d, 12h, 90m or 1h30m`);
  }
  return ms;
}

export const gcCommand: CommandModule<object, GcArgs> = {
  command: 'gc',
  describe: 'Remove unused, expired and least recently used cache content; safe while builds run',
  builder: (y: Argv) =>
    registryOptions(globalOptions(y))
      .option('max-size', { requiresArg: true, type: 'string', describe: 'Shrink the cache to this size, least recently used first (500MB, 2GiB, bytes)' })
      .option('max-age', { requiresArg: true, type: 'string', describe: 'Remove content not used for this long (30d, 12h, 90m)' })
      .option('verify', { type: 'boolean', default: false, describe: 'Re-hash all content; drop corrupt blobs and layer records naming a wrong diffid (reads the whole cache)' })
      .option('dry-run', { type: 'boolean', default: false, describe: 'Report what would be removed; change nothing' })
      .option('cache-repo', { requiresArg: true, type: 'string', describe: 'Prune this registry cache (REGISTRY/REPO) instead: records older than --max-age are deleted' })
      .option('insecure-registry', { requiresArg: true, type: 'string', describe: 'With --cache-repo: HOST[:PORT] reached over plain HTTP, repeatable (loopback always is)' })
      .example('$0 gc --cache-repo ghcr.io/you/kocache --max-age 30d', 'delete registry cache records not written for 30 days')
      .example('$0 gc --max-size 5GiB --max-age 30d', '')
      .example('$0 gc --dry-run --max-size 500MB --json', '') as unknown as Argv<GcArgs>,
  handler: async (args) => {
    const maxSize = args['max-size'] === undefined ? undefined : parseSize(args['max-size']);
    const maxAge = args['max-age'] === undefined ? undefined : parseDuration(args['max-age']);
    if (args['cache-repo'] !== undefined) return remoteGc(args, maxAge);
    const ctx = makeContext(args, { lease: false, create: false });
    // No cache folder, nothing to collect: looked at as a dry run, which makes nothing (not even gc.lock).
    const looked = await collectGarbage(ctx.cache, { maxSize, maxAge, verify: args.verify, dryRun: args['dry-run'] || ctx.absent, bundle: runningBundle(),
      unpack: (blob, mediaType) => unpackLayer(blob, mediaType, 'a cached layer'),
    });
    const report = { ...looked, dryRun: Boolean(args['dry-run']) };
    if (maxSize !== undefined && report.sizeAfter > maxSize) {
      // Nothing protected: what is left is gc's own bookkeeping, or what commands wrote after its scan.
      const why = report.protectedBytes > 0
        ? `${formatBytes(report.protectedBytes)} is in use by running kocache commands or was written moments ago`
        : 'what is left is the index and markers gc keeps, or was written by other kocache commands while gc ran';
      ctx.out.warn(`cache is ${formatBytes(report.sizeAfter)}, above --max-size ${formatBytes(maxSize)}: ${why}`);
    }
    ctx.out.result(report, summary(report));
  },
};

function summary(r: GcReport): string {
  const c = r.counts;
  const verb = r.dryRun ? 'would remove' : 'removed';
  const parts = [
    `${c.blob} blob${c.blob === 1 ? '' : 's'}`,
    `${c.record} index record${c.record === 1 ? '' : 's'}`,
    `${c.tmp + c.trash} temp file${c.tmp + c.trash === 1 ? '' : 's'}`,
    `${c.stat} stat file${c.stat === 1 ? '' : 's'}`,
    `${c.lease} stale lease${c.lease === 1 ? '' : 's'}`,
    `${c.code} code cache${c.code === 1 ? '' : 's'}`,
  ];
  // Files one per line; index records (several per blob) only in the count, and in --json.
  const lines = r.removed.filter((x) => x.kind !== 'record').map((x) => `${verb} ${x.kind} ${x.what} (${x.reason}, ${formatBytes(x.bytes)})`);
  lines.push(`gc: ${verb} ${parts.join(', ')}; ${formatBytes(r.bytesFreed)} freed; cache ${formatBytes(r.sizeBefore)} -> ${formatBytes(r.sizeAfter)}`
    + (r.liveLeases > 0 ? ` (${r.liveLeases} running command${r.liveLeases === 1 ? '' : 's'} protected ${formatBytes(r.protectedBytes)})` : ''));
  return lines.join('\n');
}

/** `gc --cache-repo R --max-age D`: prunes the registry cache R; the local cache is left alone. */
async function remoteGc(args: GcArgs, maxAge: number | undefined): Promise<void> {
  if (Array.isArray(args['cache-repo'])) throw usageError('--cache-repo given more than once: prune one registry cache at a time');
  if (maxAge === undefined) throw usageError('gc --cache-repo needs --max-age: records not written for that long are deleted (e.g. --max-age 30d)');
  if (args['max-size'] !== undefined || args.verify) throw usageError('--max-size and --verify are for the local cache, not with --cache-repo');
  const repo = parseCacheRepo(String(args['cache-repo']), 'cache-repo');
  const out = new Output({ json: Boolean(args.json), quiet: Boolean(args.quiet) });
  const insecure = args['insecure-registry'] === undefined ? [] : (Array.isArray(args['insecure-registry']) ? args['insecure-registry'] : [args['insecure-registry']]).map(String);
  const { RegistryClient } = await import('../../remote/client.js');
  const { collectRegistryGarbage } = await import('../../regcache/gc.js');
  const client = new RegistryClient({ insecureRegistries: insecure, warn: (m) => out.warn(m), timeouts: registryTimeouts(args) });
  try {
    const r = await collectRegistryGarbage(client, repo, { maxAgeMs: maxAge, dryRun: Boolean(args['dry-run']) });
    if (r.deletesDisabled) {
      throw new KocacheError('registry', `${r.repository} does not allow deletes (distribution: set storage.delete.enabled); ${r.expired.length} of ${r.records} records are older than --max-age ${args['max-age']} and were left`);
    }
    const verb = r.dryRun ? 'would delete' : 'deleted';
    const lines = r.expired.map((e) => `${verb} ${e.kind} record ${e.tag} (written ${e.created.slice(0, 10)})`);
    lines.push(`gc: ${r.repository}: ${verb} ${r.dryRun ? r.expired.length : r.deleted} of ${r.records} records older than ${args['max-age']}`
      + (r.skipped ? `; ${r.skipped} unreadable or foreign ${r.skipped === 1 ? 'tag' : 'tags'} left alone` : '')
      + (r.dryRun ? '' : '; the registry\'s garbage collection frees their blobs (docs/registry-cache.md)'));
    // deletesDisabled is always false here (a refusal is the error above): not printed.
    const { deletesDisabled: _, ...shown } = r;
    out.result(shown, lines.join('\n'));
  } finally {
    await client.close();
  }
}
