import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { usageError } from '../../errors.js';
import { type WarmResult, warmBase } from '../../image/warm.js';
import { buildLayer, validateBuildId } from '../../layer/build.js';
import { type LayerSource, parseLayerSource } from '../../layer/source.js';
import { importPathOption, layerOptions, layerSettings, withLayerSettings } from '../layer-options.js';
import { type Platform, describePlatforms, formatPlatform, parsePlatform } from '../../oci/platform.js';
import { RegistryClient } from '../../remote/client.js';
import { formatReference, parseReference } from '../../reference/reference.js';
import { loadArchive, topDescriptor, type LoadedArchive } from '../../tarball/load.js';
import { type Context, type GlobalArgs, type RegistryArgs, globalOptions, makeContext, platformTexts, registryOptions, registryTimeouts, sourceDateEpoch } from '../context.js';
import type { Timeouts } from '../../remote/timeouts.js';
import { formatBytes } from '../output.js';
import { Progress } from '../progress.js';
import type { Digest } from '../../oci/digest.js';
import { RegistryCache } from '../../regcache/cache.js';
import { archiveRecordKey } from '../../regcache/archives.js';
import { layerTier } from '../../regcache/layers.js';
import { archivePushable } from '../../tarball/pushable.js';
import { type CacheRepoArgs, cacheRepoOptions, cacheReposFrom } from '../cache-repo.js';

interface WarmArgs extends GlobalArgs, CacheRepoArgs, RegistryArgs {
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
    layerOptions(registryOptions(cacheRepoOptions(globalOptions(y))))
      .positional('targets', {
        type: 'string',
        array: true,
        describe: 'Base image references; or, with --import-path, layer sources SRC[:DEST]',
      })
      .option('platform', { requiresArg: true, type: 'array', string: true, describe: 'OS/ARCH[/VARIANT], a comma list or all, repeatable (references: default every platform of an index; layers: default linux/amd64)' })
      .option('offline', { type: 'boolean', default: false, describe: 'Base images (REF...): contact no registry, only check that they are cached' })
      .option('import-path', { requiresArg: true, type: 'string', describe: 'Pre-build the SRC[:DEST] targets as layers of this import path, as build does' })
      .option('build-id', { requiresArg: true, type: 'string', describe: 'With --import-path: a build id you already know' })
      .option('insecure-registry', { requiresArg: true, type: 'array', string: true, describe: 'Registries to reach over plain HTTP (loopback always is)' })
      .example('$0 warm gcr.io/distroless/static:nonroot --platform linux/amd64 --platform linux/arm64', 'fetch a base image once, for later publishes')
      .example('$0 warm ./out/app:/app --import-path example.com/app --platform linux/arm64', 'pre-build a layer')
      .option('tarball', {
        requiresArg: true,
        type: 'array',
        string: true,
        describe: 'Image archives (docker-archive or OCI, plain or gzipped, or an OCI layout directory) to import',
      })
      .example('$0 warm --tarball result.tar.gz', 'import a Nix dockerTools image: inflate once, compress each layer once') as unknown as Argv<WarmArgs>,
  handler: async (args) => {
    const targets = (args.targets ?? []).map(String);
    // As publish takes them: repeated, or a comma list; `all` alone is every platform of a reference.
    const texts = platformTexts(args.platform ?? [], 'the image');
    const importPath = args['import-path'] === undefined ? undefined : importPathOption(String(args['import-path']));
    if (texts.includes('all') && importPath !== undefined) throw usageError('--platform all names no platform to build a layer for: name the platforms');
    const platforms = texts.filter((p) => p !== 'all').map(parsePlatform);
    const hasTarballs = Boolean(args.tarball && args.tarball.length > 0);
    if (hasTarballs && targets.length > 0) throw usageError('warm takes either --tarball ARCHIVE... or targets, not both');
    if (!hasTarballs && targets.length === 0) throw usageError('name what to warm: REF..., SRC[:DEST]... --import-path IP, or --tarball ARCHIVE...');
    if (!hasTarballs && importPath === undefined) {
      const source = targets.find(isLayerSource);
      if (source !== undefined) throw usageError(`${JSON.stringify(source)} is a layer source (a path): warming layers needs --import-path IP, as build does${imageNamedSo(source)}`);
    }
    refuseOtherKinds(args, hasTarballs ? 'archives' : importPath !== undefined ? 'layers' : 'bases');
    // Every target and option checked before the cache is opened: a typo in the last of several
    // makes no cache folder and warms none of the others.
    const buildId = args['build-id'] === undefined ? undefined : validateBuildId(String(args['build-id']));
    let layers: LayerSource[] = [];
    if (!hasTarballs && importPath !== undefined) {
      const settings = layerSettings(args as unknown as Record<string, unknown>);
      layers = targets.map((t) => withLayerSettings(parseLayerSource(t), settings));
    } else if (!hasTarballs) for (const t of targets) parseReference(t);
    const repos = cacheReposFrom(args);
    const timeouts = registryTimeouts(args);
    const ctx = makeContext(args);
    const insecure = (args['insecure-registry'] ?? []).map(String);
    const registryCache = repos && (hasTarballs || importPath !== undefined)
      ? new RegistryCache({ repos, cache: ctx.cache, warn: (m) => ctx.out.warn(m), jobs: ctx.jobs, insecureRegistries: insecure, timeouts })
      : undefined;
    try {
      if (hasTarballs) return await warmTarballs(ctx, (args.tarball ?? []).map(String), registryCache);
      if (importPath !== undefined) {
        return await warmLayers(ctx, layers, importPath, platforms.length > 0 ? platforms : [parsePlatform('linux/amd64')], buildId, registryCache);
      }
    } finally {
      await registryCache?.close();
    }
    return warmBases(ctx, targets, platforms.length > 0 ? platforms : undefined, Boolean(args.offline), (args['insecure-registry'] ?? []).map(String), timeouts);
  },
};

