import { KocacheError } from '../errors.js';
import { type Digest, isDigest } from '../oci/digest.js';

/**
 * A registry reference: where an image lives (registry + repository) and which one (tag and/or
 * digest). Parsing follows distribution's grammar and Docker's defaults, so a name means here
 * what it means to `docker pull`.
 */
export interface Reference {
  /** Host with optional port, e.g. `docker.io`, `ghcr.io`, `127.0.0.1:5000`. */
  registry: string;
  /** Path in the registry, e.g. `library/alpine`. */
  repository: string;
  tag?: string;
  digest?: Digest;
}

export const DOCKER_HUB = 'docker.io';

// distribution/reference's grammar, one piece at a time.
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN_RE = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`);
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const NAME_MAX = 255;
const SLASH_IN_TAG = "a tag cannot contain '/'";

/** Exit 2: a reference is what the user typed (an argument, a project file's base), as a platform is. */
function invalid(s: string, why: string): KocacheError {
  // A URL with credentials pasted where a reference goes (`https://user:token@host/repo`): said
  // so, with the password starred, and nothing else of the input echoed that could hold it.
  const m = CREDENTIALS.exec(s);
  if (m) return new KocacheError('reference', `invalid image reference ${JSON.stringify(`${m[1]}***@${m[2]}`)}: it holds credentials (user:password@); put them in the docker config (docker login), not in the reference`, { exitCode: 2 });
  return new KocacheError('reference', `invalid image reference ${JSON.stringify(s)}: ${why}`, { exitCode: 2 });
}

/** `[scheme://]user:password@rest`, the password up to the last `@` (a tag before a digest, `repo:v1@sha256:…`, is not one). */
const CREDENTIALS = /^((?:[a-z][a-z0-9+.-]*:\/\/)?[^/@:]*:).+@(?!sha256:)([^@]*)$/i;

/** Docker's rule: the first path segment is a registry when it looks like a host. */
function looksLikeRegistry(segment: string): boolean {
  return segment.includes('.') || segment.includes(':') || segment === 'localhost' || segment !== segment.toLowerCase();
}

/** Docker Hub answers to several names; kocache keeps one so caches and mounts agree. */
export function canonicalRegistry(host: string): string {
  const h = host.toLowerCase();
  if (h === 'index.docker.io' || h === 'registry-1.docker.io' || h === 'registry.hub.docker.com') return DOCKER_HUB;
  return host;
}

/** Parses `[registry/]repository[:tag][@digest]`. A reference with neither tag nor digest gets `latest`. */
export function parseReference(s: string): Reference {
  if (s.trim() === '') throw invalid(s, 'empty');
  if (/\s/.test(s)) throw invalid(s, 'contains white space');
  let rest = s;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const d = rest.slice(at + 1);
    if (!isDigest(d)) throw invalid(s, `bad digest ${JSON.stringify(d)} (want sha256: and 64 lowercase hex digits)`);
    digest = d;
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  // A ':' after the last '/' starts the tag; one before it belongs to a registry port.
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) {
      throw invalid(s, `bad tag ${JSON.stringify(tag)} (letters, digits, '_', '.', '-', at most 128, not starting with '.' or '-')`);
    }
  }
  if (rest === '') throw invalid(s, 'no repository name');
  const slash = rest.indexOf('/');
  let registry = DOCKER_HUB;
  let repository = rest;
  if (slash >= 0 && looksLikeRegistry(rest.slice(0, slash))) {
    registry = canonicalRegistry(rest.slice(0, slash));
    repository = rest.slice(slash + 1);
    if (!DOMAIN_RE.test(registry)) {
      // `alpine:a/b`: a host whose port is not digits, or a tag with a '/' in it; neither parses.
      const port = /^[^[:]*:(.*)$/.exec(registry)?.[1];
      const tagged = port !== undefined && !/^\d+$/.test(port) ? ` (a port is digits), or bad tag ${JSON.stringify(`${port}/${repository}`)} (${SLASH_IN_TAG})` : '';
      throw invalid(s, `bad registry ${JSON.stringify(registry)}${tagged}`);
    }
  }
  if (repository === '') throw invalid(s, 'no repository name');
  // A ':' before the last '/' (`host:5000/x:Bad/Tag`) can only start a tag that has a '/' in it.
  const inPath = repository.indexOf(':');
  if (inPath >= 0) throw invalid(s, `bad tag ${JSON.stringify(repository.slice(inPath + 1))}: ${SLASH_IN_TAG}`);
  for (const part of repository.split('/')) {
    if (part === '') throw invalid(s, 'empty path component in repository');
    if (part !== part.toLowerCase()) throw invalid(s, `repository ${JSON.stringify(repository)} must be lowercase`);
    if (!PATH_COMPONENT_RE.test(part)) {
      throw invalid(s, `bad repository component ${JSON.stringify(part)} (lowercase letters and digits, separated by '.', '_', '__' or '-')`);
    }
  }
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`;
  if (registry.length + 1 + repository.length > NAME_MAX) throw invalid(s, `name longer than ${NAME_MAX} characters`);
  const ref: Reference = { registry, repository };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  if (tag === undefined && digest === undefined) ref.tag = 'latest';
  return ref;
}

/** `registry/repository[:tag][@digest]`, always fully qualified. */
export function formatReference(r: Reference): string {
  let s = `${r.registry}/${r.repository}`;
  if (r.tag !== undefined) s += `:${r.tag}`;
  if (r.digest !== undefined) s += `@${r.digest}`;
  return s;
}

/** The repository part only (`registry/repository`), for messages about a repository as a whole. */
export function formatRepository(r: Pick<Reference, 'registry' | 'repository'>): string {
  return `${r.registry}/${r.repository}`;
}

/** The same repository at another tag or digest. */
export function withIdentifier(r: Reference, id: { tag?: string; digest?: Digest }): Reference {
  const out: Reference = { registry: r.registry, repository: r.repository };
  if (id.tag !== undefined) out.tag = id.tag;
  if (id.digest !== undefined) out.digest = id.digest;
  return out;
}
