import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CLI_JS, tempDir } from './helpers/cli.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const LINES = ['20', '22', '24'];

/** Each supported line's `node`: this process's for its own line, scripts/install-node.sh's for the others. */
function nodeBinaries(): Map<string, string> {
  const own = process.versions.node.split('.')[0]!;
  const others = LINES.filter((l) => l !== own);
  // Installs what is missing; fails (and so fails this test) when a line cannot be had.
  const dirs = execFileSync('bash', [join(root, 'scripts', 'install-node.sh'), ...others], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
    .trim().split('\n');
  const out = new Map<string, string>([[own, process.execPath]]);
  others.forEach((l, i) => out.set(l, join(dirs[i]!, 'node')));
  return out;
}

/** A fixed tree: several compression blocks of text and of pseudo-random bytes, small files, links, long names. */
function fixedTree(dir: string): string {
  const src = join(dir, 'src');
  mkdirSync(join(src, 'lib', 'deep'), { recursive: true });
  const random = Buffer.alloc(3 << 20);
  for (let off = 0, i = 0; off < random.length; i++) off += createHash('sha256').update(`block ${i}`).digest().copy(random, off);
  writeFileSync(join(src, 'lib', 'random.bin'), random);
  const words = Array.from({ length: 400_000 }, (_, i) => `word${(i * 7919) % 1013}${i % 11 === 0 ? '\n' : ' '}`).join('');
  writeFileSync(join(src, 'lib', 'text.txt'), words);
  for (let i = 0; i < 50; i++) writeFileSync(join(src, 'lib', 'deep', `f${i}.js`), `module.exports = ${i};\n`.repeat(i + 1));
  writeFileSync(join(src, `${'n'.repeat(120)}.txt`), 'a long name\n');
  symlinkSync('lib/text.txt', join(src, 'link'));
  return src;
}

test('the same tree gives byte-identical layers on Node 20, 22 and 24', () => {
  const nodes = nodeBinaries();
  const dir = tempDir();
  const src = fixedTree(dir);
  for (const extra of [[], ['--level', '1'], ['--level', '9']]) {
    const digests = new Map<string, string>();
    for (const [line, node] of nodes) {
      const r = spawnSync(node, [CLI_JS, 'build', `${src}:/app`, '--import-path', 'example.com/lines', ...extra], {
        env: { ...process.env, KOCACHE: join(dir, `cache-${line}`) },
        encoding: 'utf8',
      });
      assert.equal(r.status, 0, `Node ${line}: ${r.stderr}`);
      const out = JSON.parse(r.stdout) as { digest: string; diffid: string };
      digests.set(line, `${out.diffid} ${out.digest}`);
    }
    assert.equal(new Set(digests.values()).size, 1, `${extra.join(' ') || 'default level'}: ${JSON.stringify(Object.fromEntries(digests))}`);
  }
});