type Kind = 'bases' | 'layers' | 'archives';
const KINDS: Record<Kind, string> = { bases: 'base images (REF...)', layers: 'layers (SRC --import-path)', archives: 'archives (--tarball)' };

/** The options that apply to some kinds of target only: given with another, they would do nothing. */
const ONLY_FOR: Record<string, Kind[]> = {
  'import-path': ['layers'], 'build-id': ['layers'], owner: ['layers'], mode: ['layers'], exclude: ['layers'], 'exclude-from': ['layers'],
  platform: ['bases', 'layers'],
  // Layers and archives are built and imported here; only a base can be checked for without a registry.
  offline: ['bases'],
};

/** An option given for another kind than the one warmed (`--platform` with `--tarball`) is refused, not ignored. */
function refuseOtherKinds(args: WarmArgs, kind: Kind): void {
  for (const [flag, kinds] of Object.entries(ONLY_FOR)) {
    const v = (args as unknown as Record<string, unknown>)[flag];
    const given = Array.isArray(v) ? v.length > 0 : v !== undefined && v !== false;
    if (given && !kinds.includes(kind)) throw usageError(`--${flag} is for warming ${kinds.map((k) => KINDS[k]).join(' or ')}, not ${KINDS[kind]}`);
  }
}

/**
 * Without --import-path, warm's targets are image references; one that reads as a path (./x, ../x,
 * /x, SRC:/DEST, which no reference can be, or a file or folder that is there) was meant as a layer.
 */
function isLayerSource(target: string): boolean {
  return target === '.' || target === '..' || readsAsPath(target) || existsSync(resolve(target));
}

const readsAsPath = (target: string): boolean => /^\.{0,2}\//.test(target) || target.includes(':/');

/** For a bare name that is also a path here (`warm golang` beside ./golang): how to name the image. */
function imageNamedSo(target: string): string {
  if (readsAsPath(target)) return '';
  try {
    return ` (for the image, name its registry: ${formatReference(parseReference(target))})`;
  } catch {
    return '';
  }
}

/** Imports archives one after another (each already uses every core); prints one line per archive. */
export async function warmTarballs(ctx: Context, paths: string[], rc?: RegistryCache): Promise<void> {
  const results: LoadedArchive[] = [];
  for (const path of paths) {
    // A registry cache that knows the archive spares importing it; one that does not gets its record.
    const remote = rc && (async (key: string) => (await rc.findArchive(archiveRecordKey(key), { kind: 'none' }))?.record.image);
    const progress = new Progress(ctx.out);
    let last = 0;
    try {
      progress.phase(`importing ${path}`);
      const loaded = await loadArchive(path, {
        cache: ctx.cache, gzip: ctx.gzip, jobs: ctx.jobs, warn: (m) => ctx.out.warn(m), remote,
        onRead: (read, total) => {
          progress.bytesRead(read - last, total);
          last = read;
        },
        onCompress: (e) => progress.layerCompressing(e),
      });
      if (rc && !loaded.remote) rc.offerArchive(archiveRecordKey(loaded.key), loaded.image, await archiveManifests(ctx, loaded));
      results.push(loaded);
    } finally {
      progress.stop();
    }
    // As build's phase: a line saying it is done, which a failure leaves to its error.
    progress.endPhase(results.at(-1)!.cached ? 'cached' : 'done');
  }
  const items = results.map((r) => {
    const manifests = r.image.kind === 'manifest' ? [r.image.manifest] : r.image.index.manifests;
    return {
      kind: 'archive' as const,
      target: r.path,
      digest: topDescriptor(r.image).digest,
      cached: r.cached,
      remote: Boolean(r.remote),
      archive: r.path,
      format: r.format,
      archiveDigest: r.archiveDigest,
      // Per image, not per index entry: many entries may name one manifest.
      layers: [...new Map(manifests.map((m) => [m.descriptor.digest, m.layers.length])).values()].reduce((n, k) => n + k, 0),
    };
  });
  const lines = items.map((r) => `${r.archive}: ${r.digest} (${r.layers} layer${r.layers === 1 ? '' : 's'}, ${r.remote ? 'recorded in the registry cache' : r.cached ? 'already cached' : 'imported'})`);
  report(ctx, items, lines, 'archives', 'imported');
}

