import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MediaType } from '../src/oci/mediatypes.js';
import { Annotation } from '../src/regcache/record.js';
import { RegistryClient } from '../src/remote/client.js';
import { type CliResult, runCli, tempDir, traceOf } from './helpers/cli.js';
import { makeDockerArchive, standardLayers } from './helpers/archives.js';
import { appTree, skopeo } from './helpers/image-fixtures.js';
import { type RunningRegistry, freePort, startRegistry } from './helpers/registry.js';
import { startFaultProxy } from './helpers/fault-proxy.js';

let reg: RunningRegistry;
let work: string;
let src: string;
let cacheN = 0;

before(async () => {
  reg = await startRegistry();
  work = tempDir('kocache-regcache-cli-');
  src = join(work, 'src');
  mkdirSync(src);
  appTree(src);
});
after(async () => {
  await reg?.stop();
});

/** A runner with an empty KOCACHE of its own. */
const freshCache = () => join(work, `cache-${cacheN++}`);
const LAYERS = ['app:/usr/local/bin/app', 'etc:/etc/app'];

async function publish(repo: string, extra: string[], cache = freshCache(), env: Record<string, string> = {}): Promise<CliResult & { digest: string; trace: Record<string, number> }> {
  const r = await runCli(
    ['publish', ...LAYERS, '--base', 'scratch', '--import-path', 'example.com/shared', '--repo', repo, '--json', ...extra],
    { KOCACHE: cache, KOCACHE_TRACE: '1', ...env },
    { cwd: src },
  );
  assert.equal(r.code, 0, `publish to ${repo} failed: ${r.stderr}`);
  const last = r.stdout.trim().split('\n').pop()!;
  return { ...r, digest: (JSON.parse(last) as { digest: string }).digest, trace: traceOf(r.stderr) };
}

const warnings = (r: CliResult) => r.stderr.split('\n').filter((l) => l.startsWith('kocache: warning:'));
/** Layer bytes sent to a repository: upload PUTs and PATCHes (a mount is a POST with no body). */
const uploads = (r: RunningRegistry, repo: string) => r.requests('PUT', new RegExp(`^/v2/${repo}/blobs/uploads/`)) + r.requests('PATCH', new RegExp(`^/v2/${repo}/blobs/uploads/`));
const writes = (r: RunningRegistry, repo: string) => ['PUT', 'POST', 'PATCH', 'DELETE'].reduce((n, m) => n + r.requests(m, new RegExp(`^/v2/${repo}/`)), 0);

let coldDigest: string;

