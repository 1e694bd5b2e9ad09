/**
 * Errors a user can act on. The CLI prints `kocache: <message>` on one line and exits non-zero;
 * anything that is not a KocacheError is a bug and is reported as one.
 */
export class KocacheError extends Error {
  /** A short machine-readable kind, included in `--json` error output. */
  readonly code: string;
  /** Process exit code used by the CLI. */
  readonly exitCode: number;

  constructor(code: string, message: string, options?: { cause?: unknown; exitCode?: number }) {
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

/** Turns a file-system error into a one-line user error naming the path and the reason. */
export function fsError(err: unknown, path: string, doing: string): KocacheError {
  const code = errnoCode(err);
  const why =
    code === 'ENOENT' ? 'no such file or directory'
    : code === 'EACCES' || code === 'EPERM' ? 'permission denied'
    : code === 'ENOTDIR' ? 'a parent is not a directory'
    : code === 'EISDIR' ? 'is a directory'
    : code === 'ELOOP' ? 'too many levels of symbolic links'
    : err instanceof Error ? err.message : String(err);
  return new KocacheError('fs', `cannot ${doing} ${path}: ${why}`, { cause: err });
}
