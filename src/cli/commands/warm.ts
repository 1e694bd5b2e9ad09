import type { Argv, CommandModule } from 'yargs';
import { usageError } from '../../errors.js';
import { loadArchive, topDescriptor, type LoadedArchive } from '../../tarball/load.js';
import { type Context, type GlobalArgs, globalOptions, makeContext } from '../context.js';

interface WarmArgs extends GlobalArgs {
  tarball?: string[] | undefined;
}

/**
 * `kocache warm`: fill the cache ahead of time. Each mode is one function; the handler only picks
 * which one the arguments ask for.
 */
export const warmCommand: CommandModule<object, WarmArgs> = {
  command: 'warm',
  describe: 'Fill the cache ahead of a push, without pushing',
  builder: (y: Argv) =>
    globalOptions(y)
      .option('tarball', {
        type: 'array',
        string: true,
        describe: 'Image archives (docker-archive or OCI, plain or gzipped, or an OCI layout directory) to import',
      })
      .example('$0 warm --tarball result.tar.gz', 'import a Nix dockerTools image: inflate once, compress each layer once') as unknown as Argv<WarmArgs>,
  handler: async (args) => {
    const ctx = makeContext(args);
    if (args.tarball && args.tarball.length > 0) return warmTarballs(ctx, args.tarball.map(String));
    throw usageError('name what to warm: --tarball ARCHIVE...');
  },
};

/** Imports archives one after another (each already uses every core); prints one line per archive. */
export async function warmTarballs(ctx: Context, paths: string[]): Promise<void> {
  const results: LoadedArchive[] = [];
  for (const path of paths) {
    ctx.out.progress(`importing ${path}`);
    results.push(await loadArchive(path, { cache: ctx.cache, gzip: ctx.gzip, jobs: ctx.jobs, warn: (m) => ctx.out.warn(m) }));
  }
  const rows = results.map((r) => {
    const manifests = r.image.kind === 'manifest' ? [r.image.manifest] : r.image.index.manifests;
    return {
      archive: r.path,
      format: r.format,
      archiveDigest: r.archiveDigest,
      digest: topDescriptor(r.image).digest,
      layers: manifests.reduce((n, m) => n + m.layers.length, 0),
      cached: r.cached,
    };
  });
  const text = rows.map((r) => `${r.archive}: ${r.digest} (${r.layers} layers, ${r.cached ? 'already cached' : 'imported'})`).join('\n');
  ctx.out.result(rows.length === 1 ? rows[0] : rows, text);
}
