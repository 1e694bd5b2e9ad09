import { spawn, spawnSync, type SpawnOptions } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PublishResult } from '../../src/index.js';

const BIN = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin');
/** The CLI as installed: the launcher in dist/bin/ (tests run from dist/test/helpers/). */
export const CLI = join(BIN, 'kocache');
/** The Node half of the launcher, for tests that need the node process itself. */
export const CLI_JS = join(BIN, 'kocache.cjs');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `kocache ARGS` to completion with the given environment additions. */
export function runCli(args: string[], env: Record<string, string | undefined> = {}, opts: SpawnOptions = {}): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(CLI, args, {
      ...opts,
      env: { ...process.env, CI: 'true', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolvePromise({ code, signal, stdout, stderr }));
  });
}

export function runCliSync(args: string[], env: Record<string, string | undefined> = {}): CliResult {
  const r = spawnSync(CLI, args, { env: { ...process.env, CI: 'true', ...env }, encoding: 'utf8' });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

const made: string[] = [];

/** A fresh temp folder, removed when the test file's process exits (each file runs in its own). */
export function tempDir(prefix = 'kocache-test-'): string {
  if (made.length === 0) process.once('exit', () => made.forEach((d) => rmSync(d, { recursive: true, force: true })));
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** `kocache build --json` (docs/cli-json.md). */
export interface BuildOut {
  mediaType: string;
  digest: string;
  size: number;
  diffid: string;
  cached: boolean;
}

/** `kocache publish --json` (docs/cli-json.md): the library's result less what only the library reports. */
export type PublishOut = Omit<PublishResult, 'bytesWritten'>;

/** Parses the `kocache-trace: {...}` line KOCACHE_TRACE=1 makes the CLI print at exit. */
export function traceOf(stderr: string): Record<string, number> {
  const line = stderr.split('\n').find((l) => l.startsWith('kocache-trace: '));
  if (!line) throw new Error(`no kocache-trace line in stderr:\n${stderr}`);
  return JSON.parse(line.slice('kocache-trace: '.length)) as Record<string, number>;
}

/**
 * Asserts the error shape every command must have: exactly one line on stderr, no stack trace.
 * With `warnings`, warning lines before it are allowed (retries, a slow registry).
 */
export function isOneLineError(r: CliResult, opts: { warnings?: boolean } = {}): boolean {
  const lines = r.stderr.trimEnd().split('\n')
    .filter((l) => !l.startsWith('kocache-trace: ') && !(opts.warnings && l.startsWith('kocache: warning: ')));
  return r.code !== 0 && lines.length === 1 && lines[0]!.startsWith('kocache: ') && !/\n\s+at /.test(r.stderr);
}
