import type { Argv, CommandModule } from 'yargs';
import { usageError } from '../../errors.js';
import { standardAnnotations } from '../../image/annotations.js';
import type { ConfigOverrides } from '../../image/config.js';
import { type Platform, formatPlatform, parsePlatform } from '../../oci/platform.js';
import { type OutputTarget, type PublishLayer, type PublishOptions, type PublishProgress, type PublishResult, isValidTag } from '../../publish/options.js';
import { planPublish } from '../../publish/plan.js';
import { publish } from '../../publish/publish.js';
import { type Reference, formatReference, formatRepository, parseReference } from '../../reference/reference.js';
import { type CacheRepoArgs, cacheRepoOptions, cacheReposFrom } from '../cache-repo.js';
import { type Context, type GlobalArgs, type RegistryArgs, globalOptions, makeContext, platformTexts, registryOptions, registryTimeouts, sourceDateEpoch } from '../context.js';
import { importPathOption, layerOptions, layerSettings, layerSettingsFor } from '../layer-options.js';
import { formatBytes } from '../output.js';
import { type ProjectLayerSettings, loadProject } from '../project.js';
import { Progress } from '../progress.js';
import { parseCommand, parseKeyValue, parseOutput, parseRepo, publishOptions, withProject, checkResultFile, writeResultFile } from '../publish-options.js';

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
  /** From the project file: per layer, its own mode and excludes (publish-options.ts). */
  layerSettings?: (ProjectLayerSettings | undefined)[] | undefined;
}

function list(v: Many): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v.map(String) : [String(v)];
}

/** A flag that appears once at most (a repeat was refused before the handler: src/cli/once.ts). */
function single(v: unknown): string | undefined {
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
      .option('repo', { requiresArg: true, type: 'string', describe: 'Where to push: REGISTRY/REPO[:TAG[,TAG...]] (tag default latest; default $KOCACHE_DOCKER_REPO); optional with --output' })
      .option('platform', { requiresArg: true, type: 'string', describe: 'OS/ARCH[/VARIANT], a comma list, or all (every platform of the base); repeat for a multi-platform index (default linux/amd64)' })
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
    // The flag as typed; a project file's importPath is the library's to check (bad input, exit 1).
    if (args['import-path'] !== undefined) importPathOption(String(args['import-path']));
    const req = parseRequest(withProject(args, loadProject(single(args.config))));
    // The library's own checks, before the cache is opened: a bad SRC:DEST, or an output inside a
    // layer's source, makes no cache folder. (With `all`, the layers are read once the base is.)
    planPublish(req.options);
    await run(req, makeContext(args));
  },
};

/** The library call the command makes, and what it needs to print the result. */
interface PublishRequest {
  options: Omit<PublishOptions, 'cache' | 'jobs' | 'compression' | 'warn' | 'onProgress' | 'onDelivered'>;
  repo: Reference | undefined;
  output: OutputTarget;
  imageRefs: string | undefined;
  digestFile: string | undefined;
}

function parseRequest(args: PublishArgs): PublishRequest {
  const output = parseOutput(single(args.output));
  const repoText = single(args.repo);
  if (output.kind === 'registry' && repoText === undefined) {
    throw usageError('publish needs --repo REGISTRY/REPO[:TAG] to push to (or --output oci:DIR / docker-archive:FILE to write a file)');
  }
  const named = repoText === undefined ? undefined : splitTags(repoText);
  const repo = named === undefined ? undefined : parseRepo(named.repo);
  // Without --repo, tags still name the entries of an OCI layout.
  const tags = publishTags(named?.tags ?? [], list(args.tag));
  if (repo) repo.tag = tags[0]!;
  const base = single(args.base);
  if (base === undefined) throw usageError('publish needs --base REF (or --base scratch for none), or "base" in the project file');
  // Checked now, so a typo fails before any layer is built (a digest is welcome: pinning a base is good).
  if (base !== 'scratch') parseReference(base);

  const texts = platformTexts(list(args.platform), 'the base');
  const all = texts.includes('all');
  if (all && base === 'scratch') throw usageError('--platform all means every platform of the base image, and scratch has none: name the platforms');
  const platforms = all ? ('all' as const) : (texts.length ? texts : ['linux/amd64']).map(parsePlatform);
  const seen = new Set<string>();
  for (const p of all ? [] : (platforms as Platform[])) {
    const key = formatPlatform(p);
    if (seen.has(key)) throw usageError(`--platform ${key} given twice`);
    seen.add(key);
  }
  if (output.kind === 'docker-archive' && repo === undefined && list(args.tag).length > 0) {
    throw usageError('a docker-archive names its image REPO:TAG: give --repo with --tag (without either, docker load names it by its id)');
  }
  if (output.kind === 'docker-archive' && platforms !== 'all' && platforms.length > 1) {
    throw usageError(`docker-archive holds one image, not ${platforms.length} platforms: pick one --platform, or use --output oci:DIR for a multi-platform index`);
  }

  const overrides: ConfigOverrides = {};
  const entrypoint = single(args.entrypoint);
  if (entrypoint !== undefined) overrides.entrypoint = parseCommand(entrypoint, 'entrypoint');
  const cmd = single(args.cmd);
  if (cmd !== undefined) overrides.cmd = parseCommand(cmd, 'cmd');
  const env = list(args.env).map((e) => parseKeyValue(e, 'env'));
  if (env.length) overrides.env = env;
  const labels = list(args.label).map((l) => parseKeyValue(l, 'label'));
  if (labels.length) overrides.labels = labels;
  const workdir = single(args.workdir);
  if (workdir !== undefined) {
    if (!workdir.startsWith('/')) throw usageError(`--workdir ${JSON.stringify(workdir)} must be an absolute path in the image`);
    overrides.workdir = workdir;
  }
  const user = single(args.user);
  if (user !== undefined) overrides.user = user;

  const specs = list(args.sources as Many);
  if (specs.length === 0) throw usageError('publish needs at least one SRC[:DEST] layer');
  const annotations = Object.fromEntries(list(args.annotation).map((a) => parseKeyValue(a, 'annotation')));
  const settings = layerSettings(args as unknown as Record<string, unknown>);
  const perLayer = args.layerSettings;
  // Checked before the annotations, whose `created` is made from it.
  const epoch = sourceDateEpoch();
  const imageRefs = single(args['image-refs']);
  const digestFile = single(args['digest-file']);
  if (imageRefs !== undefined) checkResultFile(imageRefs, '--image-refs file');
  if (digestFile !== undefined) checkResultFile(digestFile, '--digest-file');
  return {
    repo, output, imageRefs, digestFile,
    options: {
      base, repo, output, platforms, tags, layers: specs,
      importPath: single(args['import-path']),
      config: overrides,
      annotations: { ...standardAnnotations(), ...annotations },
      layerSettings: perLayer ? specs.map((_, i) => layerSettingsFor(settings, perLayer[i])) : settings,
      sourceDateEpoch: epoch,
      offline: Boolean(args.offline),
      insecureRegistries: list(args['insecure-registry']),
      timeouts: registryTimeouts(args),
      registryCache: cacheReposFrom(args),
    },
  };
}

