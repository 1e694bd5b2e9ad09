import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { skopeoPath } from './registry.js';

const run = promisify(execFile);

/** A small app tree for publish tests: a 256 KiB "binary" and a config folder. */
export function appTree(root: string, name = 'app'): { bin: string; etc: string } {
  const bin = join(root, name);
  writeFileSync(bin, randomBytes(256 << 10));
  chmodSync(bin, 0o755);
  const etc = join(root, 'etc');
  mkdirSync(join(etc, 'conf.d'), { recursive: true });
  writeFileSync(join(etc, 'conf.d', 'app.conf'), 'listen = 8080\n');
  return { bin, etc };
}

/** `DIR/out/hello`, an executable shell script: the smallest layer source, as `./out:/app`. */
export function helloOut(dir: string): string {
  const out = join(dir, 'out');
  mkdirSync(out);
  writeFileSync(join(out, 'hello'), '#!/bin/sh\necho hello\n');
  chmodSync(join(out, 'hello'), 0o755);
  return out;
}

/** Runs skopeo with the given arguments and returns stdout; failures throw with skopeo's stderr. */
export async function skopeo(...args: string[]): Promise<string> {
  try {
    const { stdout } = await run(skopeoPath(), args, { maxBuffer: 64 << 20 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`skopeo ${args.join(' ')} failed: ${e.stderr ?? e.message}`);
  }
}

/** skopeo's `dir:` output: manifest.json and one file per blob, named by hex digest. */
export function readDirManifest(dir: string): { manifest: Record<string, unknown>; config: Record<string, unknown> } {
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { config: { digest: string } };
  const config = JSON.parse(readFileSync(join(dir, manifest.config.digest.replace('sha256:', '')), 'utf8')) as Record<string, unknown>;
  return { manifest: manifest as unknown as Record<string, unknown>, config };
}
