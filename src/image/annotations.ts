/**
 * The image-spec's standard annotations (annotations.md) kocache can fill in when they are known:
 * `created` from SOURCE_DATE_EPOCH (never the clock: a reproducible build must not move it), and
 * `source`/`revision` from the CI system's environment (GitHub Actions, GitLab CI, or the
 * generic variables). User annotations given for the same key win.
 */
export const CREATED = 'org.opencontainers.image.created';
export const SOURCE = 'org.opencontainers.image.source';
export const REVISION = 'org.opencontainers.image.revision';

export function standardAnnotations(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  const epoch = env.SOURCE_DATE_EPOCH;
  if (epoch && /^\d+$/.test(epoch)) out[CREATED] = new Date(Number(epoch) * 1000).toISOString().replace('.000Z', 'Z');
  const source =
    env.KOCACHE_SOURCE_URL ||
    (env.GITHUB_SERVER_URL && env.GITHUB_REPOSITORY ? `${env.GITHUB_SERVER_URL}/${env.GITHUB_REPOSITORY}` : undefined) ||
    env.CI_PROJECT_URL;
  if (source) out[SOURCE] = source;
  const revision = env.KOCACHE_REVISION || env.GITHUB_SHA || env.CI_COMMIT_SHA;
  if (revision) out[REVISION] = revision;
  return out;
}

/** Annotations in a fixed order (sorted by key): they are part of the manifest's digest. */
export function sortedAnnotations(...sets: Record<string, string>[]): Record<string, string> | undefined {
  const merged: Record<string, string> = {};
  for (const s of sets) Object.assign(merged, s);
  const keys = Object.keys(merged).sort();
  if (keys.length === 0) return undefined;
  return Object.fromEntries(keys.map((k) => [k, merged[k]!]));
}
