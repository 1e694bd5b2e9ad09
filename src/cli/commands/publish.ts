import { basename } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { usageError } from '../../errors.js';
import { loadBase } from '../../image/base.js';
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
import { type Reference, formatReference, formatRepository, parseReference, withIdentifier } from '../../reference/reference.js';
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
import { loadProject } from '../project.js';
import { Progress } from '../progress.js';
import { type LayerSettings, layerOptions, layerSettings, withLayerSettings } from '../layer-options.js';
import { publishOptions, withProject, writeResultFile } from '../publish-options.js';
import { standardAnnotations } from '../../image/annotations.js';
import { parseLayerSpecText } from '../../layer/source.js';

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
  tag?: Many;
  annotation?: Many;
  'image-refs'?: string | undefined;
  'digest-file'?: string | undefined;
  config?: string | undefined;
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
  command: 'publish [sources..]',
  describe: 'Build layers through the cache onto a base image and push the image (or write it as an OCI layout or docker-archive)',
  builder: (y: Argv) =>
    publishOptions(layerOptions(registryOptions(cacheRepoOptions(globalOptions(y)))))
      .positional('sources', {
        type: 'string',
        array: true,
        describe: 'One layer each, in order: SRC[:DEST] (default: the project file\'s layers). {os} {arch} {variant} {platform} (linux_arm64) are replaced per platform',
      })
      .option('base', { requiresArg: true, type: 'string', describe: "Base image reference, or 'scratch' for none (default: the project file's)" })
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
    const req = parseRequest(withProject(args, loadProject(single(args.config, 'config'))));
    const ctx = makeContext(args);
    await publish(req, ctx);
  },
};

/** Everything publish needs, validated before any work starts (no layer built, no request sent). */
interface PublishRequest {
  base: string;
  repo: Reference | undefined;
  output: OutputTarget;
  layerSettings: LayerSettings;
  /** 'all': every platform of the base, known once it is loaded. */
  platforms: Platform[] | 'all';
  /** Every tag the image gets (one manifest upload each, one digest); empty with no --repo. */
  tags: string[];
  annotations: Record<string, string>;
  imageRefs: string | undefined;
  digestFile: string | undefined;
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
  /** Per platform, when the platforms are known before the base is (not with 'all'). */
  plans: Omit<PlatformPlan, 'base'>[] | undefined;
}

