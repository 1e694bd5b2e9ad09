import { KocacheError, errnoAdvice, errnoCode, notAFolder } from '../errors.js';

/** The system error code behind an error, looking through KocacheError's cause. */
export function causeCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    const code = errnoCode(e);
    if (code && /^E[A-Z]+$/.test(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * What a user can do about a system error, when there is something to say: the situation in
 * words, then errors.ts's advice. Undefined when the message already gives that advice (the
 * cache's own file-system errors do), so it is never said twice.
 */
export function errnoHint(code: string | undefined, message = ''): string | undefined {
  const advice = errnoAdvice(code);
  if (advice && message.includes(advice)) return undefined;
  switch (code) {
    case 'ENOSPC':
      return `the disk is full: ${advice}`;
    case 'EDQUOT':
      return `the disk quota is used up: ${advice}`;
    case 'EMFILE':
    case 'ENFILE':
      return `too many open files: ${advice}`;
    case 'EROFS':
      return message.includes('read-only') ? undefined : 'the file system is read-only';
    default:
      return undefined;
  }
}

/**
 * The cache folder cannot be made or written: the one error every new user of a shared runner or
 * a read-only home meets first, so it says what to do instead.
 */
export function cacheDirError(err: unknown, dir: string, env = process.env): unknown {
  const code = causeCode(err);
  if (code !== 'EACCES' && code !== 'EPERM' && code !== 'EROFS' && code !== 'ENOTDIR') return err;
  const why = code === 'EROFS' ? 'read-only file system' : code === 'ENOTDIR' ? notAFolder(dir, code) : 'permission denied';
  const instead = env.KOCACHE && !['off', 'none', 'false', '0'].includes(env.KOCACHE.toLowerCase())
    ? 'set KOCACHE to a folder you can write'
    : 'use --cache-dir DIR for a folder you can write';
  return new KocacheError('cache', `cannot write the cache folder ${dir}: ${why}; ${instead}, or KOCACHE=off for a throwaway cache`, { cause: err });
}

