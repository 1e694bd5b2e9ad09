import { accessSync, constants, existsSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Argv } from 'yargs';
import { fsError, usageError } from '../errors.js';
import { splitPathTag } from '../image/transport.js';
import type { OutputTarget } from '../publish/options.js';
import { type Reference, parseReference } from '../reference/reference.js';
import { type Project, PROJECT_FILE, REPO_ENV } from './project.js';

/** The publish flags that deal with naming and recording the result, and the project file. */
export function publishOptions<T>(y: Argv<T>): Argv<T> {
  return y
    .option('tag', { type: 'string', requiresArg: true, describe: 'Another tag for the same image, repeatable (or REPO:v1,latest)' })
    .option('annotation', { type: 'string', requiresArg: true, describe: 'KEY=VALUE on every manifest and the index, repeatable' })
    .option('image-refs', { type: 'string', requiresArg: true, describe: 'Write the published REGISTRY/REPO@sha256:... to this file' })
    .option('digest-file', { type: 'string', requiresArg: true, describe: 'Write the published sha256:... digest to this file' })
    .option('config', { type: 'string', requiresArg: true, describe: `Project file (default ./${PROJECT_FILE} when present, or $KOCACHE_CONFIG)` }) as Argv<T>;
}

type Flags = Record<string, unknown> & { sources?: unknown };

/**
 * Fills the flags the user did not give from the project file, then --repo from
 * $KOCACHE_DOCKER_REPO: flags win, then the file, then the environment. Lists of KEY=VALUE
 * (env, labels, annotations) are joined, the file's first, so a flag overrides a key the file sets.
 */
export function withProject<A extends Flags>(args: A, project: Project | undefined, env = process.env): A {
  const out: Flags = { ...args };
  const given = (k: string) => out[k] !== undefined && !(Array.isArray(out[k]) && (out[k] as unknown[]).length === 0);
  if (project) {
    const fill = (flag: string, v: unknown) => {
      if (v !== undefined && !given(flag)) out[flag] = v;
    };
    fill('base', project.base);
    fill('repo', project.repo);
    fill('tag', project.tags);
    fill('platform', project.platforms);
    fill('import-path', project.importPath);
    // A layer's own mode and excludes go with the file's layers, not with SRC arguments given instead.
    if (!given('sources') && project.layers) out.layerSettings = project.layerSettings;
    fill('sources', project.layers);
    fill('entrypoint', project.entrypoint && JSON.stringify(project.entrypoint));
    fill('cmd', project.cmd && JSON.stringify(project.cmd));
    fill('workdir', project.workdir);
    fill('user', project.user);
    fill('mode', project.mode);
    fill('exclude-from', project.excludeFrom);
    const join = (flag: string, v: string[] | undefined) => {
      if (v) out[flag] = [...v, ...([] as unknown[]).concat(out[flag] ?? [])];
    };
    join('env', project.env);
    join('label', project.labels);
    join('annotation', project.annotations);
    join('exclude', project.exclude);
  }
  if (!given('repo') && !given('output') && env[REPO_ENV]) out.repo = env[REPO_ENV];
  return out as A;
}

/**
 * Checked before any work: a result file that cannot be written fails the command before it
 * pushes (a job would otherwise fail after the image was out). Its folder must exist and take a
 * new file (the file is written beside itself and renamed); it must not be a folder.
 */
export function checkResultFile(file: string, what: string): void {
  const path = resolve(file);
  try {
    if (existsSync(path) && statSync(path).isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR', syscall: 'open', path });
    accessSync(dirname(path), constants.W_OK);
  } catch (err) {
    throw fsError(err, path, `write ${what}`);
  }
}

/** Writes `text` to `file` whole or not at all (temp file, then rename), for the next CI step. */
export function writeResultFile(file: string, text: string, what: string): void {
  const path = resolve(file);
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, path);
  } catch (err) {
    throw fsError(err, path, `write ${what}`);
  }
}

// Parsers of publish's flag values: their errors name the flag, since only the command uses them.

/**
 * Parses `KEY=VALUE` from a repeatable flag. The value may be empty or contain `=`; the key may
 * not be empty or contain white space, since neither Docker nor a shell can use such a name.
 */
export function parseKeyValue(s: string, flag: string): [string, string] {
  const eq = s.indexOf('=');
  const key = eq < 0 ? s : s.slice(0, eq);
  if (eq <= 0 || /\s/.test(key)) {
    throw usageError(`invalid --${flag} ${JSON.stringify(s)}: want KEY=VALUE with a non-empty KEY and no spaces in it`);
  }
  return [key, s.slice(eq + 1)];
}

/**
 * Parses --entrypoint / --cmd. A value starting with `[` must be a JSON array of strings
 * (`["/app","--serve"]`); anything else is taken whole as a single argument, never split on
 * spaces, so a path with spaces stays one path. An empty JSON array clears the base's value.
 */
export function parseCommand(s: string, flag: string): string[] {
  if (!s.trimStart().startsWith('[')) {
    if (s === '') throw usageError(`empty --${flag}: give a program path or a JSON array such as '["/app","--flag"]'`);
    return [s];
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(s);
  } catch (err) {
    throw usageError(`invalid --${flag} ${JSON.stringify(s)}: not a JSON array (${(err as Error).message})`);
  }
  if (!Array.isArray(parsed) || !parsed.every((x): x is string => typeof x === 'string')) {
    throw usageError(`invalid --${flag} ${JSON.stringify(s)}: want a JSON array of strings`);
  }
  return parsed;
}

/** Parses `--output KIND:PATH`; no --output means push to the registry --repo names. */
export function parseOutput(s: string | undefined, cwd = process.cwd()): OutputTarget {
  if (s === undefined) return { kind: 'registry' };
  const colon = s.indexOf(':');
  const kind = colon < 0 ? s : s.slice(0, colon);
  const path = colon < 0 ? '' : s.slice(colon + 1);
  if (kind !== 'oci' && kind !== 'docker-archive') {
    throw usageError(`unknown --output kind ${JSON.stringify(kind)}: want oci:DIR or docker-archive:FILE`);
  }
  if (path === '') throw usageError(`--output ${kind}: needs a path, e.g. ${kind === 'oci' ? 'oci:./out' : 'docker-archive:./image.tar'}`);
  // oci:DIR:TAG names the index.json entry, as skopeo's does.
  if (kind === 'oci') return { kind, ...splitPathTag(path, cwd) };
  return { kind, path: resolve(cwd, path) };
}

/**
 * Parses --repo `REGISTRY/REPO[:TAG]`. A digest is refused: the digest is what publishing
 * produces, it cannot be chosen beforehand.
 */
export function parseRepo(s: string): Reference {
  const ref = parseReference(s);
  if (ref.digest !== undefined) {
    throw usageError(`--repo ${JSON.stringify(s)} has a digest: name a repository and optionally a tag; the digest is the result`);
  }
  return ref;
}
