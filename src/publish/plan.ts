import { availableParallelism } from 'node:os';
import { realpathSync } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { DEFAULT_GZIP, type GzipOptions, checkCompression } from '../compress/options.js';
import { KocacheError } from '../errors.js';
import type { PlatformPlan } from '../image/build.js';
import { type LayerSettings, platformLayers } from '../image/sources.js';
import { validateImportPath, validateMtime } from '../layer/build.js';
import { parseLayerSpecText } from '../layer/source.js';
import { type Platform, formatPlatform, parsePlatform } from '../oci/platform.js';
import { type Reference, formatRepository, parseReference, withIdentifier } from '../reference/reference.js';
import { type OutputTarget, type PublishOptions, isValidTag } from './options.js';

/** A publish checked and filled in before any work starts (no layer built, no request sent). */
export interface PublishPlan {
  base: string;
  /** The target with its first tag; undefined for a file output without a repository. */
  repo: Reference | undefined;
  output: OutputTarget;
  /** 'all': every platform of the base, known once it is loaded. */
  platforms: Platform[] | 'all';
  tags: string[];
  specs: string[];
  layerSettings: LayerSettings | LayerSettings[];
  importPath: string;
  jobs: number;
  compression: GzipOptions;
  epoch: number;
  cwd: string;
  /** Per platform, when the platforms are known before the base is (not with 'all'). */
  plans: Omit<PlatformPlan, 'base'>[] | undefined;
}

function invalid(message: string): KocacheError {
  return new KocacheError('input', message, { exitCode: 2 });
}

/**
 * Checks the options; a missing layer source or an unknown placeholder fails here. The cache is
 * not needed for that: the CLI checks its command line so before it opens one.
 */
export function planPublish(o: Omit<PublishOptions, 'cache'>): PublishPlan {
  const cwd = o.cwd ?? process.cwd();
  const given = o.output ?? { kind: 'registry' };
  const output: OutputTarget = given.kind === 'registry' ? given : { ...given, path: resolve(cwd, given.path) };
  if (output.kind === 'registry' && o.repo === undefined) throw invalid('publish needs `repo` to push to, or an `output` file');
  if (o.repo?.digest !== undefined) throw invalid('`repo` has a digest: the digest is what publishing produces');
  const tags = o.tags?.length ? [...new Set(o.tags)] : [o.repo?.tag ?? 'latest'];
  for (const t of tags) if (!isValidTag(t)) throw invalid(`invalid tag ${JSON.stringify(t)} in \`tags\` (letters, digits, '_', '.', '-', at most 128, not starting with '.' or '-')`);
  const repo = o.repo && withIdentifier(o.repo, { tag: tags[0]! });
  // Checked now, so a typo fails before any layer is built.
  if (o.base !== 'scratch') parseReference(o.base);
  const platforms = o.platforms ?? [parsePlatform('linux/amd64')];
  if (platforms === 'all' && o.base === 'scratch') throw invalid("platforms 'all' means every platform of the base image, and scratch has none: name the platforms");
  if (platforms !== 'all') {
    if (platforms.length === 0) throw invalid('`platforms` is empty: name at least one');
    const seen = new Set(platforms.map(formatPlatform));
    if (seen.size < platforms.length) throw invalid('`platforms` names a platform twice');
  }
  if (output.kind === 'docker-archive' && platforms !== 'all' && platforms.length > 1) throw oneImageOnly(platforms.length);
  if (o.layers.length === 0) throw invalid('publish needs at least one layer in `layers`');
  const settings = o.layerSettings ?? {};
  if (Array.isArray(settings) && settings.length !== o.layers.length) throw invalid(`\`layerSettings\` has ${settings.length} entries for ${o.layers.length} layers: give one per layer, or one object for all`);
  const plans = platforms === 'all' ? undefined : platforms.map((platform) => ({ platform, layers: platformLayers(o.layers, platform, settings, cwd) }));
  if (plans) outsideSources(output, plans);
  const firstSrc = plans?.[0]!.layers[0]!.source.src ?? parseLayerSpecText(o.layers[0]!).src;
  const importPath = validateImportPath(o.importPath ?? (repo ? formatRepository(repo) : `local/${basename(firstSrc) || 'image'}`));
  const jobs = o.jobs ?? availableParallelism();
  return {
    base: o.base, repo, output, platforms, tags, specs: o.layers, layerSettings: settings, importPath, jobs, cwd, plans,
    compression: checkCompression(o.compression ?? { ...DEFAULT_GZIP, jobs }),
    epoch: validateMtime(o.sourceDateEpoch ?? 0, 'sourceDateEpoch'),
  };
}

/** The layers of every platform of a loaded base (for 'all'). */
export function plansFor(plan: PublishPlan, platforms: Platform[]): Omit<PlatformPlan, 'base'>[] {
  const plans = plan.plans ?? platforms.map((platform) => ({ platform, layers: platformLayers(plan.specs, platform, plan.layerSettings, plan.cwd) }));
  if (plan.output.kind === 'docker-archive' && plans.length > 1) throw oneImageOnly(plans.length);
  if (!plan.plans) outsideSources(plan.output, plans);
  return plans;
}

/**
 * A file output must not be a layer's source or inside one: it would overwrite the source, or be
 * packed into that layer by the next build (a layer that grows by itself). Inside a folder whose
 * layer has excludes it is taken as excluded (they are matched only when the layer is walked).
 */
function outsideSources(output: OutputTarget, plans: readonly Omit<PlatformPlan, 'base'>[]): void {
  if (output.kind === 'registry') return;
  const out = realPath(output.path);
  for (const { layers } of plans) {
    for (const { source } of layers) {
      const src = realPath(source.src);
      const within = out.startsWith(src.endsWith(sep) ? src : `${src}${sep}`);
      if (out === src || (within && !source.exclude)) {
        throw invalid(within
          ? `the output ${output.path} is inside the layer source ${source.src}: the next build would pack it into that layer; write it elsewhere, or exclude it`
          : `the output ${output.path} is the layer source ${source.src} itself: write it elsewhere`);
      }
    }
  }
}

function oneImageOnly(n: number): KocacheError {
  return invalid(`docker-archive holds one image, not ${n} platforms: name one platform, or write an OCI layout for a multi-platform index`);
}

/** A path with its links resolved, as far as it exists (an output may not exist yet). */
function realPath(path: string): string {
  let rest = '';
  for (let p = path; ; p = dirname(p)) {
    try {
      return join(realpathSync(p), rest);
    } catch {
      if (dirname(p) === p) return path;
      rest = rest ? join(basename(p), rest) : basename(p);
    }
  }
}
