import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { looksLikeFreshRunner, namedTree } from '../../src/cli/startup/hashworker.js';

test('the hashing worker is started ahead only for a publish or build with a registry cache and no stamps', () => {
  const root = mkdtempSync(join(tmpdir(), 'kocache-prestart-'));
  const empty = join(root, 'empty');
  const seen = join(root, 'seen');
  mkdirSync(join(seen, 'stat'), { recursive: true });
  const env = { KOCACHE: empty, HOME: root };
  const repo = ['--cache-from', 'r.example/c'];
  assert.equal(looksLikeFreshRunner(['publish', 'app:/app', ...repo], env), true);
  assert.equal(looksLikeFreshRunner(['build', 'app:/app', '--cache-repo=r.example/c'], env), true);
  assert.equal(looksLikeFreshRunner(['publish', 'app:/app'], { ...env, KOCACHE_REPO: 'r.example/c' }), true);
  assert.equal(looksLikeFreshRunner(['publish', 'app:/app', ...repo], { ...env, KOCACHE: 'off' }), true, 'a throwaway cache has no stamps');
  assert.equal(looksLikeFreshRunner(['publish', 'app:/app'], env), false, 'no registry cache');
  assert.equal(looksLikeFreshRunner(['publish', 'app:/app', ...repo], { ...env, KOCACHE: seen }), false, 'stamps saved before');
  assert.equal(looksLikeFreshRunner(['publish', 'app:/app', ...repo, '--cache-dir', seen], { HOME: root }), false, '--cache-dir is where the stamps are');
  assert.equal(looksLikeFreshRunner(['build', 'app:/app', ...repo, '--build-id', 'x'], env), false, 'a build id is the key');
  assert.equal(looksLikeFreshRunner(['warm', 'r.example/base', ...repo], env), false, 'warm hashes no tree');
  assert.equal(looksLikeFreshRunner(['publish', 'app:/app', '--', '--cache-from'], env), false, 'after -- nothing is a flag');
});

test('the tree a fresh runner lists ahead is the one folder named as SRC:/DEST', () => {
  const root = mkdtempSync(join(tmpdir(), 'kocache-named-'));
  mkdirSync(join(root, 'app'));
  mkdirSync(join(root, 'etc'));
  writeFileSync(join(root, 'bin'), 'a file');
  const cache = ['--cache-from', '127.0.0.1:5000/c'];
  assert.equal(namedTree(['publish', 'app:/app', '--repo', '127.0.0.1:5000/x:v1', ...cache], root), join(root, 'app'));
  assert.equal(namedTree(['build', `${root}/app:/srv`, 'bin:/bin/tool', ...cache], root), join(root, 'app'), 'a file is not a tree');
  assert.equal(namedTree(['publish', 'app:/app', 'etc:/etc', ...cache], root), undefined, 'two trees: not guessed');
  assert.equal(namedTree(['publish', 'app:/a', 'app/.:/b', ...cache], root), join(root, 'app'), 'one tree named twice');
  assert.equal(namedTree(['publish', 'missing:/app', ...cache], root), undefined);
  assert.equal(namedTree(['publish', 'app_{arch}:/app', ...cache], root), undefined, 'a platform pattern');
  assert.equal(namedTree(['publish', '--', 'app:/app'], root), undefined);
});