async function run(req: PublishRequest, ctx: Context): Promise<void> {
  const out = ctx.out;
  const progress = new Progress(out);
  const layerCount = req.options.layers.length;
  let multi = false; // several platforms: each layer line names its platform
  const label = (l: PublishLayer) => `${l.spec}${multi ? ` (${formatPlatform(l.platform)})` : ''}`;
  const onProgress = (e: PublishProgress) => {
    switch (e.type) {
      case 'phase':
        if (e.phase === 'base') progress.phase(`base ${req.options.base}`);
        else if (e.phase === 'layers') {
          progress.phase('building layers');
          progress.layersToDo(e.total ?? 0);
          multi = (e.total ?? 0) > layerCount;
        } else progress.phase(e.phase === 'push' ? `pushing to ${formatRepository(req.repo!)}` : `writing ${req.output.kind}`);
        return;
      case 'layers-done':
        return progress.endPhase(`${e.built} built, ${e.cached} cached`);
      case 'layer':
        return progress.layerDone(label(e), e.cached ? 'cached' : 'built');
      case 'read':
        return progress.layerRead(label(e.layer), e.bytes);
      case 'expect':
        return progress.layerExpected(label(e.layer), e.bytes);
      case 'upload-start':
        return e.layer ? progress.layerUploadStarted(label(e.layer), e.size) : progress.uploadStarted(e.size);
      case 'uploaded':
        return e.layer ? progress.layerUploaded(label(e.layer), e.bytes) : progress.uploaded(e.bytes);
    }
  };
  // Said only once the image is delivered: on failure the error is the one line on stderr.
  const delivered = (r: PublishResult) => {
    // The progress line stops before the summary line, which says how the last phase went.
    progress.stop();
    out.info(summary(req, r));
    const json: PublishJson = {
      reference: r.reference, digest: r.digest, tags: r.tags, platforms: r.platforms, output: r.output, layers: r.layers,
      uploaded: r.uploaded, mounted: r.mounted, present: r.present, written: r.written, bytesUploaded: r.bytesUploaded, imageId: r.imageId,
    };
    if (req.imageRefs !== undefined) writeResultFile(req.imageRefs, `${json.reference}\n`, '--image-refs file');
    if (req.digestFile !== undefined) writeResultFile(req.digestFile, json.digest, '--digest-file');
    out.result(json, json.reference);
  };
  try {
    await publish({
      ...req.options, cache: ctx.cache, jobs: ctx.jobs, compression: ctx.gzip, warn: (m) => out.warn(m),
      onProgress: out.showProgress ? onProgress : undefined,
      onDelivered: delivered,
    });
  } finally {
    progress.stop();
  }
}

/** `kocache publish --json`: one shape for every output (docs/cli-json.md). */
type PublishJson = Omit<PublishResult, 'bytesWritten'>;

/** The line on stderr that says where the image went and what it took. */
function summary(req: PublishRequest, r: PublishResult): string {
  const layers = `layers ${r.layers.built} built, ${r.layers.cached} cached`;
  switch (req.output.kind) {
    case 'registry': {
      const tagged = r.tags.length > 1 ? ` (tags ${r.tags.join(', ')})` : '';
      return `pushed ${formatReference(req.repo!)}${tagged}: ${layers}; blobs ${r.uploaded} uploaded, ${r.mounted} mounted, ${r.present} already present`;
    }
    case 'oci':
      return `wrote OCI layout ${req.output.path} (tag ${r.tags.join(', ')}): ${layers}; blobs ${r.written} written, ${r.present} already there`;
    case 'docker-archive':
      // Named REPO:TAG for each tag when --repo was given; else docker load knows it by its id.
      const names = req.repo ? r.tags.map((tag) => formatReference({ ...req.repo!, tag })).join(', ') : r.imageId;
      return `wrote docker-archive ${req.output.path} (${formatBytes(r.bytesWritten)}): ${layers}; docker load names it ${names}`;
  }
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
  for (const t of tags) if (!isValidTag(t)) throw usageError(`invalid tag ${JSON.stringify(t)} (letters, digits, '_', '.', '-', at most 128, not starting with '.' or '-')`);
  return [...new Set(tags)];
}
