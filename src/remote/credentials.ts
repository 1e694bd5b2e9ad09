import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { KocacheError, errnoCode } from '../errors.js';
import { DOCKER_HUB, canonicalRegistry } from '../reference/reference.js';
import { DEFAULT_TIMEOUTS } from './timeouts.js';

/**
 * What the user has told Docker about a registry. Exactly one of the forms is usable:
 * username+password (Basic, or the password grant at a token server), an identity token (an
 * OAuth refresh token), or a registry token (a ready bearer token).
 */
export interface Credentials {
  username?: string;
  password?: string;
  identityToken?: string;
  registryToken?: string;
  /** Where they came from, for messages ("~/.docker/config.json", "docker-credential-pass"). Never the secret. */
  source: string;
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
  registrytoken?: string;
}

interface DockerConfigFile {
  auths?: Record<string, AuthEntry>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
}

/** config.json keys come as `https://index.docker.io/v1/`, `http://host:5000`, `host/path`...; this reduces them to a host. */
export function configKeyToRegistry(key: string): string {
  let k = key.trim().replace(/^[a-z]+:\/\//i, '');
  const slash = k.indexOf('/');
  if (slash >= 0) k = k.slice(0, slash);
  return canonicalRegistry(k.toLowerCase());
}

/** The server name credential helpers know a registry by: Docker Hub's is historic. */
export function helperServerName(registry: string): string {
  return registry === DOCKER_HUB ? 'https://index.docker.io/v1/' : registry;
}

/**
 * Reads credentials the way the docker CLI does: credHelpers for the registry, else credsStore,
 * else `auths` in config.json. The file is read once; helpers are asked once per registry.
 */
export class CredentialStore {
  private config: Promise<{ file: DockerConfigFile; path: string } | undefined> | undefined;
  private readonly cache = new Map<string, Promise<Credentials | undefined>>();

  constructor(
    private readonly configDir = process.env.DOCKER_CONFIG || join(homedir(), '.docker'),
    private readonly warn: (msg: string) => void = () => {},
    /** How long a credential helper may take: the registry timeout (a helper that hangs is a registry that does not answer). */
    private readonly helperTimeoutMs = DEFAULT_TIMEOUTS.totalMs,
  ) {}

  get(registry: string): Promise<Credentials | undefined> {
    const key = canonicalRegistry(registry.toLowerCase());
    let p = this.cache.get(key);
    if (!p) {
      p = this.lookup(key);
      this.cache.set(key, p);
    }
    return p;
  }

  private loadConfig(): Promise<{ file: DockerConfigFile; path: string } | undefined> {
    this.config ??= (async () => {
      const path = join(this.configDir, 'config.json');
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') return undefined;
        throw new KocacheError('credentials', `cannot read ${path}: ${errnoCode(err) ?? String(err)}`, { cause: err });
      }
      try {
        const file = JSON.parse(text) as unknown;
        if (typeof file !== 'object' || file === null || Array.isArray(file)) throw new Error('not an object');
        return { file: file as DockerConfigFile, path };
      } catch {
        // The parse error message could quote the file, and the file holds secrets.
        throw new KocacheError('credentials', `cannot read ${path}: not valid JSON`);
      }
    })();
    return this.config;
  }

  private async lookup(registry: string): Promise<Credentials | undefined> {
    const loaded = await this.loadConfig();
    if (!loaded) return undefined;
    const { file, path } = loaded;
    const helper = Object.entries(file.credHelpers ?? {}).find(([k]) => configKeyToRegistry(k) === registry)?.[1];
    if (helper) {
      const c = await this.fromHelper(helper, registry);
      if (c) return c;
    } else if (file.credsStore) {
      const c = await this.fromHelper(file.credsStore, registry);
      if (c) return c;
    }
    const entry = Object.entries(file.auths ?? {}).find(([k]) => configKeyToRegistry(k) === registry)?.[1];
    return entry ? fromAuthEntry(entry, path, registry) : undefined;
  }

  private async fromHelper(name: string, registry: string): Promise<Credentials | undefined> {
    const program = `docker-credential-${name}`;
    let out: { code: number | null; stdout: string };
    try {
      out = await runHelper(program, helperServerName(registry), this.helperTimeoutMs);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        this.warn(`credential helper ${program} (named in config.json) is not on PATH; trying the auths entries`);
        return undefined;
      }
      if (err === HELPER_TIMEOUT) throw new KocacheError('credentials', `credential helper ${program} gave no answer for ${registry} in ${this.helperTimeoutMs / 1000} s (the registry timeout); stopped it`);
      throw new KocacheError('credentials', `credential helper ${program} failed for ${registry}: ${errnoCode(err) ?? String(err)}`, { cause: err });
    }
    if (out.code !== 0) {
      if (/credentials not found/i.test(out.stdout)) return undefined;
      // The helper's output is not echoed: a confused helper may print what it holds.
      throw new KocacheError('credentials', `credential helper ${program} failed for ${registry} (exit code ${String(out.code)})`);
    }
    let parsed: { Username?: unknown; Secret?: unknown };
    try {
      parsed = JSON.parse(out.stdout) as { Username?: unknown; Secret?: unknown };
    } catch {
      throw new KocacheError('credentials', `credential helper ${program} gave unreadable output for ${registry}`);
    }
    const username = typeof parsed.Username === 'string' ? parsed.Username : '';
    const secret = typeof parsed.Secret === 'string' ? parsed.Secret : '';
    if (secret === '') return undefined;
    // Docker's convention: the username "<token>" marks the secret as an identity token.
    if (username === '<token>') return { identityToken: secret, source: program };
    return { username, password: secret, source: program };
  }
}

function fromAuthEntry(entry: AuthEntry, path: string, registry: string): Credentials | undefined {
  const source = path;
  if (entry.registrytoken) return { registryToken: entry.registrytoken, source };
  let username = entry.username;
  let password = entry.password;
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw new KocacheError('credentials', `${path}: the auth entry for ${registry} is not base64 of user:password`);
    username = decoded.slice(0, colon);
    password = decoded.slice(colon + 1);
  }
  if (entry.identitytoken) return { identityToken: entry.identitytoken, ...(username ? { username } : {}), source };
  if (username === undefined && password === undefined) return undefined;
  return { username: username ?? '', password: password ?? '', source };
}

const HELPER_TIMEOUT = new Error('credential helper timed out');

function runHelper(program: string, server: string, timeoutMs: number): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, ['get'], { stdio: ['pipe', 'pipe', 'ignore'] });
    let stdout = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(HELPER_TIMEOUT);
    }, timeoutMs);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s: string) => { stdout += s; });
    child.on('error', (err) => (clearTimeout(timer), reject(err)));
    child.on('close', (code) => (clearTimeout(timer), resolve({ code, stdout })));
    child.stdin.on('error', () => { /* the helper may exit before reading; its exit code tells */ });
    child.stdin.end(server);
  });
}
