import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { KocacheError, errnoCode } from '../errors.js';

/**
 * Leases tell `kocache gc` that a process is using the cache, as containerd's leases protect
 * content a client is still writing. Every command that opens the cache writes
 * `<cache>/leases/<pid>-<rand>.json` before its first read or write and removes it on exit.
 * Everything such a process writes or uses gets an mtime at or after the lease's start (writes
 * are new files, hits are touched), so gc keeps any file whose mtime is not older than the
 * oldest live lease's start. A lease whose pid is gone on this host is stale (a SIGKILLed
 * build) and gc removes it.
 */
export interface LeaseInfo {
  pid: number;
  hostname: string;
  /** ms since epoch, taken before the lease file existed. */
  start: number;
  command: string;
}

export interface Lease {
  path: string;
  info: LeaseInfo;
  release(): void;
}

/** A lease from another host cannot be checked by pid; after this long it is presumed dead. */
export const FOREIGN_LEASE_MAX_AGE_MS = 24 * 60 * 60 * 1000;

export function leasesDir(cacheDir: string): string {
  return join(cacheDir, 'leases');
}

/** Takes a lease for this process; it is released when the process exits, however it exits normally. */
export function acquireLease(cacheDir: string, command: string): Lease {
  const dir = leasesDir(cacheDir);
  const info: LeaseInfo = { pid: process.pid, hostname: hostname(), start: Date.now(), command };
  const path = join(dir, `${process.pid}-${randomBytes(4).toString('hex')}.json`);
  try {
    mkdirSync(dir, { recursive: true });
    writeExclusive(path, JSON.stringify(info));
  } catch (err) {
    throw new KocacheError('cache', `cannot write lease ${path}: ${errnoCode(err) ?? String(err)}`, { cause: err });
  }
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    process.removeListener('exit', release);
    // unlinkSync, not rmSync: rmSync loads Node's recursive-removal module on first use.
    try {
      unlinkSync(path);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err; // ENOENT: a gc judged it stale and removed it
    }
  };
  process.once('exit', release);
  return { path, info, release };
}

export interface LeaseScan {
  live: (LeaseInfo & { path: string })[];
  stale: (LeaseInfo & { path: string })[];
}

/** Reads every lease and sorts it into live and stale; removes nothing. */
export function scanLeases(cacheDir: string, now = Date.now()): LeaseScan {
  const dir = leasesDir(cacheDir);
  const out: LeaseScan = { live: [], stale: [] };
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return out;
    throw err;
  }
  const host = hostname();
  for (const name of names) {
    if (!name.endsWith('.json')) continue;
    const path = join(dir, name);
    let info: LeaseInfo;
    try {
      info = parseLease(readFileSync(path, 'utf8'));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') continue; // released while we listed
      // A torn or foreign file: its name still carries the pid, and its age cannot be trusted,
      // so it counts as live until that pid is gone.
      const pid = Number(name.split('-')[0]);
      info = { pid: Number.isInteger(pid) ? pid : -1, hostname: host, start: 0, command: '?' };
    }
    const alive = info.hostname === host ? pidAlive(info.pid) : now - info.start < FOREIGN_LEASE_MAX_AGE_MS;
    (alive ? out.live : out.stale).push({ ...info, path });
  }
  return out;
}

function parseLease(text: string): LeaseInfo {
  const v = JSON.parse(text) as Partial<LeaseInfo>;
  if (typeof v.pid !== 'number' || typeof v.start !== 'number' || typeof v.hostname !== 'string') throw new Error('bad lease');
  return { pid: v.pid, start: v.start, hostname: v.hostname, command: String(v.command ?? '') };
}

/** Whether a process with this pid exists here (EPERM means it exists but is someone else's). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) === 'EPERM';
  }
}

/** Creates a file that must not exist yet (O_EXCL), so two creators cannot both succeed. */
export function writeExclusive(path: string, text: string): void {
  const fd = openSync(path, 'wx');
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

/**
 * The exclusive gc lock, `<cache>/gc.lock`, created with O_EXCL. A lock left by a gc that died
 * (its pid gone on this host) is taken over; a live one makes this gc fail with one line.
 */
export function acquireGcLock(cacheDir: string): () => void {
  const path = join(cacheDir, 'gc.lock');
  const info: LeaseInfo = { pid: process.pid, hostname: hostname(), start: Date.now(), command: 'gc' };
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      writeExclusive(path, JSON.stringify(info));
      const release = () => {
        process.removeListener('exit', release);
        // Only our own lock: a takeover after we were presumed dead must not be undone.
        try {
          if (parseLease(readFileSync(path, 'utf8')).pid === process.pid) rmSync(path, { force: true });
        } catch {
          /* already gone */
        }
      };
      process.once('exit', release);
      return release;
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw new KocacheError('cache', `cannot create ${path}: ${errnoCode(err) ?? String(err)}`, { cause: err });
    }
    let holder: LeaseInfo | undefined;
    try {
      holder = parseLease(readFileSync(path, 'utf8'));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') continue; // released between our open and read
      holder = undefined; // torn: the writer died between open and write
    }
    if (holder === undefined) {
      // Empty or torn: a gc between creating the file and writing it, or one that died there.
      const age = ageOf(path);
      if (age !== undefined && age < 5_000) throw new KocacheError('gc-locked', `another kocache gc is starting on this cache (${path})`);
    } else {
      const alive = holder.hostname === hostname() ? pidAlive(holder.pid) : Date.now() - holder.start < FOREIGN_LEASE_MAX_AGE_MS;
      if (alive) throw new KocacheError('gc-locked', `another kocache gc is running on this cache (pid ${holder.pid} on ${holder.hostname}, ${path})`);
    }
    removeStaleLock(path, holder);
  }
  throw new KocacheError('gc-locked', `cannot take the gc lock ${path}: another gc keeps taking it`);
}

/**
 * Removes a dead gc's lock. Two gcs may find the same stale lock; without care the slower one
 * would delete the lock the faster one just created. So the removal itself runs under a second
 * O_EXCL file, and the lock is removed only if it is still the one found stale.
 */
function removeStaleLock(path: string, seen: LeaseInfo | undefined): void {
  const guard = `${path}.recover`;
  try {
    writeExclusive(guard, JSON.stringify({ pid: process.pid, hostname: hostname(), start: Date.now(), command: 'gc-recover' }));
  } catch (err) {
    if (errnoCode(err) !== 'EEXIST') throw err;
    try {
      const other = parseLease(readFileSync(guard, 'utf8'));
      if (!pidAlive(other.pid) || Date.now() - other.start > 30_000) rmSync(guard, { force: true });
    } catch {
      rmSync(guard, { force: true });
    }
    return;
  }
  try {
    let now: LeaseInfo | undefined;
    try {
      now = parseLease(readFileSync(path, 'utf8'));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return;
      now = undefined;
    }
    const same = seen === undefined ? now === undefined : now !== undefined && now.pid === seen.pid && now.start === seen.start;
    if (same) rmSync(path, { force: true });
  } finally {
    rmSync(guard, { force: true });
  }
}

function ageOf(path: string): number | undefined {
  try {
    return Date.now() - statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
}