describe('publish through a registry cache', () => {
  test('runner A writes records; runner B (empty KOCACHE, another repository) does no tar, no gzip, uploads no layer, gets the same digest', async () => {
    const cold = await publish(`${reg.host}/cli/nocache:v1`, []);
    coldDigest = cold.digest;
    const a = await publish(`${reg.host}/cli/app-a:v1`, ['--cache-repo', `${reg.host}/cli/cache`]);
    assert.equal(a.digest, coldDigest, 'the cache changes nothing in the image');
    assert.deepEqual(warnings(a), []);
    assert.equal(a.trace['regcache.put'], 2, 'one record per layer');
    const tags = await new RegistryClient().listTags({ registry: reg.host, repository: 'cli/cache' });
    assert.equal(tags.filter((t) => t.startsWith('kc1-')).length, 2);

    const b = await publish(`${reg.host}/cli/app-b:v1`, ['--cache-repo', `${reg.host}/cli/cache`]);
    assert.equal(b.digest, coldDigest);
    assert.deepEqual(warnings(b), []);
    // A fresh runner's hashing worker is started before the command is even parsed; not so for a
    // publish with no registry cache (test/unit/prestart.test.ts: the other cases).
    assert.equal(b.trace['file.hash.prestart'], 1, 'the fresh runner started its hashing worker at once');
    // Whether the worker had listed it when the layer was built depends on the machine's load.
    assert.equal(b.trace['file.prescout'], 1, 'and had it list the one folder named as a layer');
    assert.equal(b.trace['file.hash.launched'], 1, 'a thread the launcher started before the bundle loaded');
    assert.equal(cold.trace['file.hash.launched'] ?? 0, 0);
    assert.equal(cold.trace['file.hash.prestart'] ?? 0, 0, 'no registry cache, no early worker');
    assert.equal(b.trace['tar.out'] ?? 0, 0, 'no tar');
    assert.equal(b.trace['gzip.in'] ?? 0, 0, 'no gzip');
    assert.equal(b.trace['regcache.hit'], 2);
    assert.ok(uploads(reg, 'cli/app-b') <= 1, `the config at most is uploaded to B's repository (${uploads(reg, 'cli/app-b')} uploads)`);
    // The tag is new and the layers were not known locally: the config went up in the session
    // opened while they were looked up, with no HEAD after them.
    assert.equal(b.trace['upload.held'], 1, 'the config went into the session opened ahead');
    assert.equal(b.trace['regcache.memo.read'] ?? 0, 0, 'an empty cache: no memo looked for');
    assert.equal(reg.requests('HEAD', /^\/v2\/cli\/app-b\/blobs\//), 0, 'no HEAD of a blob in B\'s repository');
    assert.equal(reg.requests('GET', /^\/v2\/cli\/cache\/blobs\//), 0, 'no blob of the cache repository was downloaded');
    await skopeo('copy', '--quiet', '--src-tls-verify=false', `docker://${reg.host}/cli/app-b:v1`, `dir:${join(work, 'b-dir')}`);
  });

  test('KOCACHE_REPO sets --cache-repo; B publishing to a second registry copies each layer once, still no tar or gzip', async () => {
    const other = await startRegistry();
    try {
      const b = await publish(`${other.host}/far/app:v1`, [], freshCache(), { KOCACHE_REPO: `${reg.host}/cli/cache` });
      assert.equal(b.digest, coldDigest);
      assert.deepEqual(warnings(b), []);
      assert.equal(b.trace['tar.out'] ?? 0, 0);
      assert.equal(b.trace['gzip.in'] ?? 0, 0);
      assert.equal(uploads(other, 'far/app'), 3, 'two layers copied once each, and the config');
      await skopeo('copy', '--quiet', '--src-tls-verify=false', `docker://${other.host}/far/app:v1`, `dir:${join(work, 'far-dir')}`);
    } finally {
      await other.stop();
    }
  });

  test('--cache-from only: hits, and no PUT, POST, PATCH or DELETE reaches the cache repository', async () => {
    const before = writes(reg, 'cli/cache');
    const r = await publish(`${reg.host}/cli/pr:v1`, ['--cache-from', `${reg.host}/cli/cache`]);
    assert.equal(r.digest, coldDigest);
    assert.equal(r.trace['regcache.hit'], 2);
    assert.equal(writes(reg, 'cli/cache'), before);
    // A miss in a read-only cache: built, and still nothing written there.
    const other = join(work, 'other');
    mkdirSync(other);
    appTree(other);
    const miss = await runCli(['publish', 'app:/app', '--base', 'scratch', '--repo', `${reg.host}/cli/pr2:v1`, '--cache-from', `${reg.host}/cli/cache`],
      { KOCACHE: freshCache(), KOCACHE_TRACE: '1' }, { cwd: other });
    assert.equal(miss.code, 0, miss.stderr);
    assert.ok((traceOf(miss.stderr)['gzip.in'] ?? 0) > 0);
    assert.equal(writes(reg, 'cli/cache'), before);
  });

  test('an unreachable cache: success, the no-cache digest, one warning', async () => {
    const dead = `127.0.0.1:${await freePort()}/cache`;
    const r = await publish(`${reg.host}/cli/dead:v1`, ['--cache-repo', dead]);
    assert.equal(r.digest, coldDigest);
    assert.equal(warnings(r).length, 1, r.stderr);
    assert.match(warnings(r)[0]!, /registry cache .* not used: cannot reach registry/);
  });

  test('broken records (two tags swapped, a blob gone): success, the no-cache digest, one warning', async () => {
    const c = new RegistryClient();
    const repo = { registry: reg.host, repository: 'cli/broken-cache' };
    await publish(`${reg.host}/cli/broken-seed:v1`, ['--cache-repo', `${reg.host}/cli/broken-cache`]);
    const [x, y] = (await c.listTags(repo)).filter((t) => t.startsWith('kc1-'));
    const bx = (await c.getManifest({ ...repo, tag: x! })).bytes;
    const by = (await c.getManifest({ ...repo, tag: y! })).bytes;
    await c.putManifest({ ...repo, tag: x! }, by, MediaType.OciManifest);
    await c.putManifest({ ...repo, tag: y! }, bx, MediaType.OciManifest);
    const swapped = await publish(`${reg.host}/cli/broken-a:v1`, ['--cache-from', `${reg.host}/cli/broken-cache`]);
    assert.equal(swapped.digest, coldDigest);
    assert.equal(warnings(swapped).length, 1, swapped.stderr);
    assert.match(warnings(swapped)[0]!, /key annotation is not the key asked for/);
    assert.equal(swapped.trace['regcache.broken'], 2);
    // Put back, then remove the blobs the records pin: the records now point at nothing.
    await c.putManifest({ ...repo, tag: x! }, bx, MediaType.OciManifest);
    await c.putManifest({ ...repo, tag: y! }, by, MediaType.OciManifest);
    for (const bytes of [bx, by]) {
      const layer = (JSON.parse(bytes.toString()) as { layers: { digest: string }[] }).layers[0]!.digest;
      const res = await fetch(`http://${reg.host}/v2/cli/broken-cache/blobs/${layer}`, { method: 'DELETE' });
      assert.equal(res.status, 202);
    }
    const gone = await publish(`${reg.host}/cli/broken-b:v1`, ['--cache-from', `${reg.host}/cli/broken-cache`]);
    assert.equal(gone.digest, coldDigest);
    assert.equal(warnings(gone).length, 1, gone.stderr);
    assert.match(warnings(gone)[0]!, /missing from/);
    assert.ok((gone.trace['regcache.withdrawn'] ?? 0) >= 1, 'a layer answered ahead was withdrawn and the image made again');
    await c.close();
  });

  test('--cache-check: a record answering the wrong layer fails the publish loudly; a true one passes', async () => {
    const c = new RegistryClient();
    const repo = { registry: reg.host, repository: 'cli/cache' };
    const ok = await publish(`${reg.host}/cli/checked:v1`, ['--cache-from', `${reg.host}/cli/cache`, '--cache-check']);
    assert.equal(ok.digest, coldDigest);
    assert.ok((ok.trace['gzip.in'] ?? 0) > 0, 'the check rebuilds');

    // A hostile writer: the record keeps its key but names the other layer (a blob the repository holds).
    const tags = (await c.listTags(repo)).filter((t) => t.startsWith('kc1-'));
    const records = await Promise.all(tags.map(async (t) => ({ tag: t, m: JSON.parse((await c.getManifest({ ...repo, tag: t })).bytes.toString()) as { layers: unknown[] } })));
    const [x, y] = records;
    const forged = { ...x!.m, layers: y!.m.layers };
    await c.putManifest({ ...repo, tag: x!.tag }, Buffer.from(JSON.stringify(forged)), MediaType.OciManifest);
    const bad = await runCli(['publish', ...LAYERS, '--base', 'scratch', '--import-path', 'example.com/shared', '--repo', `${reg.host}/cli/forged:v1`, '--cache-from', `${reg.host}/cli/cache`, '--cache-check'],
      { KOCACHE: freshCache() }, { cwd: src });
    assert.equal(bad.code, 1, bad.stderr);
    assert.match(bad.stderr, /--cache-check: the registry cache answered sha256:[a-f0-9]{64} .* but the layer builds to/);
    // Put it right again for the tests after this one.
    await c.putManifest({ ...repo, tag: x!.tag }, Buffer.from(JSON.stringify(x!.m)), MediaType.OciManifest);
    await c.close();
  });

  test('kocache build with --cache-repo fetches the layer into the local store, then answers from there', async () => {
    const cache = freshCache();
    const env = { KOCACHE: cache, KOCACHE_TRACE: '1' };
    const args = ['build', 'app:/usr/local/bin/app', '--import-path', 'example.com/shared', '--cache-from', `${reg.host}/cli/cache`];
    const first = await runCli(args, env, { cwd: src });
    assert.equal(first.code, 0, first.stderr);
    const out = JSON.parse(first.stdout) as { cached: boolean; remote?: boolean; digest: string; size: number };
    assert.equal(out.remote, true);
    assert.equal(traceOf(first.stderr)['gzip.in'] ?? 0, 0);
    assert.equal(traceOf(first.stderr)['regcache.fetched'], out.size);
    const again = await runCli(args, env, { cwd: src });
    const second = JSON.parse(again.stdout) as { cached: boolean; remote?: boolean };
    assert.deepEqual([second.cached, second.remote], [true, false], 'a local hit now');
    assert.equal(traceOf(again.stderr)['regcache.hit'] ?? 0, 0);
  });

  test('kocache build through records naming a wrong diffid: one warning, the layer built as with no cache, then a local hit of the right diffid', async () => {
    const c = new RegistryClient();
    const repo = { registry: reg.host, repository: 'cli/diffid-cache' };
    await publish(`${reg.host}/cli/diffid-seed:v1`, ['--cache-repo', `${reg.host}/cli/diffid-cache`]);
    // The blobs stay right; only the diffid each record names is another layer's.
    for (const tag of (await c.listTags(repo)).filter((t) => t.startsWith('kc1-'))) {
      const m = JSON.parse((await c.getManifest({ ...repo, tag })).bytes.toString()) as { annotations: Record<string, string> };
      m.annotations[Annotation.diffid] = `sha256:${'0'.repeat(64)}`;
      await c.putManifest({ ...repo, tag }, Buffer.from(JSON.stringify(m)), MediaType.OciManifest);
    }
    await c.close();
    const args = ['build', 'app:/usr/local/bin/app', '--import-path', 'example.com/shared'];
    const cold = await runCli(args, { KOCACHE: freshCache() }, { cwd: src });
    assert.equal(cold.code, 0, cold.stderr);
    const want = JSON.parse(cold.stdout) as { digest: string; diffid: string };
    const env = { KOCACHE: freshCache(), KOCACHE_TRACE: '1' };
    const first = await runCli([...args, '--cache-from', `${reg.host}/cli/diffid-cache`], env, { cwd: src });
    assert.equal(first.code, 0, first.stderr);
    assert.equal(warnings(first).length, 1, first.stderr);
    assert.match(warnings(first)[0]!, /not used: its layer sha256:[a-f0-9]{64} unpacks to .* not the diffid sha256:0{64} it names; building instead/);
    const out = JSON.parse(first.stdout) as { digest: string; diffid: string; remote?: boolean };
    assert.deepEqual([out.digest, out.diffid, out.remote ?? false], [want.digest, want.diffid, false]);
    assert.ok((traceOf(first.stderr)['gzip.in'] ?? 0) > 0, 'built');
    const again = await runCli([...args, '--cache-from', `${reg.host}/cli/diffid-cache`], env, { cwd: src });
    const second = JSON.parse(again.stdout) as { cached: boolean; diffid: string };
    assert.deepEqual([second.cached, second.diffid], [true, want.diffid], 'a local hit of the layer built');
    assert.deepEqual(warnings(again), []);
  });

  test('warm SRC with --cache-repo prefetches the record: no tar, no gzip, no layer fetched; a later publish asks the registry for no record', async () => {
    const cache = freshCache();
    const env = { KOCACHE: cache, KOCACHE_TRACE: '1' };
    const w = await runCli(['warm', 'app:/usr/local/bin/app', '--import-path', 'example.com/shared', '--cache-repo', `${reg.host}/cli/cache`], env, { cwd: src });
    assert.equal(w.code, 0, w.stderr);
    assert.match(w.stdout, /recorded in the registry cache/);
    const t = traceOf(w.stderr);
    assert.equal(t['gzip.in'] ?? 0, 0);
    assert.equal(t['regcache.fetched'] ?? 0, 0);
    const gets = () => reg.requests('GET', /^\/v2\/cli\/cache\/manifests\/kc1-/);
    const before = gets();
    const p = await publish(`${reg.host}/cli/warmed:v1`, ['--cache-repo', `${reg.host}/cli/cache`], cache);
    assert.equal(p.digest, coldDigest);
    assert.equal(gets() - before, 1, 'only the layer warm did not name is looked up');
  });

  test('usage: a tagged cache repository, --cache-check without a cache, gc --cache-repo without --max-age', async () => {
    for (const args of [
      ['build', 'app', '--import-path', 'x', '--cache-repo', `${reg.host}/c:v1`],
      ['build', 'app', '--import-path', 'x', '--cache-check'],
      ['gc', '--cache-repo', `${reg.host}/cli/cache`],
    ]) {
      const r = await runCli(args, { KOCACHE: freshCache() }, { cwd: src });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
  });
});

describe('push an archive through a registry cache', () => {
  test('runner B pushes the same gzipped archive: nothing inflated or deflated, no layer uploaded, same digest', async () => {
    const made = makeDockerArchive(join(work, 'archive'), standardLayers(), { gzip: true });
    const push = async (repo: string, extra: string[]) => {
      const r = await runCli(['push', made.path, `${reg.host}/${repo}:v1`, '--json', ...extra], { KOCACHE: freshCache(), KOCACHE_TRACE: '1' });
      assert.equal(r.code, 0, r.stderr);
      return { ...r, digest: (JSON.parse(r.stdout) as { digest: string }).digest, trace: traceOf(r.stderr) };
    };
    const a = await push('arc/a', ['--cache-repo', `${reg.host}/arc/cache`]);
    assert.ok((a.trace['inflate.archive'] ?? 0) > 0);
    assert.equal(a.trace['regcache.put'], 1, 'one record for the archive');
    const b = await push('arc/b', ['--cache-repo', `${reg.host}/arc/cache`]);
    assert.deepEqual(warnings(b), []);
    assert.equal(b.digest, a.digest);
    for (const counter of ['inflate.archive', 'inflate.layer', 'gzip.in', 'tar.out']) assert.equal(b.trace[counter] ?? 0, 0, counter);
    assert.equal(b.trace['regcache.hit'], 1);
    assert.equal(uploads(reg, 'arc/b'), 0, 'every blob mounted, none uploaded');
    assert.equal(reg.requests('GET', /^\/v2\/arc\/cache\/blobs\//), 0, 'nothing downloaded from the cache repository');
    await skopeo('copy', '--quiet', '--src-tls-verify=false', `docker://${reg.host}/arc/b:v1`, `dir:${join(work, 'arc-b')}`);
    // On a second registry, one transfer at a time: every blob copied (a copy used to wait for a
    // slot its own lookup held, and the push ended with nothing pushed and exit 0).
    const other = await startRegistry();
    try {
      const r = await runCli(['push', made.path, `${other.host}/arc/d:v1`, '--json', '-j', '1', '--cache-from', `${reg.host}/arc/cache`], { KOCACHE: freshCache(), KOCACHE_TRACE: '1' });
      assert.equal(r.code, 0, r.stderr);
      assert.equal((JSON.parse(r.stdout) as { digest: string }).digest, a.digest);
      assert.ok((traceOf(r.stderr)['regcache.copied'] ?? 0) > 0, 'copied from the cache repository');
      for (const counter of ['inflate.archive', 'gzip.in']) assert.equal(traceOf(r.stderr)[counter] ?? 0, 0, counter);
      await skopeo('copy', '--quiet', '--src-tls-verify=false', `docker://${other.host}/arc/d:v1`, `dir:${join(work, 'arc-d')}`);
    } finally {
      await other.stop();
    }
    // --cache-check imports it anyway and agrees.
    const checked = await push('arc/c', ['--cache-from', `${reg.host}/arc/cache`, '--cache-check']);
    assert.equal(checked.digest, a.digest);
    assert.ok((checked.trace['inflate.archive'] ?? 0) > 0);
  });
});

describe('gc --cache-repo', () => {
  test('--max-age: --dry-run lists, then old records are deleted by digest; the images stay pullable', async () => {
    const dry = await runCli(['gc', '--cache-repo', `${reg.host}/cli/cache`, '--max-age', '0s', '--dry-run', '--json'], {});
    assert.equal(dry.code, 0, dry.stderr);
    const report = JSON.parse(dry.stdout) as { records: number; expired: { tag: string }[]; deleted: number };
    assert.equal(report.records, 2);
    assert.equal(report.expired.length, 2);
    assert.equal(reg.requests('DELETE', /^\/v2\/cli\/cache\/manifests\//), 0);
    const keep = await runCli(['gc', '--cache-repo', `${reg.host}/cli/cache`, '--max-age', '30d'], {});
    assert.match(keep.stdout, /deleted 0 of 2 records older than 30d/);
    const r = await runCli(['gc', '--cache-repo', `${reg.host}/cli/cache`, '--max-age', '0s'], {});
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /deleted 2 of 2 records/);
    assert.equal(reg.requests('DELETE', /^\/v2\/cli\/cache\/manifests\/sha256:/), 2);
    const c = new RegistryClient();
    assert.deepEqual((await c.listTags({ registry: reg.host, repository: 'cli/cache' })).filter((t) => t.startsWith('kc1-')), []);
    await c.close();
    for (const repo of ['app-a', 'app-b', 'pr']) {
      await skopeo('copy', '--quiet', '--src-tls-verify=false', `docker://${reg.host}/cli/${repo}:v1`, `dir:${join(work, `after-gc-${repo}`)}`);
    }
    // With the records gone, a fresh runner builds again (a miss, no warning).
    const again = await publish(`${reg.host}/cli/after-gc:v1`, ['--cache-from', `${reg.host}/cli/cache`]);
    assert.equal(again.digest, coldDigest);
    assert.deepEqual(warnings(again), []);
    assert.ok((again.trace['gzip.in'] ?? 0) > 0);
  });

  test('a registry failing while the records are read: gc fails with one line and deletes nothing', async () => {
    await publish(`${reg.host}/cli/gc-faulty-seed:v1`, ['--cache-repo', `${reg.host}/cli/gc-faulty`]);
    const proxy = await startFaultProxy(reg.port, [{ method: 'GET', path: /^\/v2\/cli\/gc-faulty\/manifests\/kc1-/, times: 1000, status: 500 }]);
    try {
      const r = await runCli(['gc', '--cache-repo', `${proxy.host}/cli/gc-faulty`, '--max-age', '0s', '--json'], {});
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr.trim().split('\n').at(-1)!, /^kocache: .*answered 500/);
      assert.equal(proxy.forwarded.filter((f) => f.startsWith('DELETE')).length, 0);
    } finally {
      await proxy.stop();
    }
    const c = new RegistryClient();
    assert.equal((await c.listTags({ registry: reg.host, repository: 'cli/gc-faulty' })).filter((t) => t.startsWith('kc1-')).length, 2, 'the records are all there');
    await c.close();
  });

  test('a registry with deletes disabled: one line saying so', async () => {
    const locked = await startRegistry({ deletes: false });
    try {
      const seeded = await publish(`${locked.host}/app:v1`, ['--cache-repo', `${locked.host}/cache`]);
      assert.equal(seeded.code, 0);
      const r = await runCli(['gc', '--cache-repo', `${locked.host}/cache`, '--max-age', '0s'], {});
      assert.equal(r.code, 1);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, /does not allow deletes .*storage\.delete\.enabled.* 2 of 2 records/);
    } finally {
      await locked.stop();
    }
  });
});

