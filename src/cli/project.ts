import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { KocacheError, fsError } from '../errors.js';
import { parseLayerSpecText, relativeDest } from '../layer/source.js';
import { parsePlatform } from '../oci/platform.js';

/** The project file `kocache publish` reads from the working directory, like ko's .ko.yaml. */
export const PROJECT_FILE = '.kocache.json';

/** The environment variable naming the repository to publish to when --repo is not given (like KO_DOCKER_REPO). */
export const REPO_ENV = 'KOCACHE_DOCKER_REPO';

/**
 * How one layer of the project file is tarred, beyond SRC:DEST:UID:GID: its own permission-bit
 * policy and excludes. The owner travels in the layer's text (`SRC:DEST:UID:GID`).
 */
export interface ProjectLayerSettings {
  mode?: 'normalize' | 'keep';
  exclude?: string[];
  /** Absolute (resolved against the file's folder). */
  excludeFrom?: string;
}

/** What a project file may set; every field is optional and a flag given overrides it. */
export interface Project {
  /** The file it came from, for messages; layer paths are relative to its folder. */
  file: string;
  base?: string;
  repo?: string;
  tags?: string[];
  platforms?: string[];
  importPath?: string;
  layers?: string[];
  /** Per layer (same order as `layers`): its own mode and excludes, when it sets any. */
  layerSettings?: (ProjectLayerSettings | undefined)[];
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
  labels?: string[];
  annotations?: string[];
  workdir?: string;
  user?: string;
  mode?: string;
  exclude?: string[];
  /** Absolute (resolved against the file's folder). */
  excludeFrom?: string;
}

const FIELDS = ['base', 'repo', 'tags', 'platforms', 'importPath', 'layers', 'entrypoint', 'cmd', 'env', 'labels', 'annotations', 'workdir', 'user', 'mode', 'exclude', 'excludeFrom'] as const;

/**
 * Finds and reads the project file: `--config FILE`, else `$KOCACHE_CONFIG`, else `.kocache.json`
 * in the working directory when there is one. Nothing found is no project (undefined).
 */
