import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BINARY = '/usr/bin/docker-registry';

export interface RegistryOptions {
  /** Extra YAML appended under the top level (e.g. an `auth:` section). */
  extraConfig?: string;
}

/** A real CNCF distribution registry on 127.0.0.1, with throwaway storage. */
export interface RunningRegistry {
  /** `127.0.0.1:PORT` */
  host: string;
  port: number;
  root: string;
  /** The registry's whole log so far (access lines look like `"POST /v2/<repo>/blobs/uploads/ HTTP/1.1" 202`). */
  log(): string;
  /** Blob upload sessions started (POST .../blobs/uploads/), optionally for one repository. */
  uploadsStarted(repo?: string): number;
  /** Count of access-log lines matching a method and a path regex. */
  requests(method: string, path?: RegExp): number;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts Debian's docker-registry. Fails loudly when it is not installed: a registry test that
 * skips is a failure (run `npm run test:setup` to install it).
 */
export async function startRegistry(opts: RegistryOptions = {}): Promise<RunningRegistry> {
  if (!existsSync(BINARY)) throw new Error(`${BINARY} is missing: run 'npm run test:setup' (apt-get install docker-registry skopeo)`);
  const root = mkdtempSync(join(tmpdir(), 'kocache-registry-'));
  const port = await freePort();
  const config = [
    'version: 0.1',
    'log:',
    '  level: info',
    '  accesslog:',
    '    disabled: false',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(root, 'data')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    '  secret: kocache-test-secret',
    opts.extraConfig ?? '',
  ].join('\n');
  const configPath = join(root, 'config.yml');
  writeFileSync(configPath, config);
  // The registry logs to a file, not a pipe: a parent whose event loop is busy (a benchmark timing a
  // command with spawnSync) would stop draining a pipe, and the registry blocks once it is full.
  const logPath = join(root, 'registry.log');
  const logFd = openSync(logPath, 'a');
  const child: ChildProcess = spawn(BINARY, ['serve', configPath], { stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  const readLogText = () => {
    try {
      return readFileSync(logPath, 'utf8');
    } catch {
      return '';
    }
  };
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  // Ready when /v2/ answers (200, or 401 with auth on).
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited at start:\n${readLogText()}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v2/`);
      await res.arrayBuffer();
      if (res.status === 200 || res.status === 401) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`docker-registry did not start on port ${port}:\n${readLogText()}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }

  const accessLines = () => readLogText().split('\n').filter((l) => l.includes('HTTP/1.1"'));
  return {
    host: `127.0.0.1:${port}`,
    port,
    root,
    log: readLogText,
    uploadsStarted: (repo?: string) =>
      accessLines().filter((l) => new RegExp(`"POST /v2/${repo ? escapeRe(repo) : '.+'}/blobs/uploads/[^ ]* HTTP`).test(l)).length,
    requests: (method: string, path?: RegExp) =>
      accessLines().filter((l) => {
        const m = /"([A-Z]+) (\S+) HTTP\/1\.1"/.exec(l);
        return m !== null && m[1] === method && (!path || path.test(m[2] ?? ''));
      }).length,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(root, { recursive: true, force: true });
    },
  };
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Runs skopeo, the independent client that reads back what kocache pushed. */
export function skopeoPath(): string {
  if (!existsSync('/usr/bin/skopeo')) throw new Error("/usr/bin/skopeo is missing: run 'npm run test:setup'");
  return '/usr/bin/skopeo';
}

export function readLog(path: string): string {
  return readFileSync(path, 'utf8');
}
