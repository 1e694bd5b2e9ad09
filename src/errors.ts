import { statSync } from 'node:fs';
/**
 * What went wrong, one meaning per code (the `code` of `--json` errors and of KocacheError):
 * - `usage`: a command line kocache cannot run, or text the parsers it shares with the library
 *   refuse (`parseLayerSource`'s `SRC:DEST` with a relative DEST, an owner, a platform list) (exit 2).
 * - `input`: an option or a layer source the library cannot use (an empty import path, a file that
 *   changed while it was read).
 * - `reference`, `platform`: an image reference or platform that does not parse, or a platform
 *   the image does not have.
 * - `invalid-digest`: a string that is not a sha256 digest.
 * - `digest-mismatch`: bytes whose digest or size is not the one they were asked for.
 * - `archive`, `layout`: an image archive or OCI layout that cannot be read or written as one.
 * - `base`: a base image that cannot be used; `offline`: something not cached, asked for offline.
 * - `not-found`: a registry has no such repository, manifest or blob.
 * - `unreachable`, `tls`: a registry that cannot be reached, or whose TLS cannot be trusted.
 * - `registry`: a registry answered with an error; `auth`: it refused the credentials;
 *   `credentials`: the credentials could not be read (docker config, credential helper).
 * - `cache`: the cache folder cannot be used as one; `gc-locked`: another gc is running.
 * - `cache-check`: --cache-check rebuilt what the registry cache answered and got other bytes.
 * - `fs`: a file outside the cache cannot be read or written.
 * - `manifest`: a manifest, index or config that does not parse as one (kocache inspect).
 * - `config`: a project file (.kocache.json) that is not valid; the message names the field.
 * - `internal`: a bug (only the CLI uses it, for anything that is not a KocacheError).
 */
export type ErrorCode =
  | 'usage' | 'input' | 'reference' | 'platform' | 'invalid-digest' | 'digest-mismatch'
  | 'archive' | 'layout' | 'base' | 'offline' | 'not-found' | 'unreachable' | 'tls'
  | 'registry' | 'auth' | 'credentials' | 'cache' | 'cache-check' | 'gc-locked' | 'fs' | 'manifest' | 'config' | 'internal';

/**
 * Errors a user can act on. The CLI prints `kocache: <message>` on one line and exits non-zero;
 * anything that is not a KocacheError is a bug and is reported as one.
 */
export class KocacheError extends Error {
  /** A short machine-readable kind, included in `--json` error output. */
  readonly code: ErrorCode;
  /** Process exit code used by the CLI. */
  readonly exitCode: number;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; exitCode?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'KocacheError';
    this.code = code;
    this.exitCode = options?.exitCode ?? 1;
  }
}

/** Bad command-line input: exit code 2, like most CLIs. */
export function usageError(message: string): KocacheError {
  return new KocacheError('usage', message, { exitCode: 2 });
}

/** Node's system errors carry a code; this reads it without an `any`. */
export function errnoCode(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string') {
    return (err as { code: string }).code;
  }
  return undefined;
}

/**
 * What to do about a system error that is the machine's state rather than kocache's (a full disk,
 * too many open files), when there is something to say. One wording, wherever the error is reported.
 */
export function errnoAdvice(code: string | undefined): string | undefined {
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return 'free some space, or shrink the cache with kocache gc --max-size SIZE';
    case 'EMFILE':
    case 'ENFILE':
      return 'raise the open-file limit (ulimit -n) or lower --jobs';
    default:
      return undefined;
  }
}

/** Why a file-system call failed, in words (the errno's usual text for the common ones). */
export function errnoReason(err: unknown): string {
  const code = errnoCode(err);
  return code === 'ENOENT' ? 'no such file or directory'
    : code === 'EACCES' || code === 'EPERM' ? 'permission denied'
    : code === 'ENOTDIR' ? 'a parent is not a directory'
    : code === 'EISDIR' ? 'is a directory'
    : code === 'EEXIST' ? 'a file of that name is in the way'
    : code === 'ELOOP' ? 'too many levels of symbolic links'
    : err instanceof Error ? err.message : String(err);
}

/**
 * Why `dir` cannot be used as a folder when an error says something is not one (ENOTDIR, EEXIST):
 * `dir` itself is a file, or one of its parents is. Told apart with stat, following a link as the
 * folder's users do; undefined for any other error.
 */
export function notAFolder(dir: string, code: string | undefined): string | undefined {
  if (code !== 'ENOTDIR' && code !== 'EEXIST') return undefined;
  try {
    if (!statSync(dir).isDirectory()) return 'it is a file, not a folder';
  } catch {}
  return code === 'ENOTDIR' ? 'a parent is not a folder' : undefined;
}

/** Turns a file-system error into a one-line user error naming the path and the reason. */
export function fsError(err: unknown, path: string, doing: string): KocacheError {
  return new KocacheError('fs', `cannot ${doing} ${path}: ${errnoReason(err)}`, { cause: err });
}
