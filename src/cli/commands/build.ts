import type { Argv, CommandModule } from 'yargs';
import { usageError } from '../../errors.js';
import { buildLayer, validateBuildId } from '../../layer/build.js';
import { parseLayerSource } from '../../layer/source.js';
import { parsePlatform } from '../../oci/platform.js';
import { type GlobalArgs, type RegistryArgs, globalOptions, makeContext, registryOptions, registryTimeouts, sourceDateEpoch } from '../context.js';
import { Progress } from '../progress.js';
import { traceAdd } from '../../util/trace.js';
import { type CacheRepoArgs, cacheRepoOptions, cacheReposFrom } from '../cache-repo.js';
import { importPathOption, layerOptions, layerSettings, withLayerSettings } from '../layer-options.js';

interface BuildArgs extends GlobalArgs, CacheRepoArgs, RegistryArgs {
  source: string;
  'import-path': string;
  platform: string;
  'build-id'?: string | undefined;
}

export const buildCommand: CommandModule<object, BuildArgs> = {
  command: 'build <source>',
  describe: 'Build one layer from SRC[:DEST] through the cache and print its descriptor as JSON',
  builder: (y: Argv) =>
    layerOptions(registryOptions(cacheRepoOptions(globalOptions(y))))
      .positional('source', { type: 'string', demandOption: true, describe: 'File or directory, optionally :/destination/in/image' })
      .option('import-path', { requiresArg: true, type: 'string', demandOption: true, describe: 'What is being built, e.g. github.com/you/app: the namespace of --build-id and Go build IDs (a layer found by its content is shared by every namespace)' })
      .option('platform', { requiresArg: true, type: 'string', default: 'linux/amd64', describe: 'OS/ARCH[/VARIANT] the layer is for' })
      .option('build-id', { requiresArg: true, type: 'string', describe: 'A build id you already know (lockfile hash, git tree id)' })
      .example('$0 build ./out/app:/usr/local/bin/app --import-path example.com/app --platform linux/arm64', '') as unknown as Argv<BuildArgs>,
  handler: async (args) => {
    if (args.platform.includes(',')) throw usageError(`build makes one layer for one --platform, not ${JSON.stringify(args.platform)} (warm and publish take several)`);
    const platform = parsePlatform(args.platform);
    const importPath = importPathOption(args['import-path']);
    const source = withLayerSettings(parseLayerSource(args.source), layerSettings(args as unknown as Record<string, unknown>));
    // Before the cache is opened: bad usage makes no cache folder.
    const buildId = args['build-id'] === undefined ? undefined : validateBuildId(args['build-id']);
    const repos = cacheReposFrom(args);
    const timeouts = registryTimeouts(args);
    const ctx = makeContext(args);
    // The registry cache is loaded only when asked for: a plain local hit must not load it.
    const registryCache = repos && new (await import('../../regcache/cache.js')).RegistryCache({ repos, cache: ctx.cache, warn: (m) => ctx.out.warn(m), jobs: ctx.jobs, timeouts });
    const tier = registryCache && (await import('../../regcache/layers.js')).layerTier(registryCache, { target: { kind: 'local' } });
    const progress = new Progress(ctx.out);
    const layer = await buildLayer(source, {
      cache: ctx.cache,
      importPath,
      platform,
      buildId,
      mtime: sourceDateEpoch(),
      gzip: ctx.gzip,
      warn: (m) => ctx.out.warn(m),
      tier,
      // Drawn only when the layer is tarred: a hit says nothing.
      onPack: (n) => {
        progress.phase('building layer');
        progress.bytesExpected(n);
      },
      onBytes: (n) => progress.bytesRead(n),
    });
    progress.stop();
    progress.endPhase();
    // Read by the launcher: a hit's run is the one to make a code cache from (src/cli/startup/launch.cts).
    if (layer.cached) traceAdd('layer.cached', 1);
    ctx.out.result({
      mediaType: layer.descriptor.mediaType,
      digest: layer.descriptor.digest,
      size: layer.descriptor.size,
      diffid: layer.diffid,
      cached: layer.cached,
      remote: Boolean(layer.remote),
    });
    await registryCache?.close();
  },
};
