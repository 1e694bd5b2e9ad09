import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { CLI, type CliResult } from './cli.js';

export interface WatchedRun extends CliResult {
  /** The process's peak resident set (VmHWM), in KiB, as last read from /proc. */
  peakRssKb: number;
  /** Set when the watcher had to kill the process: it grew past the limit, or ran past the time. */
  killed?: 'rss' | 'timeout';
}

function peakOf(pid: number): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Runs `kocache ARGS` while watching its peak RSS in /proc (the launcher execs node, so the pid is
 * node's). The process is killed once its peak passes `maxRssKb` or it outlives `timeoutMs`, so a
 * test of a bound fails on a build without the bound instead of taking the machine down with it.
 */
export function runWatched(args: string[], env: Record<string, string | undefined>, o: { maxRssKb: number; timeoutMs: number; cwd?: string }): Promise<WatchedRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(CLI, args, { env: { ...process.env, CI: 'true', ...env }, stdio: ['ignore', 'pipe', 'pipe'], cwd: o.cwd });
    let stdout = '';
    let stderr = '';
    let peakRssKb = 0;
    let killed: WatchedRun['killed'];
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const poll = setInterval(() => {
      const peak = child.pid === undefined ? undefined : peakOf(child.pid);
      if (peak !== undefined) peakRssKb = Math.max(peakRssKb, peak);
      if (peakRssKb > o.maxRssKb && !killed) {
        killed = 'rss';
        child.kill('SIGKILL');
      }
    }, 10);
    const timer = setTimeout(() => {
      if (!killed) killed = 'timeout';
      child.kill('SIGKILL');
    }, o.timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearInterval(poll);
      clearTimeout(timer);
      const r: WatchedRun = { code, signal, stdout, stderr, peakRssKb };
      if (killed) r.killed = killed;
      resolve(r);
    });
  });
}
