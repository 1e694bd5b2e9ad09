import type { Digest } from '../oci/digest.js';
import type { ContainerConfig, HistoryEntry, ImageConfig } from '../oci/manifest.js';
import type { Platform } from '../oci/platform.js';

/** What `publish` may change in the container config; unset fields keep the base's values. */
export interface ConfigOverrides {
  entrypoint?: string[];
  cmd?: string[];
  /** `KEY=VALUE` pairs in order; a key the base already sets is replaced where it stands. */
  env?: [string, string][];
  workdir?: string;
  user?: string;
  labels?: [string, string][];
}

/** One appended layer as the config records it. */
export interface AppendedLayer {
  diffid: Digest;
  /** The history line, e.g. `kocache publish ./out/app:/app`. */
  createdBy: string;
}

/** `SOURCE_DATE_EPOCH` seconds as the RFC 3339 time every config and history entry carries. */
export function createdTime(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

/**
 * The platform the new image declares: the one asked for, completed from the base's config
 * (an arm64 base that says variant v8, a Windows base's os.version), so that the config and the
 * index entry say the same thing.
 */
export function imagePlatform(requested: Platform, base: ImageConfig): Platform {
  const p: Platform = { os: requested.os, architecture: requested.architecture };
  const osVersion = requested['os.version'] ?? base['os.version'];
  if (osVersion !== undefined) p['os.version'] = osVersion;
  const osFeatures = requested['os.features'] ?? base['os.features'];
  if (osFeatures !== undefined) p['os.features'] = osFeatures;
  const variant = requested.variant ?? base.variant;
  if (variant !== undefined) p.variant = variant;
  return p;
}

/**
 * The config of the new image: the base's config and history kept, `layers` appended to
 * rootfs.diff_ids with one history entry each, `overrides` applied. The result is a fresh object
 * whose keys are inserted in a fixed order, so `JSON.stringify` of it is the same bytes for the
 * same inputs (the base's own keys keep the order they had in the base's bytes).
 */
export function buildConfig(
  base: ImageConfig,
  platform: Platform,
  layers: readonly AppendedLayer[],
  overrides: ConfigOverrides,
  created: string,
): ImageConfig {
  const known = new Set(['created', 'author', 'architecture', 'os', 'os.version', 'os.features', 'variant', 'config', 'rootfs', 'history']);
  // Rebuild in a fixed order: `created`, `author`, platform, container config, rootfs, history,
  // then whatever else the base carried (kept verbatim: kocache does not know what it means).
  const ordered: Record<string, unknown> = { created };
  if (base.author !== undefined) ordered.author = base.author;
  const p = imagePlatform(platform, base);
  ordered.architecture = p.architecture;
  ordered.os = p.os;
  if (p['os.version'] !== undefined) ordered['os.version'] = p['os.version'];
  if (p['os.features'] !== undefined) ordered['os.features'] = p['os.features'];
  if (p.variant !== undefined) ordered.variant = p.variant;
  ordered.config = containerConfig(base.config ?? {}, overrides);
  ordered.rootfs = { type: 'layers', diff_ids: [...base.rootfs.diff_ids, ...layers.map((l) => l.diffid)] };
  const history: HistoryEntry[] = (base.history ?? []).map((h) => ({ ...h }));
  for (const l of layers) history.push({ created, created_by: l.createdBy });
  ordered.history = history;
  for (const [k, v] of Object.entries(base)) {
    if (!known.has(k)) ordered[k] = v;
  }
  return ordered as ImageConfig;
}

function containerConfig(base: ContainerConfig, o: ConfigOverrides): ContainerConfig {
  const c: ContainerConfig = { ...base };
  if (o.user !== undefined) c.User = o.user;
  if (o.env && o.env.length > 0) c.Env = mergeEnv(base.Env ?? [], o.env);
  if (o.entrypoint !== undefined) {
    c.Entrypoint = o.entrypoint;
    // Docker's rule: a new entrypoint voids the base's cmd, which was written as its arguments.
    if (o.cmd === undefined) delete c.Cmd;
  }
  if (o.cmd !== undefined) c.Cmd = o.cmd;
  if (o.workdir !== undefined) c.WorkingDir = o.workdir;
  if (o.labels && o.labels.length > 0) {
    const labels: Record<string, string> = { ...(base.Labels ?? {}) };
    for (const [k, v] of o.labels) labels[k] = v;
    c.Labels = labels;
  }
  return c;
}

function mergeEnv(base: readonly string[], set: readonly [string, string][]): string[] {
  const out = [...base];
  for (const [k, v] of set) {
    const line = `${k}=${v}`;
    const at = out.findIndex((e) => e === k || e.startsWith(`${k}=`));
    if (at >= 0) out[at] = line;
    else out.push(line);
  }
  return out;
}