function parseRequest(args: PublishArgs): PublishRequest {
  const output = parseOutput(single(args.output, 'output'));
  const repoText = single(args.repo, 'repo');
  if (output.kind === 'registry' && repoText === undefined) {
    throw usageError('publish needs --repo REGISTRY/REPO[:TAG] to push to (or --output oci:DIR / docker-archive:FILE to write a file)');
  }
  const named = repoText === undefined ? undefined : splitTags(repoText);
  const repo = named === undefined ? undefined : parseRepo(named.repo);
  // Without --repo, tags still name the entries of an OCI layout.
  const tags = publishTags(named?.tags ?? [], list(args.tag));
  if (repo) repo.tag = tags[0]!;
  const base = single(args.base, 'base');
  if (base === undefined) throw usageError('publish needs --base REF (or --base scratch for none), or "base" in the project file');
  // Checked now, so a typo fails before any layer is built (a digest is welcome: pinning a base is good).
  if (base !== 'scratch') parseReference(base);

  const platformTexts = list(args.platform).flatMap((p) => p.split(',')).map((p) => p.trim());
  const all = platformTexts.includes('all');
  if (all && platformTexts.length > 1) throw usageError('--platform all means every platform of the base: give it alone');
  const platforms = all ? ('all' as const) : (platformTexts.length ? platformTexts : ['linux/amd64']).map(parsePlatform);
  const seen = new Set<string>();
  for (const p of all ? [] : (platforms as Platform[])) {
    const key = formatPlatform(p);
    if (seen.has(key)) throw usageError(`--platform ${key} given twice`);
    seen.add(key);
  }
  if (output.kind === 'docker-archive' && platforms !== 'all' && platforms.length > 1) {
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
  const settings = layerSettings(args as unknown as Record<string, unknown>);
  const plans = platforms === 'all' ? undefined : platforms.map((platform) => ({ platform, layers: specsFor(specs, platform, settings) }));
  const annotations = Object.fromEntries(list(args.annotation).map((a) => parseKeyValue(a, 'annotation')));

  const importPath = validateImportPath(
    single(args['import-path'], 'import-path') ??
      (repo ? formatRepository(repo) : `local/${basename(plans?.[0]!.layers[0]!.source.src ?? parseLayerSpecText(specs[0]!).src) || 'image'}`),
  );
  return {
    base, repo, output, platforms, specs, importPath, overrides, plans, tags, layerSettings: settings,
    annotations: { ...standardAnnotations(), ...annotations },
    imageRefs: single(args['image-refs'], 'image-refs'),
    digestFile: single(args['digest-file'], 'digest-file'),
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
  const progress = new Progress(out);
  try {
    if (req.base !== 'scratch') progress.phase(`base ${req.base}`);
    const [bases, current] = await Promise.all([
      req.base === 'scratch' || !client
        ? loadBase('scratch', req.platforms, { client: client!, cache: ctx.cache })
        : loadBase(req.base, req.platforms, { client, cache: ctx.cache, offline: req.offline, warn }),
      client && req.output.kind === 'registry' ? targetDigest(client, req.repo!) : undefined,
    ]);
    const plans = req.plans ?? bases.map((b) => ({ platform: b.platform, layers: specsFor(req.specs, b.platform, req.layerSettings) }));
    if (req.output.kind === 'docker-archive' && plans.length > 1) {
      throw usageError(`docker-archive holds one image, and the base has ${plans.length} platforms: pick one --platform`);
    }

    // Registry output: every blob's push starts as soon as the blob is known (base layers now,
    // each new layer the moment it is built), not once the whole image is; pushImage then waits
    // for those pushes instead of starting its own.
    const pusher = client && req.output.kind === 'registry' ? new BlobPusher(client, { registry: req.repo!.registry, repository: req.repo!.repository }, ctx.jobs) : undefined;
    for (const base of pusher ? bases : []) {
      for (const layer of base.layers) if (!isForeign(layer)) void pusher!.push(progress.counting(layer));
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
    progress.phase('building layers');
    progress.layersToDo(plans.length * req.specs.length);
    let built = 0;
    const building = buildImage(
      plans.map((p, i) => ({ ...p, base: bases[i]! })),
      {
        cache: ctx.cache,
        importPath: req.importPath,
        mtime: req.epoch,
        created: createdTime(req.epoch),
        overrides: req.overrides,
        annotations: req.annotations,
        gzip: ctx.gzip,
        warn,
        tier,
        onBytes: (n) => progress.bytesRead(n),
        onLayer: (e) => {
          void pusher?.push(progress.counting(cachedBlob(ctx.cache, e.descriptor)));
          if (!e.cached) built++;
          const where = plans.length > 1 ? ` (${formatPlatform(e.platform)})` : '';
          progress.layerDone(`${e.spec}${where} ${e.cached ? 'cached' : 'built'}`);
        },
      },
    );
    // A failed early upload ends the publish now, not once every layer is built (a build that
    // fails after that has nobody left to tell).
    building.catch(() => undefined);
    const image = await (pusher ? Promise.race([building, pusher.failure]) : building);
    const total = plans.length * req.specs.length;
    const layers = { built, cached: total - built, reused: bases.reduce((n, b) => n + b.layers.length, 0) };
    progress.endPhase(`${layers.built} built, ${layers.cached} cached`);
    progress.phase(req.output.kind === 'registry' ? `pushing to ${formatRepository(req.repo!)}` : `writing ${req.output.kind}`);
    const platforms = plans.map((p, i) => ({
      platform: formatPlatform(p.platform),
      digest: image.kind === 'index' ? image.manifests[i]!.descriptor.digest : image.descriptor.digest,
    }));
    // Said only once the image is delivered: on failure the error is the one line on stderr.
    const summary = `layers ${layers.built} built, ${layers.cached} cached`;
    // The progress line stops before the summary line, which says how the last phase went.
    const result = await deliver(req, ctx, image, client, summary, pusher, current, () => progress.stop());
    const outcome: PublishResult = {
      reference: result.reference, digest: result.digest, tags: result.tags, platforms, output: result.output, layers,
      uploaded: result.uploaded, mounted: result.mounted, present: result.present, written: result.written,
      bytesUploaded: result.bytesUploaded, imageId: result.imageId,
    };
    if (req.imageRefs !== undefined) writeResultFile(req.imageRefs, `${outcome.reference}\n`, '--image-refs file');
    if (req.digestFile !== undefined) writeResultFile(req.digestFile, outcome.digest, '--digest-file');
    out.result(outcome, outcome.reference);
    // The image is out and said; the cache records still being written are waited for now (a
    // failure among them was a warning). On a failed publish they are not: the process ends.
    await registryCache?.close();
  } finally {
    progress.stop();
    await client?.close();
  }
}

/** `kocache publish --json`: one shape for every output (docs/cli-json.md). */
interface PublishResult {
  reference: string;
  digest: Digest;
  tags: string[];
  platforms: { platform: string; digest: Digest }[];
  output: string;
  layers: { built: number; cached: number; reused: number };
  uploaded: number;
  mounted: number;
  present: number;
  written: number;
  bytesUploaded: number;
  imageId: string | null;
}

type Delivered = Omit<PublishResult, 'platforms' | 'layers'>;

async function deliver(
  req: PublishRequest,
  ctx: Context,
  image: Pushable,
  client: RegistryClient | undefined,
  layers: string,
  pusher: BlobPusher | undefined,
  current: Digest | undefined,
  done: () => void,
): Promise<Delivered> {
  const out = ctx.out;
  const digest = image.descriptor.digest;
  const named = req.repo ? `${formatRepository(req.repo)}@${digest}` : digest;
  const none = { uploaded: 0, mounted: 0, present: 0, written: 0, bytesUploaded: 0, imageId: null };
  switch (req.output.kind) {
    case 'registry': {
      const repo = req.repo!;
      const pushed = await pushImage(client!, repo, image, {
        jobs: ctx.jobs,
        pusher,
        current,
      });
      // The other tags: the same manifest bytes, so the same digest; every blob is there already.
      for (const tag of req.tags.slice(1)) await client!.putManifest(withIdentifier(repo, { tag }), image.bytes, image.descriptor.mediaType);
      const tagged = req.tags.length > 1 ? ` (tags ${req.tags.join(', ')})` : '';
      done();
      out.info(`pushed ${formatReference(repo)}${tagged}: ${layers}; blobs ${pushed.uploaded} uploaded, ${pushed.mounted} mounted, ${pushed.present} already present`);
      return {
        ...none, reference: pushed.reference, digest: pushed.digest, tags: req.tags, output: 'registry',
        uploaded: pushed.uploaded, mounted: pushed.mounted, present: pushed.present, bytesUploaded: pushed.bytesUploaded,
      };
    }
    case 'oci': {
      // skopeo's oci:DIR:TAG; else the --repo tags; else latest. Each tag replaces its own entry.
      const tags = req.output.tag !== undefined ? [req.output.tag] : req.tags;
      let written = 0;
      let present = 0;
      for (const tag of tags) {
        const r = await writeLayout(req.output.path, image, {
          refName: tag,
          imageName: req.repo ? formatReference(withIdentifier(req.repo, { tag })) : undefined,
          jobs: ctx.jobs,
        });
        if (written === 0 && present === 0) present = r.present; // the first write tells what was there
        written += r.written;
      }
      done();
      out.info(`wrote OCI layout ${req.output.path} (tag ${tags.join(', ')}): ${layers}; blobs ${written} written, ${present} already there`);
      return { ...none, reference: named, digest, tags, output: `oci:${req.output.path}`, written, present };
    }
    case 'docker-archive': {
      if (image.kind !== 'manifest') throw usageError('docker-archive holds one image, not an index');
      const repoTags = req.repo ? req.tags.map((tag) => formatReference(withIdentifier(req.repo!, { tag }))) : [];
      const r = await writeDockerArchive(req.output.path, image, { repoTags, mtime: req.epoch });
      done();
      out.info(`wrote docker-archive ${req.output.path} (${formatBytes(r.bytes)}): ${layers}; docker load names it ${r.imageId}`);
      return { ...none, reference: named, digest, tags: req.repo ? req.tags : [], output: `docker-archive:${req.output.path}`, written: imageBlobCount(image), imageId: r.imageId };
    }
  }
}

function imageBlobCount(image: Pushable): number {
  return image.kind === 'manifest' ? image.layers.length + 1 : 0;
}

/** Every SRC[:DEST] of one platform, with the command's owner, mode and excludes. */
function specsFor(specs: string[], platform: Platform, settings: LayerSettings) {
  return layerSpecsFor(specs, platform).map((l) => ({ ...l, source: withLayerSettings(l.source, settings) }));
}

/** `REPO:v1,latest` (ko's --tags in one word): the repository text and its tags. */
function splitTags(text: string): { repo: string; tags: string[] } {
  const colon = text.lastIndexOf(':');
  if (colon < 0 || colon < text.lastIndexOf('/') || text.slice(colon + 1).includes('@')) return { repo: text, tags: [] };
  const tags = text.slice(colon + 1).split(',').map((t) => t.trim());
  return { repo: `${text.slice(0, colon)}:${tags[0]}`, tags };
}

/**
 * The tags to push: those in --repo (`:v1` or `:v1,latest`), then --tag ones. With --tag and no
 * tag in --repo, the --tag ones alone (ko's --tags replaces latest); with neither, latest.
 */
function publishTags(inRepo: string[], flags: string[]): string[] {
  const tags = [...inRepo, ...flags];
  if (tags.length === 0) return ['latest'];
  for (const t of tags) if (!/^[\w][\w.-]{0,127}$/.test(t)) throw usageError(`invalid tag ${JSON.stringify(t)} (letters, digits, '_', '.', '-', at most 128, not starting with '.' or '-')`);
  return [...new Set(tags)];
}