export function loadProject(explicit: string | undefined, cwd = process.cwd(), env = process.env): Project | undefined {
  const named = explicit ?? (env.KOCACHE_CONFIG || undefined);
  const file = named !== undefined ? resolve(cwd, named) : resolve(cwd, PROJECT_FILE);
  if (named === undefined && !existsSync(file)) return undefined;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw fsError(err, file, 'read project file');
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw projectError(file, `is not valid JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  return parseProject(doc, file);
}

function projectError(file: string, message: string): KocacheError {
  return new KocacheError('config', `${file}: ${message}`, { exitCode: 2 });
}

/** Validates a parsed project file; every error names the field (and the item) at fault. */
export function parseProject(doc: unknown, file: string): Project {
  const fail = (field: string, why: string) => projectError(file, `${field}: ${why}`);
  if (!isPlainObject(doc)) throw projectError(file, 'must hold a JSON object ({"base": ..., "layers": [...]})');
  for (const key of Object.keys(doc)) {
    if (!(FIELDS as readonly string[]).includes(key)) {
      const near = FIELDS.find((f) => f.toLowerCase().startsWith(key.toLowerCase().slice(0, 3)));
      throw projectError(file, `unknown field "${key}"${near ? ` (did you mean "${near}"?)` : ''}; known fields: ${FIELDS.join(', ')}`);
    }
  }
  const p: Project = { file };
  const str = (field: string, v: unknown, pattern?: [RegExp, string]): string => {
    if (typeof v !== 'string' || v === '') throw fail(field, `want a non-empty string, not ${show(v)}`);
    if (pattern && !pattern[0].test(v)) throw fail(field, `${show(v)} ${pattern[1]}`);
    return v;
  };
  const strings = (field: string, v: unknown): string[] => {
    if (!Array.isArray(v)) throw fail(field, `want an array of strings, not ${show(v)}`);
    return v.map((x, i) => str(`${field}[${i}]`, x));
  };
  const pairs = (field: string, v: unknown): string[] => {
    if (!isPlainObject(v)) throw fail(field, `want an object of "KEY": "VALUE" strings, not ${show(v)}`);
    return Object.entries(v).map(([k, x]) => {
      if (k === '' || /[\s=]/.test(k)) throw fail(`${field}.${k}`, 'a key must be non-empty, without spaces or =');
      if (typeof x !== 'string') throw fail(`${field}.${k}`, `want a string value, not ${show(x)}`);
      return `${k}=${x}`;
    });
  };
  const command = (field: string, v: unknown): string[] => (typeof v === 'string' ? [str(field, v)] : strings(field, v));
  const d = doc;
  if (d.base !== undefined) p.base = str('base', d.base);
  if (d.repo !== undefined) p.repo = str('repo', d.repo);
  if (d.tags !== undefined) p.tags = strings('tags', d.tags).map((t, i) => str(`tags[${i}]`, t, [/^[\w][\w.-]{0,127}$/, 'is not a valid tag']));
  if (d.platforms !== undefined) {
    if (d.platforms === 'all') p.platforms = ['all'];
    else {
      p.platforms = strings('platforms', d.platforms);
      p.platforms.forEach((s, i) => {
        try {
          parsePlatform(s);
        } catch (err) {
          throw fail(`platforms[${i}]`, err instanceof Error ? err.message : String(err));
        }
      });
    }
  }
  if (d.importPath !== undefined) p.importPath = str('importPath', d.importPath);
  if (d.layers !== undefined) {
    if (!Array.isArray(d.layers) || d.layers.length === 0) throw fail('layers', `want a non-empty array of "SRC[:DEST]" strings or {"src", "dest"} objects, not ${show(d.layers)}`);
    const layers = d.layers.map((l, i) => projectLayer(l, `layers[${i}]`, dirname(file), fail));
    p.layers = layers.map((l) => l.spec);
    if (layers.some((l) => l.settings)) p.layerSettings = layers.map((l) => l.settings);
  }
  if (d.entrypoint !== undefined) p.entrypoint = command('entrypoint', d.entrypoint);
  if (d.cmd !== undefined) p.cmd = command('cmd', d.cmd);
  if (d.env !== undefined) p.env = pairs('env', d.env);
  if (d.labels !== undefined) p.labels = pairs('labels', d.labels);
  if (d.annotations !== undefined) p.annotations = pairs('annotations', d.annotations);
  if (d.workdir !== undefined) p.workdir = str('workdir', d.workdir, [/^\//, 'must be an absolute path in the image']);
  if (d.user !== undefined) p.user = str('user', d.user);
  if (d.mode !== undefined) p.mode = modeField('mode', d.mode, fail);
  if (d.exclude !== undefined) p.exclude = excludeField('exclude', d.exclude, fail);
  if (d.excludeFrom !== undefined) p.excludeFrom = excludeFromField('excludeFrom', d.excludeFrom, dirname(file), fail);
  return p;
}

type Fail = (field: string, why: string) => KocacheError;

function modeField(field: string, v: unknown, fail: Fail): 'normalize' | 'keep' {
  if (v !== 'normalize' && v !== 'keep') throw fail(field, `want "normalize" or "keep", not ${show(v)}`);
  return v;
}

function excludeField(field: string, v: unknown, fail: Fail): string[] {
  if (!Array.isArray(v)) throw fail(field, `want an array of .dockerignore patterns, not ${show(v)}`);
  return v.map((x, i) => {
    if (typeof x !== 'string' || x.trim() === '') throw fail(`${field}[${i}]`, `want a pattern, not ${show(x)}`);
    return x;
  });
}

/** A .dockerignore-style file, relative to the project file; checked now, so a typo names the field. */
function excludeFromField(field: string, v: unknown, dir: string, fail: Fail): string {
  if (typeof v !== 'string' || v === '') throw fail(field, `want the path of a .dockerignore-style file, not ${show(v)}`);
  const path = resolve(dir, v);
  if (!existsSync(path)) throw fail(field, `${show(v)}: no such file (paths are relative to the project file)`);
  return path;
}

const LAYER_FIELDS = ['src', 'dest', 'owner', 'mode', 'exclude', 'excludeFrom'];

/**
 * A layer of the file: the `SRC:DEST[:UID:GID]` text publish takes (SRC made absolute from the
 * file's folder), and its own mode and excludes if it sets any.
 */
function projectLayer(l: unknown, field: string, dir: string, fail: Fail): { spec: string; settings?: ProjectLayerSettings } {
  let src: string;
  let dest: string | undefined;
  let owner: string | undefined;
  let settings: ProjectLayerSettings | undefined;
  if (typeof l === 'string') {
    if (l === '') throw fail(field, 'want "SRC[:DEST]", not an empty string');
    const relative = relativeDest(l, dir);
    if (relative) throw fail(field, relative.message);
    const parsed = parseLayerSpecText(l);
    ({ src, dest } = parsed);
    if (parsed.owner) owner = `${parsed.owner.uid}:${parsed.owner.gid}`;
  } else if (isPlainObject(l)) {
    for (const k of Object.keys(l)) if (!LAYER_FIELDS.includes(k)) throw fail(`${field}.${k}`, `unknown field; a layer has ${LAYER_FIELDS.map((f) => `"${f}"`).join(', ')}`);
    if (l.owner !== undefined) {
      if (typeof l.owner !== 'string' || !/^\d+:\d+$/.test(l.owner)) throw fail(`${field}.owner`, `want "UID:GID", not ${show(l.owner)}`);
      if (typeof l.dest !== 'string') throw fail(`${field}.owner`, 'an owner needs a "dest"');
    }
    if (typeof l.src !== 'string' || l.src === '') throw fail(`${field}.src`, `want a path, not ${show(l.src)}`);
    if (l.dest !== undefined && typeof l.dest !== 'string') throw fail(`${field}.dest`, `want an absolute path in the image, not ${show(l.dest)}`);
    src = l.src;
    dest = l.dest as string | undefined;
    if (l.owner !== undefined) owner = l.owner as string;
    if (l.mode !== undefined || l.exclude !== undefined || l.excludeFrom !== undefined) {
      settings = {};
      if (l.mode !== undefined) settings.mode = modeField(`${field}.mode`, l.mode, fail);
      if (l.exclude !== undefined) settings.exclude = excludeField(`${field}.exclude`, l.exclude, fail);
      if (l.excludeFrom !== undefined) settings.excludeFrom = excludeFromField(`${field}.excludeFrom`, l.excludeFrom, dir, fail);
    }
  } else {
    throw fail(field, `want "SRC[:DEST]" or {"src", "dest", ...}, not ${show(l)}`);
  }
  if (dest !== undefined && !dest.startsWith('/')) throw fail(field, `DEST ${show(dest)} must be an absolute path in the image`);
  const spec = `${resolve(dir, src)}${dest !== undefined ? `:${dest}` : ''}${owner !== undefined ? `:${owner}` : ''}`;
  return settings ? { spec, settings } : { spec };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 40 ? `${s.slice(0, 37)}...` : s;
}
