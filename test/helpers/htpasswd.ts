import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';

/**
 * Writes an htpasswd file the registry accepts: distribution only reads bcrypt hashes, and Node
 * has no bcrypt, so Python's crypt module (glibc's bcrypt) makes them.
 */
export function writeHtpasswd(path: string, users: Record<string, string>): void {
  const lines = Object.entries(users).map(([user, password]) => {
    const hash = execFileSync('python3', ['-W', 'ignore', '-c', 'import crypt,sys;print(crypt.crypt(sys.stdin.read(), crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))'], {
      input: password,
      encoding: 'utf8',
    }).trim();
    if (!hash.startsWith('$2')) throw new Error(`python3 crypt made no bcrypt hash (got ${JSON.stringify(hash.slice(0, 4))})`);
    return `${user}:${hash}`;
  });
  writeFileSync(path, `${lines.join('\n')}\n`);
}

/** The `auth:` section that turns on Basic auth in the registry's config. */
export function htpasswdConfig(path: string): string {
  return ['auth:', '  htpasswd:', '    realm: kocache-test', `    path: ${path}`].join('\n');
}
