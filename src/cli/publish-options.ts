import { renameSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Argv } from 'yargs';
import { fsError } from '../errors.js';
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
