import { usageError } from '../errors.js';
import type { ExcludeFilter } from '../layer/exclude.js';
import { type LayerSource, parseLayerSource } from '../layer/source.js';
import type { LayerModePolicy } from '../layer/tarspec.js';
import type { Platform } from '../oci/platform.js';

/**
 * Placeholders a SRC[:DEST] may use to name a per-platform build output:
 *   {os} linux   {arch} arm64   {variant} v7 (or empty)   {platform} linux_arm64, linux_arm_v7
 * `{platform}` joins with `_` because that is how Go cross-build and goreleaser outputs are
 * usually named (a `/` would make it a folder path).
 */
export const PLACEHOLDERS = ['{os}', '{arch}', '{variant}', '{platform}'] as const;

export function expandPlaceholders(spec: string, p: Platform): string {
  const platform = [p.os, p.architecture, p.variant].filter((x): x is string => Boolean(x)).join('_');
  const expanded = spec
    .replaceAll('{os}', p.os)
    .replaceAll('{arch}', p.architecture)
    .replaceAll('{variant}', p.variant ?? '')
    .replaceAll('{platform}', platform);
  const left = /\{[a-z]+\}/.exec(expanded);
  if (left) {
    throw usageError(`unknown placeholder ${left[0]} in ${JSON.stringify(spec)}: known are ${PLACEHOLDERS.join(' ')}`);
  }
  return expanded;
}

/** One layer of one platform: the spec as written (for history) and where its bytes come from. */
export interface PlatformLayerSpec {
  spec: string;
  source: LayerSource;
}

/** Expands and parses every SRC[:DEST] for one platform; a missing SRC fails here, before any work. */
export function layerSpecsFor(specs: readonly string[], p: Platform, cwd = process.cwd()): PlatformLayerSpec[] {
  return specs.map((s) => {
    const spec = expandPlaceholders(s, p);
    return { spec, source: parseLayerSource(spec, cwd) };
  });
}

/** How every layer of an image is tarred, unless its `SRC:DEST:UID:GID` names its own owner. */
export interface LayerSettings {
  owner?: { uid: number; gid: number } | undefined;
  mode?: LayerModePolicy | undefined;
  exclude?: ExcludeFilter | undefined;
}

/** A layer source with the image's settings; an owner in the spec itself wins. */
export function withLayerSettings(source: LayerSource, s: LayerSettings): LayerSource {
  const out: LayerSource = { ...source };
  if (out.owner === undefined && s.owner) out.owner = s.owner;
  if (s.mode) out.mode = s.mode;
  if (s.exclude) out.exclude = s.exclude;
  return out;
}

/** layerSpecsFor with the layer settings applied: the same to every layer, or one per layer in order. */
export function platformLayers(specs: readonly string[], p: Platform, settings: LayerSettings | LayerSettings[], cwd = process.cwd()): PlatformLayerSpec[] {
  return layerSpecsFor(specs, p, cwd).map((l, i) => ({ ...l, source: withLayerSettings(l.source, Array.isArray(settings) ? settings[i] ?? {} : settings) }));
}
