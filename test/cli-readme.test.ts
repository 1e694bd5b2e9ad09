import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CLI, tempDir } from './helpers/cli.js';

// The README's quick start, run as a new user would paste it: in an empty folder, with `kocache`
// on PATH and nothing else (no registry, no Docker).

const README = join(CLI, '..', '..', '..', 'README.md');

function quickStart(): string {
  const readme = readFileSync(README, 'utf8');
  const section = readme.slice(readme.indexOf('## Quick start'), readme.indexOf('\n## ', readme.indexOf('## Quick start') + 1));
  const m = /```sh\n([\s\S]*?)```/.exec(section);
  assert.ok(m, 'README has a sh block under "## Quick start"');
  return m[1]!;
}

test("the README's quick start runs as written, and does what it says", (t) => {
  const dir = tempDir('kocache-readme-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  symlinkSync(CLI, join(bin, 'kocache'));
  const work = join(dir, 'empty');
  mkdirSync(work);
  const script = quickStart();
  const out = execFileSync('bash', ['-euo', 'pipefail', '-c', script], {
    cwd: work,
    env: { ...process.env, CI: 'true', PATH: `${bin}:${process.env.PATH}`, KOCACHE: join(dir, 'cache') },
    encoding: 'utf8',
  });
  const lines = out.trimEnd().split('\n');
  const builds = lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { digest: string; cached: boolean });
  assert.deepEqual(builds.map((b) => b.cached), [false, true], out);
  assert.equal(builds[0]!.digest, builds[1]!.digest);
  assert.ok(lines.some((l) => /^1 image, 1 layer, [\d.]+ B of layers$/.test(l)), out);
  assert.ok(existsSync(join(work, 'hello-oci', 'index.json')));
  assert.ok(existsSync(join(work, 'hello.tar')));
  // The image runs /app/hello: the entrypoint the quick start set is in the layout's config.
  assert.match(execFileSync(join(bin, 'kocache'), ['inspect', 'oci:./hello-oci'], { cwd: work, encoding: 'utf8' }), /entrypoint \["\/app\/hello"\]/);
});
