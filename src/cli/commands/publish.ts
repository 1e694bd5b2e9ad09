import { basename } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { usageError } from '../../errors.js';
import { loadBase, scratchBase } from '../../image/base.js';
import { type PlatformPlan, buildImage } from '../../image/build.js';
import { type ConfigOverrides, createdTime, parseCommand, parseKeyValue } from '../../image/config.js';
import type { Pushable } from '../../oci/pushable.js';
import { cachedBlob } from '../../image/blobs.js';
import { layerSpecsFor } from '../../image/sources.js';
import { type OutputTarget, parseOutput, parseRepo } from '../../image/target.js';
import { validateImportPath } from '../../layer/build.js';
import { writeLayout } from '../../layout/write.js';
import type { Digest } from '../../oci/digest.js';
import { type Platform, formatPlatform, parsePlatform } from '../../oci/platform.js';
import { type Reference, formatReference, formatRepository, parseReference } from '../../reference/reference.js';
import { RegistryClient } from '../../remote/client.js';
import { BlobPusher } from '../../remote/blob-pusher.js';
import { isForeign, pushImage, targetDigest } from '../../remote/push.js';
import { writeDockerArchive } from '../../tarball/write.js';
import type { Descriptor } from '../../oci/descriptor.js';
import { type CacheRepos, RegistryCache } from '../../regcache/cache.js';
import { layerTier } from '../../regcache/layers.js';
import { type CacheRepoArgs, cacheRepoOptions, cacheReposFrom } from '../cache-repo.js';
import { type Context, type GlobalArgs, type RegistryArgs, globalOptions, makeContext, registryOptions, registryTimeouts, sourceDateEpoch } from '../context.js';
import type { Timeouts } from '../../remote/timeouts.js';
import { formatBytes } from '../output.js';

/** A flag given once is a string, given several times an array; both mean a list. */
type Many = string | string[] | undefined;

interface PublishArgs extends GlobalArgs, CacheRepoArgs, RegistryArgs {
  sources: string[];
  base: string;
  repo?: string | undefined;
  platform?: Many;
  'import-path'?: string | undefined;
  entrypoint?: string | undefined;
  cmd?: string | undefined;
  env?: Many;
  workdir?: string | undefined;
  user?: string | undefined;
  label?: Many;
  output?: string | undefined;
  offline?: boolean | undefined;
  'insecure-registry'?: Many;
}

function list(v: Many): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v.map(String) : [String(v)];
}

/** Flags that may appear once only: given twice, yargs makes an array, and the intent is unclear. */
function single(v: unknown, flag: string): string | undefined {
  if (Array.isArray(v)) throw usageError(`--${flag} given ${v.length} times: give it once`);
  return v === undefined ? undefined : String(v);
}

export const publishCommand: CommandModule<object, PublishArgs> = {
  command: 'publish <sources..>',
  describe: 'Build layers through the cache onto a base image and push the image (or write it as an OCI layout or docker-archive)',
  builder: (y: Argv) =>
    registryOptions(cacheRepoOptions(globalOptions(y)))
      .positional('sources', {
        type: 'string',
        array: true,
        demandOption: true,
        describe: 'One layer each, in order: SRC[:DEST]. {os} {arch} {variant} {platform} (linux_arm64) are replaced per platform',
      })
      .option('base', { requiresArg: true, type: 'string', demandOption: true, describe: "Base image reference, or 'scratch' for none" })
      .option('repo', { requiresArg: true, type: 'string', describe: 'Where to push: REGISTRY/REPO[:TAG] (tag default latest); optional with --output' })
      .option('platform', { requiresArg: true, type: 'string', describe: 'OS/ARCH[/VARIANT]; repeat for a multi-platform index (default linux/amd64)' })
      .option('import-path', { requiresArg: true, type: 'string', describe: 'Namespace of Go build IDs in the cache (default: REGISTRY/REPO of --repo, else local/<name of the first SRC>); a layer found by its content is shared by every namespace' })
      .option('entrypoint', { requiresArg: true, type: 'string', describe: 'A JSON array (\'["/app","--serve"]\') or one program path taken whole' })
      .option('cmd', { requiresArg: true, type: 'string', describe: 'Arguments: a JSON array, or one string taken whole' })
      .option('env', { requiresArg: true, type: 'string', describe: 'KEY=VALUE, repeatable; replaces a KEY the base sets' })
      .option('workdir', { requiresArg: true, type: 'string', describe: 'Working directory' })
      .option('user', { requiresArg: true, type: 'string', describe: 'User (name, uid or uid:gid)' })
      .option('label', { requiresArg: true, type: 'string', describe: 'KEY=VALUE image label, repeatable' })
      .option('output', { requiresArg: true, type: 'string', describe: 'Write instead of pushing: oci:DIR (OCI image layout) or docker-archive:FILE (docker load)' })
      .option('offline', { type: 'boolean', default: false, describe: 'Take the base from the cache only; never contact its registry' })
      .option('insecure-registry', { requiresArg: true, type: 'string', describe: 'HOST[:PORT] reached over plain HTTP, repeatable (loopback always is)' })
      .example('$0 publish ./out/app:/app --base scratch --repo ghcr.io/you/app:v1 --cache-repo ghcr.io/you/kocache', 'share the cache with every runner')
      .example('$0 publish ./out/app:/app --base scratch --entrypoint /app --output oci:./image', 'no registry at all')
      .example('$0 publish ./dist/app_{os}_{arch}:/usr/local/bin/app --base gcr.io/distroless/static --repo ghcr.io/you/app:v1 --platform linux/amd64 --platform linux/arm64 --entrypoint /usr/local/bin/app', '') as unknown as Argv<PublishArgs>,
  handler: async (args) => {
    const req = parseRequest(args);
    const ctx = makeContext(args);
    await publish(req, ctx);
  },
};

