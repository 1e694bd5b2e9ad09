import { resolve } from 'node:path';
import { usageError } from '../errors.js';
import { type Reference, parseReference } from '../reference/reference.js';
import { splitPathTag } from './transport.js';

/** Where `publish` sends the image: a registry, an OCI image layout folder, or a docker-archive tar. */
export type OutputTarget =
  | { kind: 'registry' }
  | { kind: 'oci'; path: string; tag?: string | undefined }
  | { kind: 'docker-archive'; path: string };

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
