import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { usageError } from '../errors.js';
import { type Reference, parseReference } from '../reference/reference.js';

/**
 * Where an image is read from, in skopeo's transport names: `oci:DIR[:TAG]` (an OCI layout),
 * `oci-archive:FILE[:TAG]`, `docker-archive:FILE`, `docker://REF`, or a bare path (its format
 * read from its bytes) or a bare registry reference.
 */
export type ImageSource =
  | { kind: 'layout'; path: string; tag?: string | undefined }
  | { kind: 'archive'; path: string; format?: 'oci-archive' | 'docker-archive' | undefined; tag?: string | undefined }
  | { kind: 'registry'; ref: Reference };

const TAG_RE = /^[\w][\w.-]{0,127}$/;

/**
 * Splits `PATH[:TAG]`. A colon in a path that exists is part of it; otherwise what follows the
 * last colon is a tag (skopeo's `oci:DIR:TAG`).
 */
export function splitPathTag(s: string, cwd = process.cwd()): { path: string; tag?: string } {
  const colon = s.lastIndexOf(':');
  if (colon > 0 && !existsSync(resolve(cwd, s))) {
    const tag = s.slice(colon + 1);
    if (TAG_RE.test(tag)) return { path: resolve(cwd, s.slice(0, colon)), tag };
  }
  return { path: resolve(cwd, s) };
}

/** File names of image archives (a repository named so is not worth the confusion); `repo:1.0.tar` is a tag. */
const ARCHIVE_NAME = /\.(?:tar|tgz|tar\.gz|tar\.zst)$/;
const isArchiveName = (s: string): boolean => ARCHIVE_NAME.test(s) && !s.slice(s.lastIndexOf('/') + 1).includes(':');

/** Parses an image source argument (see ImageSource). */
export function parseImageSource(s: string, cwd = process.cwd()): ImageSource {
  const need = (rest: string, kind: string) => {
    if (rest === '') throw usageError(`${kind}: needs a path, e.g. ${kind}:./image${kind === 'oci' ? '' : '.tar'}`);
    return rest;
  };
  if (s.startsWith('oci:')) return { kind: 'layout', ...splitPathTag(need(s.slice(4), 'oci'), cwd) };
  if (s.startsWith('oci-archive:')) return { kind: 'archive', format: 'oci-archive', ...splitPathTag(need(s.slice(12), 'oci-archive'), cwd) };
  if (s.startsWith('docker-archive:')) return { kind: 'archive', format: 'docker-archive', path: resolve(cwd, need(s.slice(15), 'docker-archive')) };
  if (s.startsWith('docker://')) return { kind: 'registry', ref: parseReference(s.slice(9)) };
  // A path that exists, or that reads as one (./x, /x, an archive's file name), is a file; anything
  // else names a registry image.
  if (existsSync(resolve(cwd, s)) || s.startsWith('.') || s.startsWith('/') || isArchiveName(s)) return { kind: 'archive', path: resolve(cwd, s) };
  return { kind: 'registry', ref: parseReference(s) };
}