/** Everything publish needs, validated before any work starts (no layer built, no request sent). */
interface PublishRequest {
  base: string;
  repo: Reference | undefined;
  output: OutputTarget;
  platforms: Platform[];
  specs: string[];
  importPath: string;
  overrides: ConfigOverrides;
  offline: boolean;
  insecure: string[];
  /** The registry cache (--cache-repo, --cache-from, --cache-to, KOCACHE_REPO), if any. */
  cacheRepos: CacheRepos | undefined;
  timeouts: Partial<Timeouts>;
  /** SOURCE_DATE_EPOCH (or 0): layer mtimes, config and history times, archive entry times. */
  epoch: number;
  plans: Omit<PlatformPlan, 'base'>[];
}

function parseRequest(args: PublishArgs): PublishRequest {
  const output = parseOutput(single(args.output, 'output'));
  const repoText = single(args.repo, 'repo');
  if (output.kind === 'registry' && repoText === undefined) {
    throw usageError('publish needs --repo REGISTRY/REPO[:TAG] to push to (or --output oci:DIR / docker-archive:FILE to write a file)');
  }
  const repo = repoText === undefined ? undefined : parseRepo(repoText);
  const base = single(args.base, 'base') ?? 'scratch';
  // Checked now, so a typo fails before any layer is built (a digest is welcome: pinning a base is good).
  if (base !== 'scratch') parseReference(base);

  const platformTexts = list(args.platform);
  const platforms = (platformTexts.length ? platformTexts : ['linux/amd64']).map(parsePlatform);
  const seen = new Set<string>();
  for (const p of platforms) {
    const key = formatPlatform(p);
    if (seen.has(key)) throw usageError(`--platform ${key} given twice`);
    seen.add(key);
  }
  if (output.kind === 'docker-archive' && platforms.length > 1) {
    throw usageError(`docker-archive holds one image, not ${platforms.length} platforms: pick one --platform, or use --output oci:DIR for a multi-platform index`);
  }

  const overrides: ConfigOverrides = {};
  const entrypoint = single(args.entrypoint, 'entrypoint');
  if (entrypoint !== undefined) overrides.entrypoint = parseCommand(entrypoint, 'entrypoint');
  const cmd = single(args.cmd, 'cmd');
  if (cmd !== undefined) overrides.cmd = parseCommand(cmd, 'cmd');
  const env = list(args.env).map((e) => parseKeyValue(e, 'env'));
  if (env.length) overrides.env = env;
  const labels = list(args.label).map((l) => parseKeyValue(l, 'label'));
  if (labels.length) overrides.labels = labels;
  const workdir = single(args.workdir, 'workdir');
  if (workdir !== undefined) {
    if (!workdir.startsWith('/')) throw usageError(`--workdir ${JSON.stringify(workdir)} must be an absolute path in the image`);
    overrides.workdir = workdir;
  }
  const user = single(args.user, 'user');
  if (user !== undefined) overrides.user = user;

  const specs = list(args.sources as Many);
  if (specs.length === 0) throw usageError('publish needs at least one SRC[:DEST] layer');
  const plans = platforms.map((platform) => ({ platform, layers: layerSpecsFor(specs, platform) }));

  const importPath = validateImportPath(
    single(args['import-path'], 'import-path') ??
      (repo ? formatRepository(repo) : `local/${basename(plans[0]!.layers[0]!.source.src) || 'image'}`),
  );
  return {
    base, repo, output, platforms, specs, importPath, overrides, plans,
    offline: Boolean(args.offline),
    insecure: list(args['insecure-registry']),
    cacheRepos: cacheReposFrom(args),
    timeouts: registryTimeouts(args),
    epoch: sourceDateEpoch(),
  };
}

