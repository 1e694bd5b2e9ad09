import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type CliResult, runCli } from './helpers/cli.js';
import { registryTimeouts } from '../src/cli/context.js';

// Registries that go silent. The timeouts are set small (1 s of silence per try, 3 s in all) so
// the tests run fast; what is asserted is that the command ends by itself, with one line naming
// the registry and a warning first, not how long it took (the kill after 90 s only stops a hang).

const KILL_AFTER_MS = 90_000;
const FAST = ['--idle-timeout', '1', '--registry-timeout', '3', '--connect-timeout', '2'];

async function listen(server: Server | HttpServer): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  return `127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
}

/** stderr split into warnings and everything else. */
function lines(r: CliResult): { warnings: string[]; errors: string[] } {
  const all = r.stderr.trimEnd().split('\n').filter((l) => l !== '');
  return { warnings: all.filter((l) => l.startsWith('kocache: warning: ')), errors: all.filter((l) => !l.startsWith('kocache: warning: ')) };
}

function assertGaveUp(r: CliResult, host: string): void {
  assert.equal(r.signal, null, `the command ended by itself (killed after ${KILL_AFTER_MS / 1000} s): ${r.stderr}`);
  assert.equal(r.code, 1, r.stderr);
  const { warnings, errors } = lines(r);
  assert.equal(errors.length, 1, `one error line: ${r.stderr}`);
  assert.match(errors[0]!, new RegExp(`^kocache: .*registry ${host}.*`));
  assert.ok(!/\n\s+at /.test(r.stderr), 'no stack trace');
  assert.ok(warnings.some((w) => w.includes(`${host} has not answered`)), `a warning on the first stall: ${r.stderr}`);
}

describe('a registry that accepts connections and never answers', () => {
  let server: Server;
  let host: string;
  const sockets: Socket[] = [];
  let root: string;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'kocache-silent-'));
    server = createServer((s) => { sockets.push(s); s.on('error', () => {}); });
    host = await listen(server);
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
    rmSync(root, { recursive: true, force: true });
  });

  test('a registry timeout shorter than the idle timeout bounds every try', async () => {
    const r = await runCli(['warm', `${host}/app:v1`, '--idle-timeout', '60', '--registry-timeout', '2', '--connect-timeout', '2'], { KOCACHE: join(root, 'cache-short') }, { timeout: KILL_AFTER_MS });
    assertGaveUp(r, host);
    assert.ok(lines(r).warnings.some((w) => /waiting up to 2 s, then retrying, for 2 s in all/.test(w)), r.stderr);
  });

  test('warm REF: fails within the configured timeout with one line naming the registry', async () => {
    const r = await runCli(['warm', `${host}/app:v1`, ...FAST], { KOCACHE: join(root, 'cache-warm') }, { timeout: KILL_AFTER_MS });
    assertGaveUp(r, host);
    assert.match(lines(r).errors[0]!, /stopped answering: nothing for \d+ s \(HEAD .*registry timeout 3 s\)/);
  });

  test('publish --repo: the same, with the timeouts from the environment', async () => {
    const src = join(root, 'src');
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, 'a.txt'), 'a\n');
    const r = await runCli(['publish', `${src}:/app`, '--base', 'scratch', '--repo', `${host}/app:v1`], {
      KOCACHE: join(root, 'cache-publish'), KOCACHE_IDLE_TIMEOUT: '1', KOCACHE_REGISTRY_TIMEOUT: '3',
    }, { timeout: KILL_AFTER_MS });
    assertGaveUp(r, host);
  });

  test('build --cache-from: the registry cache is asked with the configured timeouts, then is a miss with one warning', async () => {
    const src = join(root, 'src-cache-from');
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, 'a.txt'), 'a\n');
    const r = await runCli(['build', `${src}:/app`, '--import-path', 'x/y', '--cache-from', `${host}/cache`, ...FAST], { KOCACHE: join(root, 'cache-build') }, { timeout: KILL_AFTER_MS });
    assert.equal(r.code, 0, r.stderr);
    const { warnings, errors } = lines(r);
    assert.deepEqual(errors, []);
    assert.equal(warnings.length, 1, r.stderr);
    assert.match(warnings[0]!, new RegExp(`registry cache ${host}/cache not used: .*registry timeout 3 s`));
  });

  test('inspect REF: the same timeouts, one line naming the registry', async () => {
    const r = await runCli(['inspect', `${host}/app:v1`, ...FAST], { KOCACHE: join(root, 'cache-inspect') }, { timeout: KILL_AFTER_MS });
    assertGaveUp(r, host);
    assert.match(lines(r).errors[0]!, /registry timeout 3 s/);
  });

  test('gc --cache-repo: the same timeouts, one line naming the registry', async () => {
    const r = await runCli(['gc', '--cache-repo', `${host}/cache`, '--max-age', '1d', ...FAST], { KOCACHE: join(root, 'cache-gc') }, { timeout: KILL_AFTER_MS });
    assert.equal(r.signal, null, r.stderr);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(lines(r).errors.length, 1, r.stderr);
    assert.match(lines(r).errors[0]!, new RegExp(`^kocache: .*registry ${host}.*registry timeout 3 s`));
  });
});

describe('a registry that stops reading an upload', () => {
  let server: HttpServer;
  let host: string;
  let root: string;
  let puts = 0;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'kocache-stuck-upload-'));
    // Answers what comes before an upload (nothing is there yet; here is a session), then takes
    // the upload's first bytes and neither reads on nor answers.
    server = createHttpServer((req, res) => {
      if (req.method === 'POST') {
        req.resume();
        res.writeHead(202, { location: `/v2/app/blobs/uploads/${randomBytes(4).toString('hex')}`, 'content-length': '0' });
        res.end();
      } else if (req.method === 'PUT' || req.method === 'PATCH') {
        puts++;
        req.pause();
      } else {
        req.resume();
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end('{"errors":[{"code":"MANIFEST_UNKNOWN"}]}');
      }
    });
    host = await listen(server);
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    rmSync(root, { recursive: true, force: true });
  });

  test('publish --repo: the stalled upload is retried, then the command fails with one line', async () => {
    const src = join(root, 'src');
    mkdirSync(src, { recursive: true });
    // Incompressible, and larger than what the socket buffers hold.
    writeFileSync(join(src, 'blob.bin'), randomBytes(12 << 20));
    const r = await runCli(['publish', `${src}:/app`, '--base', 'scratch', '--repo', `${host}/app:v1`, ...FAST], { KOCACHE: join(root, 'cache') }, { timeout: KILL_AFTER_MS });
    assertGaveUp(r, host);
    assert.ok(puts >= 2, `the upload was tried again (${puts} uploads)`);
  });
});

test('a timeout of less than a millisecond is one millisecond, never none', () => {
  // undici takes 0 as no timeout at all: a value that rounded to it would wait for ever.
  assert.deepEqual(registryTimeouts({ 'idle-timeout': '0.0004', 'registry-timeout': '0.0004' }, {}), { idleMs: 1, totalMs: 1 });
  assert.deepEqual(registryTimeouts({}, { KOCACHE_CONNECT_TIMEOUT: '.0001' }), { connectMs: 1 });
  assert.deepEqual(registryTimeouts({ 'connect-timeout': '2.5' }, {}), { connectMs: 2500 });
});

test('timeouts that are not positive seconds are usage errors', async () => {
  const root = mkdtempSync(join(tmpdir(), 'kocache-timeout-usage-'));
  try {
    const cases: [string[], Record<string, string>, RegExp][] = [
      [['--idle-timeout', '0'], {}, /--idle-timeout must be seconds/],
      [['--registry-timeout', 'soon'], {}, /--registry-timeout must be seconds/],
      [[], { KOCACHE_CONNECT_TIMEOUT: '-1' }, /KOCACHE_CONNECT_TIMEOUT must be seconds/],
    ];
    for (const [flags, env, re] of cases) {
      const r = await runCli(['warm', '127.0.0.1:1/app:v1', ...flags], { KOCACHE: join(root, 'cache'), ...env });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, re);
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
