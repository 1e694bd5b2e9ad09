import type { Argv, CommandModule } from 'yargs';
import { usageError } from '../../errors.js';
import { type WarmResult, warmBase } from '../../image/base.js';
import { buildLayer } from '../../layer/build.js';
import { parseLayerSource } from '../../layer/source.js';
import { type Platform, describePlatforms, formatPlatform, parsePlatform } from '../../oci/platform.js';
import { RegistryClient } from '../../remote/client.js';
import { loadArchive, topDescriptor, type LoadedArchive } from '../../tarball/load.js';
import { type Context, type GlobalArgs, globalOptions, makeContext, sourceDateEpoch } from '../context.js';
import { formatBytes } from '../output.js';

interface WarmArgs extends GlobalArgs {
  targets?: string[] | undefined;
  tarball?: string[] | undefined;
  platform?: string[] | undefined;
  offline?: boolean | undefined;
  'import-path'?: string | undefined;
  'build-id'?: string | undefined;
  'insecure-registry'?: string[] | undefined;
}

/**
 * `kocache warm`: fill the cache ahead of time. Each mode is one function; the handler only picks
 * which one the arguments ask for.
 */
export const warmCommand: CommandModule<object, WarmArgs> = {
  command: 'warm [targets..]',
  describe: 'Fill the cache ahead of a publish or push: base images (REF...), layers (SRC --import-path), archives (--tarball)',
  builder: (y: Argv) =>
    globalOptions(y)
      .positional('targets', {
        type: 'string',
        array: true,
        describe: 'Base image references; or, with --import-path, layer sources SRC[:DEST]',
      })
      .option('platform', { type: 'array', string: true, describe: 'OS/ARCH[/VARIANT], repeatable (references: default every platform of an index; layers: default linux/amd64)' })
      .option('offline', { type: 'boolean', default: false, describe: 'Contact no registry: only check that everything is cached' })
      .option('import-path', { type: 'string', describe: 'Pre-build the SRC[:DEST] targets as layers of this import path, as build does' })
      .option('build-id', { type: 'string', describe: 'With --import-path: a build id you already know' })
      .option('insecure-registry', { type: 'array', string: true, describe: 'Registries to reach over plain HTTP (loopback always is)' })
      .example('$0 warm gcr.io/distroless/static:nonroot --platform linux/amd64 --platform linux/arm64', 'fetch a base image once, for later publishes')
      .example('$0 warm ./out/app:/app --import-path example.com/app --platform linux/arm64', 'pre-build a layer')
      .option('tarball', {
        type: 'array',
        string: true,
        describe: 'Image archives (docker-archive or OCI, plain or gzipped, or an OCI layout directory) to import',
      })
      .example('$0 warm --tarball result.tar.gz', 'import a Nix dockerTools image: inflate once, compress each layer once') as unknown as Argv<WarmArgs>,
  handler: async (args) => {
    const targets = (args.targets ?? []).map(String);
    const platforms = (args.platform ?? []).map((p) => parsePlatform(String(p)));
    const hasTarballs = Boolean(args.tarball && args.tarball.length > 0);
    if (hasTarballs && targets.length > 0) throw usageError('warm takes either --tarball ARCHIVE... or targets, not both');
    if (!hasTarballs && targets.length === 0) throw usageError('name what to warm: REF..., SRC[:DEST]... --import-path IP, or --tarball ARCHIVE...');
    const ctx = makeContext(args);
    if (hasTarballs) return warmTarballs(ctx, (args.tarball ?? []).map(String));
    if (args['import-path'] !== undefined) {
      return warmLayers(ctx, targets, args['import-path'], platforms.length > 0 ? platforms : [parsePlatform('linux/amd64')], args['build-id']);
    }
    return warmBases(ctx, targets, platforms.length > 0 ? platforms : undefined, Boolean(args.offline), (args['insecure-registry'] ?? []).map(String));
  },
};

/** Imports archives one after another (each already uses every core); prints one line per archive. */
export async function warmTarballs(ctx: Context, paths: string[]): Promise<void> {
  const results: LoadedArchive[] = [];
  for (const path of paths) {
    ctx.out.progress(() => `importing ${path}`);
    results.push(await loadArchive(path, {
      cache: ctx.cache, gzip: ctx.gzip, jobs: ctx.jobs, warn: (m) => ctx.out.warn(m),
      onRead: (read, total) => ctx.out.progress(() => `reading ${path}: ${formatBytes(read)} of ${formatBytes(total)}`),
    }));
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

/** Fetches base images into the cache one reference at a time (layers of each in parallel). */
export async function warmBases(ctx: Context, refs: string[], platforms: Platform[] | undefined, offline: boolean, insecureRegistries: string[]): Promise<void> {
  const client = new RegistryClient({ insecureRegistries, jobs: ctx.jobs, warn: (m) => ctx.out.warn(m), cache: ctx.cache });
  const results: WarmResult[] = [];
  try {
    for (const ref of refs) {
      results.push(await warmBase(ref, platforms, {
        client,
        cache: ctx.cache,
        offline,
        jobs: ctx.jobs,
        warn: (m) => ctx.out.warn(m),
        onProgress: (e) => ctx.out.progress(() => `warming ${ref}: ${e.done}/${e.total} layers, ${formatBytes(e.bytes)} fetched`),
      }));
    }
  } finally {
    await client.close();
  }
  const text = results
    .map((r) => `${r.reference}: ${describePlatforms(r.platforms)}; ${r.layers} layers, ${r.fetched} fetched (${formatBytes(r.bytesFetched)}), ${r.layers - r.fetched} already cached`)
    .join('\n');
  ctx.out.result(results.length === 1 ? results[0] : results, text);
}

/** Pre-builds layers exactly as `build` would, for every platform asked for. */
export async function warmLayers(ctx: Context, sources: string[], importPath: string, platforms: Platform[], buildId: string | undefined): Promise<void> {
  const parsed = sources.map((s) => parseLayerSource(s));
  const rows = [];
  for (const source of parsed) {
    for (const platform of platforms) {
      const layer = await buildLayer(source, {
        cache: ctx.cache,
        importPath,
        platform,
        buildId,
        mtime: sourceDateEpoch(),
        gzip: ctx.gzip,
        warn: (m) => ctx.out.warn(m),
      });
      rows.push({ source: source.src, dest: source.dest || '/', platform: formatPlatform(platform), digest: layer.descriptor.digest, size: layer.descriptor.size, diffid: layer.diffid, cached: layer.cached });
    }
  }
  const text = rows.map((r) => `${r.source}:${r.dest} ${r.platform}: ${r.digest} (${r.cached ? 'already cached' : 'built'})`).join('\n');
  ctx.out.result(rows.length === 1 ? rows[0] : rows, text);
}