/** Fetches base images into the cache one reference at a time (layers of each in parallel). */
export async function warmBases(ctx: Context, refs: string[], platforms: Platform[] | undefined, offline: boolean, insecureRegistries: string[], timeouts: Partial<Timeouts> = {}): Promise<void> {
  const client = new RegistryClient({ insecureRegistries, jobs: ctx.jobs, warn: (m) => ctx.out.warn(m), cache: ctx.cache, timeouts });
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
  const items = results.map((r) => ({
    kind: 'base' as const, target: r.reference, digest: r.digest, cached: r.fetched === 0, remote: false,
    reference: r.reference, platforms: r.platforms, layers: r.layers, fetched: r.fetched, bytesFetched: r.bytesFetched,
  }));
  const lines = results.map((r) => `${r.reference}: ${describePlatforms(r.platforms)}; ${r.layers} layer${r.layers === 1 ? '' : 's'}, ${r.fetched} fetched (${formatBytes(r.bytesFetched)}), ${r.layers - r.fetched} already cached`);
  report(ctx, items, lines, 'base images', 'fetched');
}

/** Pre-builds layers exactly as `build` would, for every platform asked for. */
export async function warmLayers(ctx: Context, parsed: LayerSource[], importPath: string, platforms: Platform[], buildId: string | undefined, rc?: RegistryCache): Promise<void> {
  // Records only: a layer the registry cache has is checked there, not fetched.
  const tier = rc && layerTier(rc, { target: { kind: 'none' } });
  const items: (Warmed & { source: string; dest: string; platform: string; size: number; diffid: Digest })[] = [];
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
        tier,
      });
      items.push({
        kind: 'layer', target: `${source.src}:${source.dest || '/'}`, digest: layer.descriptor.digest, cached: layer.cached, remote: Boolean(layer.remote),
        source: source.src, dest: source.dest || '/', platform: formatPlatform(platform), size: layer.descriptor.size, diffid: layer.diffid,
      });
    }
  }
  const lines = items.map((r) => `${r.target} ${r.platform}: ${r.digest} (${r.remote ? 'recorded in the registry cache' : r.cached ? 'already cached' : 'built'})`);
  report(ctx, items, lines, 'layers', 'built');
}

/** What every warmed target has, first in its --json entry (docs/cli-json.md). */
interface Warmed {
  kind: 'base' | 'layer' | 'archive';
  target: string;
  digest: Digest;
  cached: boolean;
  remote: boolean;
}

/**
 * One --json shape whatever was warmed: `{"warmed": [...], "total", "cached"}`. In text, a line per
 * target and, when there were several, a closing count, so the last line always sums up.
 */
function report(ctx: Context, items: Warmed[], lines: string[], what: string, done: string): void {
  const cached = items.filter((i) => i.cached).length;
  if (items.length > 1) lines.push(`warmed ${items.length} ${what}: ${items.length - cached} ${done}, ${cached} already cached`);
  ctx.out.result({ warmed: items, total: items.length, cached }, lines.join('\n'));
}

/** The exact bytes of an imported archive's index and manifests (in the store), for its record. */
async function archiveManifests(ctx: Context, loaded: LoadedArchive): Promise<Map<Digest, Buffer>> {
  const image = await archivePushable(ctx.cache, loaded.image);
  const out = new Map<Digest, Buffer>([[image.descriptor.digest, image.bytes]]);
  if (image.kind === 'index') for (const m of image.manifests) out.set(m.descriptor.digest, m.bytes);
  return out;
}
