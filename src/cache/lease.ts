import { randomBytes } from 'node:crypto';
import { closeSync, lstatSync, openSync, readFileSync, readdirSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { KocacheError, errnoCode } from '../errors.js';
import { ensureOwnFolder } from './damage.js';
import { atExit } from '../util/exit.js';

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
  /**
   * Where the system says when a process started (Linux: /proc/PID/stat), that start for this
   * pid: together with the pid it names one process, so a reused pid (or a file naming some
   * long-running process that kocache did not start) is not taken for the lease's owner.
   */
  pidStart?: string;
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
  const info = ownInfo(command);
  const path = join(dir, `${process.pid}-${randomBytes(4).toString('hex')}.json`);
  try {
    ensureOwnFolder(dir);
    writeExclusive(path, JSON.stringify(info));
  } catch (err) {
    throw new KocacheError('cache', `cannot write lease ${path}: ${errnoCode(err) ?? String(err)}`, { cause: err });
  }
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    forget();
    // unlinkSync, not rmSync: rmSync loads Node's recursive-removal module on first use.
    try {
      unlinkSync(path);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err; // ENOENT: a gc judged it stale and removed it
    }
  };
  const forget = atExit(release);
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
    const code = errnoCode(err);
    if (code === 'ENOENT') return out;
    // A file where the folder belongs holds no lease; gc puts a folder back.
    if (code === 'ENOTDIR') return { live: [], stale: [{ pid: -1, hostname: '', start: 0, command: '?', path: dir }] };
    throw err;
  }
  const host = hostname();
  for (const name of names) {
    const path = join(dir, name);
    let info: LeaseInfo | undefined;
    let mtime: number;
    try {
      const st = lstatSync(path);
      mtime = st.mtimeMs;
      if (st.isFile()) info = parseLease(readFileSync(path, 'utf8'));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') continue; // released while we listed
      info = undefined;
    }
    if (info === undefined) {
      // Not a lease kocache wrote (a folder, torn or foreign content): nothing
      // says which process owns it, so it protects what it might for as long as a temp file is
      // spared, counted from when the file was written, and is then removed.
      const young = now - mtime! < UNKNOWN_LEASE_MAX_AGE_MS;
      (young ? out.live : out.stale).push({ pid: -1, hostname: host, start: Math.min(now, mtime!), command: '?', path });
      continue;
    }
    // A claimed start is not believed beyond the file's own age: a lease exists after its start.
    info.start = Math.min(info.start, now);
    (leaseAlive(info, host, now, mtime!) ? out.live : out.stale).push({ ...info, path });
  }
  return out;
}

/** How long a file in leases/ that kocache cannot attribute to a process is believed: as long as a temp file is spared. */
const UNKNOWN_LEASE_MAX_AGE_MS = 10 * 60 * 1000;

/**
 * Whether the process a lease names still runs. On this host that is its pid, and where the
 * system tells a process's start (Linux) that start too: a pid that was reused, or a lease that
 * names a process kocache never ran in (pid 1, say), does not keep gc from working. Where the
 * lease carries no start although this system gives one, it is not kocache's own lease and is
 * believed only for a short time. A lease from another host is believed for a day.
 */
function leaseAlive(info: LeaseInfo, host: string, now: number, mtime: number): boolean {
  if (info.hostname !== host) return now - info.start < FOREIGN_LEASE_MAX_AGE_MS;
  if (!pidAlive(info.pid)) return false;
  const actual = procStat(info.pid);
  if (actual === undefined || actual.start === undefined) return true;
  // A zombie has exited (killed, say) and only waits for its parent to collect it: it holds nothing.
  if (actual.state === 'Z' || actual.state === 'X') return false;
  if (info.pidStart === undefined) return now - mtime < UNKNOWN_LEASE_MAX_AGE_MS;
  return info.pidStart === actual.start;
}

/** When a process started, as the system counts it (Linux: clock ticks since boot); undefined where unknown. */
export function processStart(pid: number): string | undefined {
  return procStat(pid)?.start;
}

/** A process's state letter and start, from /proc (Linux); undefined where unknown. */
function procStat(pid: number): { state: string; start: string | undefined } | undefined {
  if (process.platform !== 'linux') return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces and parentheses): state is field 3, starttime field 22.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0] ?? '', start: fields[19] };
  } catch {
    return undefined;
  }
}

function ownInfo(command: string): LeaseInfo {
  const info: LeaseInfo = { pid: process.pid, hostname: hostname(), start: Date.now(), command };
  const pidStart = processStart(process.pid);
  if (pidStart !== undefined) info.pidStart = pidStart;
  return info;
}

function parseLease(text: string): LeaseInfo {
  const v = JSON.parse(text) as Partial<LeaseInfo> | null;
  if (typeof v !== 'object' || v === null) throw new Error('bad lease');
  if (!Number.isSafeInteger(v.pid) || typeof v.start !== 'number' || !Number.isFinite(v.start) || typeof v.hostname !== 'string') throw new Error('bad lease');
  const info: LeaseInfo = { pid: v.pid!, start: v.start, hostname: v.hostname, command: String(v.command ?? '') };
  if (typeof v.pidStart === 'string') info.pidStart = v.pidStart;
  return info;
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
  const info = ownInfo('gc');
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      writeExclusive(path, JSON.stringify(info));
      const release = () => {
        forget();
        // Only our own lock: a takeover after we were presumed dead must not be undone.
        try {
          if (parseLease(readFileSync(path, 'utf8')).pid === process.pid) rmSync(path, { force: true });
        } catch {
          /* already gone */
        }
      };
      const forget = atExit(release);
      return release;
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw new KocacheError('cache', `cannot create ${path}: ${errnoCode(err) ?? String(err)}`, { cause: err });
    }
    let holder: LeaseInfo | undefined;
    let mtime = 0;
    try {
      const st = lstatSync(path);
      if (!st.isFile()) {
        // A folder (or anything but a file) is no gc's lock: something put there by hand.
        try {
          rmSync(path, { recursive: true, force: true });
        } catch (e) {
          throw new KocacheError('cache', `${path} is not kocache's gc lock and cannot be removed (${errnoCode(e) ?? String(e)}); remove it by hand`, { cause: e });
        }
        continue;
      }
      mtime = st.mtimeMs;
      holder = parseLease(readFileSync(path, 'utf8'));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') continue; // released between our open and read
      holder = undefined; // torn: the writer died between open and write
    }
    if (holder === undefined) {
      // Empty or torn: a gc between creating the file and writing it, or one that died there.
      const age = ageOf(path);
      if (age !== undefined && age < 5_000) throw new KocacheError('gc-locked', `another kocache gc is starting on this cache (${path})`);
    } else if (leaseAlive(holder, hostname(), Date.now(), mtime)) {
      throw new KocacheError('gc-locked', `another kocache gc is running on this cache (pid ${holder.pid} on ${holder.hostname}, ${path})`);
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
