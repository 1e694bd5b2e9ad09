import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { get as httpsGet } from 'node:https';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';

const BINARY = '/usr/bin/docker-registry';

export interface RegistryOptions {
  /** Extra YAML appended under the top level (e.g. an `auth:` section). */
  extraConfig?: string;
  /**
   * Serve HTTPS on this IP address with a certificate made for it (written to `caPath`). Not a
   * loopback address: kocache talks plain HTTP to loopback registries, as Docker does.
   */
  tlsAddress?: string;
  /** Manifest and blob DELETE allowed (storage.delete.enabled); default true. */
  deletes?: boolean;
}

/** A real CNCF distribution registry on 127.0.0.1, with throwaway storage. */
export interface RunningRegistry {
  /** `127.0.0.1:PORT` (or `tlsAddress:PORT`) */
  host: string;
  /** With `tlsAddress`: the PEM certificate the registry serves (self-signed, so also its CA). */
  caPath?: string;
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
  const address = opts.tlsAddress ?? '127.0.0.1';
  let tlsConfig: string[] = [];
  let caPath: string | undefined;
  if (opts.tlsAddress) {
    caPath = join(root, 'cert.pem');
    const keyPath = join(root, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', caPath, '-days', '2',
      '-subj', '/CN=kocache-test-registry', '-addext', `subjectAltName=IP:${opts.tlsAddress}`], { stdio: 'ignore' });
    tlsConfig = ['  tls:', `    certificate: ${caPath}`, `    key: ${keyPath}`];
  }
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
    `    enabled: ${opts.deletes === false ? 'false' : 'true'}`,
    'http:',
    `  addr: ${address}:${port}`,
    '  secret: kocache-test-secret',
    ...tlsConfig,
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
      const status = caPath ? await httpsStatus(`https://${address}:${port}/v2/`, readFileSync(caPath)) : await httpStatus(`http://127.0.0.1:${port}/v2/`);
      if (status === 200 || status === 401) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`docker-registry did not start on port ${port}:\n${readLogText()}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }

  const accessLines = () => readLogText().split('\n').filter((l) => /HTTP\/[0-9.]+" \d/.test(l));
  return {
    host: `${address}:${port}`,
    ...(caPath ? { caPath } : {}),
    port,
    root,
    log: readLogText,
    uploadsStarted: (repo?: string) =>
      accessLines().filter((l) => new RegExp(`"POST /v2/${repo ? escapeRe(repo) : '.+'}/blobs/uploads/[^ ]* HTTP`).test(l)).length,
    requests: (method: string, path?: RegExp) =>
      accessLines().filter((l) => {
        const m = /"([A-Z]+) (\S+) HTTP\/[0-9.]+"/.exec(l);
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

async function httpStatus(url: string): Promise<number> {
  const res = await fetch(url);
  await res.arrayBuffer();
  return res.status;
}

function httpsStatus(url: string, ca: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpsGet(url, { ca }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
  });
}

/** An address of this machine that is not loopback, for a registry kocache must reach over TLS. */
export function nonLoopbackAddress(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  throw new Error('this machine has no non-loopback IPv4 address to serve a TLS registry on');
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