async function publish(req: PublishRequest, ctx: Context): Promise<void> {
  const out = ctx.out;
  const warn = (m: string) => out.warn(m);
  // A scratch base written to a file needs no registry: no client, no connection, no credentials.
  const needsRegistry = req.base !== 'scratch' || req.output.kind === 'registry';
  const client = needsRegistry ? new RegistryClient({ insecureRegistries: req.insecure, jobs: ctx.jobs, warn, cache: ctx.cache, timeouts: req.timeouts }) : undefined;
  try {
    const [bases, current] = await Promise.all([
      req.base === 'scratch' || !client
        ? req.platforms.map(scratchBase)
        : loadBase(req.base, req.platforms, { client, cache: ctx.cache, offline: req.offline, warn }),
      client && req.output.kind === 'registry' ? targetDigest(client, req.repo!) : undefined,
    ]);

    // Registry output: every blob's push starts as soon as the blob is known (base layers now,
    // each new layer the moment it is built), not once the whole image is; pushImage then waits
    // for those pushes instead of starting its own.
    const pusher = client && req.output.kind === 'registry' ? new BlobPusher(client, { registry: req.repo!.registry, repository: req.repo!.repository }, ctx.jobs) : undefined;
    for (const base of pusher ? bases : []) {
      for (const layer of base.layers) if (!isForeign(layer)) void pusher!.push(layer);
    }
    // The registry cache: a layer it answers is mounted (or copied) into the target while it is
    // looked up, and the push is told so; records are written in the background, each after its
    // layer's push, and waited for only once the image is delivered.
    const registryCache = req.cacheRepos
      ? new RegistryCache({ repos: req.cacheRepos, cache: ctx.cache, warn, jobs: ctx.jobs, insecureRegistries: req.insecure })
      : undefined;
    const tier = registryCache && layerTier(registryCache, {
      target: pusher ? { kind: 'registry', repo: req.repo!, settle: (d, o) => pusher.settle(d, o) } : { kind: 'local' },
      ...(pusher ? { pushed: (d: Descriptor) => pusher.push(cachedBlob(ctx.cache, d)) } : {}),
    });
    let read = 0;
    let built = 0;
    const building = buildImage(
      req.plans.map((p, i) => ({ ...p, base: bases[i]! })),
      {
        cache: ctx.cache,
        importPath: req.importPath,
        mtime: req.epoch,
        created: createdTime(req.epoch),
        overrides: req.overrides,
        gzip: ctx.gzip,
        warn,
        tier,
        onBytes: (n) => {
          read += n;
          out.progress(() => `building layers: ${formatBytes(read)} read`);
        },
        onLayer: (e) => {
          void pusher?.push(cachedBlob(ctx.cache, e.descriptor));
          if (!e.cached) built++;
          const where = req.platforms.length > 1 ? ` (${formatPlatform(e.platform)})` : '';
          out.progress(() => `layer ${e.spec}${where}: ${e.cached ? 'cached' : 'built'}`);
        },
      },
    );
    // A failed early upload ends the publish now, not once every layer is built (a build that
    // fails after that has nobody left to tell).
    building.catch(() => undefined);
    const image = await (pusher ? Promise.race([building, pusher.failure]) : building);
    const total = req.plans.length * req.specs.length;
    // Said only once the image is delivered: on failure the error is the one line on stderr.
    await deliver(req, ctx, image, client, `layers ${built} built, ${total - built} cached`, pusher, current);
    // The image is out and said; the cache records still being written are waited for now (a
    // failure among them was a warning). On a failed publish they are not: the process ends.
    await registryCache?.close();
  } finally {
    await client?.close();
  }
}

async function deliver(
  req: PublishRequest,
  ctx: Context,
  image: Pushable,
  client: RegistryClient | undefined,
  layers: string,
  pusher: BlobPusher | undefined,
  current: Digest | undefined,
): Promise<void> {
  const out = ctx.out;
  const digest = image.descriptor.digest;
  const named = req.repo ? `${formatRepository(req.repo)}@${digest}` : digest;
  switch (req.output.kind) {
    case 'registry': {
      const repo = req.repo!;
      const pushed = await pushImage(client!, repo, image, {
        jobs: ctx.jobs,
        pusher,
        current,
        onProgress: (e) => out.progress(() => `pushing ${formatReference(repo)}: ${e.done}/${e.total}`),
      });
      out.info(`pushed ${formatReference(repo)}: ${layers}; blobs ${pushed.uploaded} uploaded, ${pushed.mounted} mounted, ${pushed.present} already present`);
      out.result(
        { reference: pushed.reference, digest: pushed.digest, uploaded: pushed.uploaded, mounted: pushed.mounted, present: pushed.present },
        pushed.reference,
      );
      return;
    }
    case 'oci': {
      const r = await writeLayout(req.output.path, image, {
        refName: req.repo?.tag,
        imageName: req.repo ? formatReference(req.repo) : undefined,
        jobs: ctx.jobs,
      });
      out.info(`wrote OCI layout ${req.output.path}: ${layers}; blobs ${r.written} written, ${r.present} already there`);
      out.result({ output: `oci:${req.output.path}`, reference: named, digest, written: r.written, present: r.present }, named);
      return;
    }
    case 'docker-archive': {
      if (image.kind !== 'manifest') throw usageError('docker-archive holds one image, not an index');
      const r = await writeDockerArchive(req.output.path, image, {
        repoTags: req.repo ? [formatReference(req.repo)] : [],
        mtime: req.epoch,
      });
      out.info(`wrote docker-archive ${req.output.path} (${formatBytes(r.bytes)}): ${layers}; docker load names it ${r.imageId}`);
      out.result({ output: `docker-archive:${req.output.path}`, reference: named, digest, imageId: r.imageId }, named);
      return;
    }
  }
}
