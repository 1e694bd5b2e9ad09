import type { Argv } from 'yargs';
import { KocacheError, usageError } from '../errors.js';
import { validateImportPath } from '../layer/build.js';
import { excludeFilter } from '../layer/exclude.js';
import { parseOwner } from '../layer/source.js';
import type { LayerSettings } from '../image/sources.js';
import type { ProjectLayerSettings } from './project.js';

// Defined beside the layer specs they apply to, where the library's publish uses them too.
export { type LayerSettings, withLayerSettings } from '../image/sources.js';

/** The layer flags of build, publish and warm. Each is part of the layer's cache key. */
export function layerOptions<T>(y: Argv<T>): Argv<T> {
  return y
    .option('owner', { type: 'string', requiresArg: true, describe: 'UID:GID owning every entry of the layers (default 0:0; per layer: SRC:DEST:UID:GID)' })
    .option('mode', { type: 'string', requiresArg: true, describe: 'normalize (0755/0644, the default) or keep (permission bits as on disk)' })
    .option('exclude', { type: 'string', requiresArg: true, describe: 'Leave out paths matching this .dockerignore pattern (relative to SRC), repeatable' })
    .option('exclude-from', { type: 'string', requiresArg: true, describe: 'A .dockerignore-style file of patterns to leave out, repeatable' }) as Argv<T>;
}

function list(v: unknown): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v.map(String) : [String(v)];
}

/**
 * `--import-path` as typed: the library's checks (layer/build.ts), failing as bad usage (exit 2),
 * as a bad --build-id does; the library calls the same text bad input.
 */
export function importPathOption(ip: string): string {
  try {
    return validateImportPath(ip);
  } catch (err) {
    throw err instanceof KocacheError ? usageError(err.message) : err;
  }
}

/** Reads the layer flags (checked before any work starts). */
export function layerSettings(args: Record<string, unknown>): LayerSettings {
  const out: LayerSettings = {};
  const owner = list(args.owner);
  if (owner.length > 1) throw usageError('--owner given twice: give it once (or per layer as SRC:DEST:UID:GID)');
  if (owner.length) out.owner = parseOwner(owner[0]!);
  const mode = list(args.mode);
  if (mode.length > 1) throw usageError('--mode given twice');
  if (mode.length) {
    if (mode[0] !== 'normalize' && mode[0] !== 'keep') throw usageError(`--mode ${JSON.stringify(mode[0])}: want normalize or keep`);
    out.mode = mode[0];
  }
  out.exclude = excludeFilter(list(args.exclude), list(args['exclude-from']));
  return out;
}

/**
 * The settings of one layer that sets its own in the project file: its mode wins over the
 * command's, and its excludes come after the command's (so its `!PATTERN` can take a path back).
 */
export function layerSettingsFor(s: LayerSettings, own: ProjectLayerSettings | undefined): LayerSettings {
  if (!own) return s;
  const out: LayerSettings = { ...s };
  if (own.mode) out.mode = own.mode;
  const mine = excludeFilter(own.exclude ?? [], own.excludeFrom ? [own.excludeFrom] : []);
  if (mine) out.exclude = excludeFilter([...(s.exclude?.patterns ?? []), ...mine.patterns]);
  return out;
}
