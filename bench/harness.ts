import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { cpus, availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';

/** One row of the results table: kocache beside the tool a user would otherwise run. */
export interface Row {
  what: string;
  kocache: number;
  baselineName?: string;
  baseline?: number;
  /** Free text: sizes, throughput, goals. */
  note?: string;
}

export const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 3));

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * Runs a shell command and returns its wall time in seconds; throws if it fails. The clock is
 * read by the shell around the command, not by this process around the shell: forking from a
 * Node process that holds a lot of memory (this one, after the compression rows) costs tens of
 * milliseconds per spawn (measured: ~40 ms at 1.2 GB resident, ~3 ms small), which would be
 * charged to every command, and would swamp the short ones (a cache hit, a no-op publish).
 */
export function timeShell(cmd: string, env: Record<string, string> = {}): number {
  const clock = join(tmpdir(), `kocache-bench-clock-${process.pid}`);
  const script = `s=$EPOCHREALTIME; ( ${cmd} ); rc=$?; e=$EPOCHREALTIME; printf '%s %s' "$s" "$e" > '${clock}'; exit $rc`;
  // A bound per command, so a hang shows up as a failed benchmark rather than a stalled run.
  const r = spawnSync('bash', ['-o', 'pipefail', '-c', script], { env: { ...process.env, ...env, LC_ALL: 'C' }, stdio: ['ignore', 'ignore', 'pipe'], timeout: 300_000 });
  if (r.status !== 0) throw new Error(`benchmark command failed (${r.status ?? r.signal}): ${cmd}\n${r.stderr?.toString() ?? ''}`);
  const [start, end] = readFileSync(clock, 'utf8').split(' ').map(Number) as [number, number];
  rmSync(clock, { force: true });
  return end - start;
}

/**
 * Median wall time of `runs` runs, with `before` run untimed ahead of each (to reset a cache,
 * say). Pairs with a baseline are run interleaved (A B A B) so drift in machine speed hits both.
 */
export function medianOf(runs: number, fn: () => number, before?: () => void): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    before?.();
    times.push(fn());
  }
  return median(times);
}

export function pairMedians(runs: number, a: () => number, b: () => number, beforeA?: () => void, beforeB?: () => void): [number, number] {
  const ta: number[] = [];
  const tb: number[] = [];
  for (let i = 0; i < runs; i++) {
    beforeA?.();
    ta.push(a());
    beforeB?.();
    tb.push(b());
  }
  return [median(ta), median(tb)];
}

export function machineLine(): string {
  const c = cpus();
  return `${availableParallelism()} cores (${c[0]?.model.trim() ?? 'unknown cpu'}), Node ${process.version}, ${process.platform}/${process.arch}`;
}

function fmt(s: number | undefined): string {
  if (s === undefined) return '';
  return s < 1 ? `${(s * 1000).toFixed(0)} ms` : `${s.toFixed(2)} s`;
}

/** A Markdown table, so the docs can show a real run as it was printed. */
export function renderTable(rows: Row[]): string {
  const head = ['benchmark', 'kocache', 'baseline', 'baseline time', 'ratio', 'notes'];
  const body = rows.map((r) => [
    r.what,
    fmt(r.kocache),
    r.baselineName ?? '',
    fmt(r.baseline),
    r.baseline ? `${(r.kocache / r.baseline).toFixed(2)}x` : '',
    r.note ?? '',
  ]);
  const cell = (c: string) => c.replace(/\|/g, '\\|'); // a shell pipe inside a Markdown cell
  const lines = [head, head.map(() => '---'), ...body].map((cells) => `| ${cells.map(cell).join(' | ')} |`);
  return lines.join('\n');
}
