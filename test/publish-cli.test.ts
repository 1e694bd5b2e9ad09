import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type PublishOut, isOneLineError, runCli, tempDir } from './helpers/cli.js';
import { helloOut, skopeo } from './helpers/image-fixtures.js';
import { type RunningRegistry, startRegistry } from './helpers/registry.js';

let work: string;
let env: Record<string, string>;
let reg: RunningRegistry;

before(async () => {
  work = tempDir('kocache-publish-cli-');
  env = { KOCACHE: join(work, 'cache') };
  helloOut(work);
  reg = await startRegistry();
});
after(async () => {
  await reg?.stop();
});

/** The documented shape of `kocache publish --json` (docs/cli-json.md), in order. */
const PUBLISH_KEYS = ['reference', 'digest', 'tags', 'platforms', 'output', 'layers', 'uploaded', 'mounted', 'present', 'written', 'bytesUploaded', 'imageId'];

function checkShape(v: PublishOut): void {
  assert.deepEqual(Object.keys(v), PUBLISH_KEYS);
  assert.deepEqual(Object.keys(v.layers), ['built', 'cached', 'reused']);
  for (const p of v.platforms) assert.deepEqual(Object.keys(p), ['platform', 'digest']);
  for (const k of ['uploaded', 'mounted', 'present', 'written', 'bytesUploaded'] as const) assert.equal(typeof v[k], 'number');
}

async function publish(args: string[], extraEnv: Record<string, string> = {}, cwd = work): Promise<PublishOut> {
  const r = await runCli(['publish', '--json', ...args], { ...env, ...extraEnv }, { cwd });
  assert.equal(r.code, 0, `publish ${args.join(' ')}: ${r.stderr}${r.stdout}`);
  const v = JSON.parse(r.stdout) as PublishOut;
  checkShape(v);
  return v;
}

async function remoteDigest(ref: string): Promise<string> {
  return (JSON.parse(await skopeo('inspect', '--tls-verify=false', `docker://${ref}`)) as { Digest: string }).Digest;
}

async function rawManifest(ref: string): Promise<{ annotations?: Record<string, string>; manifests?: { digest: string }[] }> {
  return JSON.parse(await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${ref}`));
}

describe('publish: tags, result files, defaults', () => {
  test('several tags in one publish all resolve to one digest; the files hold what was pushed', async () => {
    const repo = `${reg.host}/tags/app`;
    const refs = join(work, 'refs.txt');
    const dfile = join(work, 'digest.txt');
    const uploadsBefore = reg.uploadsStarted('tags/app');
    const r = await publish(['./out:/app', '--base', 'scratch', '--repo', `${repo}:v1,latest`, '--tag', 'edge', '--image-refs', refs, '--digest-file', dfile]);
    assert.deepEqual(r.tags, ['v1', 'latest', 'edge']);
    assert.equal(r.reference, `${repo}@${r.digest}`);
    assert.equal(r.uploaded, 2, 'layer and config uploaded once, not once per tag');
    assert.equal(reg.uploadsStarted('tags/app') - uploadsBefore, 2);
    assert.ok(r.bytesUploaded > 0);
    for (const tag of ['v1', 'latest', 'edge']) assert.equal(await remoteDigest(`${repo}:${tag}`), r.digest, tag);
    assert.equal(readFileSync(refs, 'utf8'), `${repo}@${r.digest}\n`);
    assert.equal(readFileSync(dfile, 'utf8'), r.digest);
    assert.equal(await remoteDigest(readFileSync(refs, 'utf8').trim()), r.digest, 'the image-refs line pulls');

    // --tag without a tag in --repo replaces latest, as ko's --tags does.
    const only = await publish(['./out:/app', '--base', 'scratch', '--repo', `${reg.host}/tags/only`, '--tag', 'a', '--tag', 'b']);
    assert.deepEqual(only.tags, ['a', 'b']);
    await assert.rejects(remoteDigest(`${reg.host}/tags/only:latest`));
  });

  test('the repository comes from KOCACHE_DOCKER_REPO when --repo is not given', async () => {
    const r = await publish(['./out:/app', '--base', 'scratch'], { KOCACHE_DOCKER_REPO: `${reg.host}/fromenv/app` });
    assert.equal(r.reference, `${reg.host}/fromenv/app@${r.digest}`);
    assert.equal(await remoteDigest(`${reg.host}/fromenv/app:latest`), r.digest);
  });

  test('--platform all takes every platform of the base; a comma list is the same as repeated flags', async () => {
    const base = `${reg.host}/plat/base:v1`;
    const b = await publish(['./out:/base', '--base', 'scratch', '--repo', base, '--platform', 'linux/amd64,linux/arm64,linux/arm/v7']);
    assert.deepEqual(b.platforms.map((p) => p.platform), ['linux/amd64', 'linux/arm64', 'linux/arm/v7']);
    const all = await publish(['./out:/app', '--base', base, '--repo', `${reg.host}/plat/app:all`, '--platform', 'all']);
    assert.deepEqual(all.platforms.map((p) => p.platform), ['linux/amd64', 'linux/arm64', 'linux/arm/v7']);
    assert.equal(all.layers.reused, 3);
    const listed = await publish(['./out:/app', '--base', base, '--repo', `${reg.host}/plat/app:listed`, '--platform', 'linux/amd64', '--platform', 'linux/arm64,linux/arm/v7']);
    assert.equal(listed.digest, all.digest);
    const raw = await rawManifest(`${reg.host}/plat/app:all`);
    assert.deepEqual(raw.manifests!.map((m) => m.digest), all.platforms.map((p) => p.digest));
    const scratch = await runCli(['publish', './out:/app', '--base', 'scratch', '--output', `oci:${join(work, 'x')}`, '--platform', 'all'], env, { cwd: work });
    assert.equal(scratch.code, 2);
    assert.ok(isOneLineError(scratch), scratch.stderr);
  });

  test('--annotation and the standard annotations on every manifest and the index', async () => {
    const ref = `${reg.host}/ann/app:v1`;
    const ci = { SOURCE_DATE_EPOCH: '1700000000', GITHUB_SERVER_URL: 'https://github.com', GITHUB_REPOSITORY: 'you/app', GITHUB_SHA: 'abc123' };
    const r = await publish(['./out:/app', '--base', 'scratch', '--repo', ref, '--platform', 'linux/amd64,linux/arm64', '--annotation', 'com.example.team=core', '--annotation', 'org.opencontainers.image.revision=mine'], ci);
    const want = {
      'com.example.team': 'core',
      'org.opencontainers.image.created': '2023-11-14T22:13:20Z',
      'org.opencontainers.image.revision': 'mine',
      'org.opencontainers.image.source': 'https://github.com/you/app',
    };
    assert.deepEqual((await rawManifest(ref)).annotations, want);
    for (const p of r.platforms) assert.deepEqual((await rawManifest(`${reg.host}/ann/app@${p.digest}`)).annotations, want);
    const bad = await runCli(['publish', './out:/app', '--base', 'scratch', '--repo', ref, '--annotation', 'novalue'], env, { cwd: work });
    assert.equal(bad.code, 2);
  });
});

describe('publish: project file', () => {
  test('.kocache.json supplies base, layers, settings and tags; flags override it', async () => {
    const dir = join(work, 'proj');
    mkdirSync(join(dir, 'bin'), { recursive: true });
    writeFileSync(join(dir, 'bin', 'app'), 'binary');
    writeFileSync(join(dir, '.kocache.json'), JSON.stringify({
      base: 'scratch',
      repo: `${reg.host}/proj/app`,
      tags: ['v3', 'stable'],
      platforms: ['linux/amd64'],
      layers: ['./bin:/usr/local/bin', { src: './bin/app', dest: '/opt/app' }],
      entrypoint: ['/usr/local/bin/app'],
      env: { A: '1', B: '2' },
      labels: { team: 'core' },
      annotations: { 'com.example.x': 'y' },
      workdir: '/srv',
      user: '65532',
    }));
    const r = await publish(['--env', 'B=3', '--label', 'team=edge'], {}, dir);
    assert.deepEqual(r.tags, ['v3', 'stable']);
    const info = JSON.parse(await skopeo('inspect', '--config', '--tls-verify=false', `docker://${reg.host}/proj/app:stable`)) as { config: Record<string, unknown> };
    assert.deepEqual(info.config.Entrypoint, ['/usr/local/bin/app']);
    assert.deepEqual(info.config.Env, ['A=1', 'B=3']);
    assert.deepEqual(info.config.Labels, { team: 'edge' });
    assert.equal(info.config.WorkingDir, '/srv');
    assert.equal(info.config.User, '65532');
    assert.equal(r.layers.built + r.layers.cached, 2);
    assert.equal((await rawManifest(`${reg.host}/proj/app:v3`)).annotations?.['com.example.x'], 'y');
    // Another file named with --config, from another folder: layer paths are relative to the file.
    const moved = await publish(['--config', join(dir, '.kocache.json'), '--repo', `${reg.host}/proj/other:v1`]);
    assert.deepEqual(moved.tags, ['v1', 'v3', 'stable']);
  });

  test('errors in the file name the field, exit 2, one line', async () => {
    const dir = join(work, 'badproj');
    mkdirSync(dir);
    const cases: [unknown, RegExp][] = [
      [{ base: 'scratch', layer: ['./x'] }, /unknown field "layer" \(did you mean "layers"\?\)/],
      [{ base: 'scratch', layers: ['/'], platforms: ['linux/amd64', 'linux/arm65'] }, /platforms\[1\]: invalid platform "linux\/arm65"/],
      [{ base: 'scratch', layers: ['/'], env: { A: 1 } }, /env\.A: want a string value, not 1/],
      [{ base: 'scratch', layers: [{ src: '.', dest: 'app' }] }, /layers\[0\]: DEST "app" must be an absolute path/],
      [{ base: 'scratch', layers: ['/', '.:app'] }, /layers\[1\]: in ".:app", DEST "app" must be an absolute path in the image: .:\/app/],
      [{ base: 'scratch', layers: [] }, /layers: want a non-empty array/],
      [{ base: 42, layers: ['/'] }, /base: want a non-empty string, not 42/],
      [{ base: 'scratch', layers: ['/'], tags: ['ok', '-bad'] }, /tags\[1\]: "-bad" is not a valid tag/],
      [{ base: 'scratch', layers: ['/'], workdir: 'srv' }, /workdir: "srv" must be an absolute path/],
      [['not', 'an', 'object'], /must hold a JSON object/],
    ];
    for (const [doc, want] of cases) {
      writeFileSync(join(dir, '.kocache.json'), JSON.stringify(doc));
      const r = await runCli(['publish', '--output', `oci:${join(dir, 'out')}`], env, { cwd: dir });
      assert.equal(r.code, 2, `${JSON.stringify(doc)}: ${r.stderr}`);
      assert.ok(isOneLineError(r), r.stderr);
      assert.match(r.stderr, /\.kocache\.json: /);
      assert.match(r.stderr, want);
    }
    writeFileSync(join(dir, '.kocache.json'), '{"base": "scratch",');
    const broken = await runCli(['publish'], env, { cwd: dir });
    assert.equal(broken.code, 2);
    assert.match(broken.stderr, /\.kocache\.json: is not valid JSON/);
  });
});

describe('publish --output oci:DIR[:TAG]', () => {
  test('tags name index.json entries; publishing a tag again replaces its entry; skopeo reads each', async () => {
    const dir = join(work, 'layout');
    const first = await publish(['./out:/app', '--base', 'scratch', '--output', `oci:${dir}`]);
    assert.deepEqual(first.tags, ['latest']);
    assert.equal(first.written, 3);
    const v1 = await publish(['./out:/app', '--base', 'scratch', '--env', 'V=1', '--output', `oci:${dir}:v1`]);
    const again = await publish(['./out:/app', '--base', 'scratch', '--env', 'V=2', '--output', `oci:${dir}:v1`]);
    assert.notEqual(again.digest, v1.digest);
    const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations: Record<string, string> }[] };
    assert.deepEqual(index.manifests.map((m) => [m.annotations['org.opencontainers.image.ref.name'], m.digest]), [['latest', first.digest], ['v1', again.digest]]);
    for (const [tag, digest] of [['latest', first.digest], ['v1', again.digest]] as const) {
      const raw = await skopeo('inspect', '--raw', `oci:${dir}:${tag}`);
      assert.equal(`sha256:${(await import('node:crypto')).createHash('sha256').update(raw).digest('hex')}`, digest);
    }
  });
});

describe('progress', () => {
  test('phases, layers, bytes read and uploaded with a rate, redrawn; nothing in CI', async () => {
    const big = join(work, 'big');
    mkdirSync(big);
    writeFileSync(join(big, 'data'), (await import('./helpers/archives.js')).someBytes(24 << 20, 'progress'));
    const args = ['publish', `${big}:/data`, '--base', 'scratch', '--repo', `${reg.host}/progress/app:v1`, '-j', '1'];
    const r = await runCli(args, { ...env, KOCACHE_PROGRESS: 'always' }, { cwd: work });
    assert.equal(r.code, 0, r.stderr);
    const drawn = r.stderr.split(/\r|\n/).map((l) => l.replace(/\x1b\[K/g, '')).filter(Boolean);
    assert.ok(drawn.some((l) => /^building layers [\d.]+ s · read [\d.]+ MiB of 24\.0 MiB · layers 0\/1 \(\S+\/big:\/data [\d.]+ MiB of 24\.0 MiB\)$/.test(l)), drawn.join('\n'));
    assert.ok(drawn.some((l) => /^building layers: 1 built, 0 cached \([\d.]+ s\)$/.test(l)), 'a line for the finished phase');
    assert.ok(drawn.some((l) => /^pushing to .*progress\/app [\d.]+ s · uploaded [\d.]+ (KiB|MiB) of [\d.]+ MiB/.test(l)), drawn.join('\n'));
    assert.match(r.stderr, / at [\d.]+ (KiB|MiB|GiB)\/s/);
    assert.match(drawn.at(-1)!, /^pushed .*progress\/app:v1: layers 1 built, 0 cached; blobs 2 uploaded/);
    // In CI (the default of these tests) only the summary line is said.
    const quiet = await runCli(args, env, { cwd: work });
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.deepEqual(quiet.stderr.trimEnd().split('\n'), [`pushed ${reg.host}/progress/app:v1: layers 0 built, 1 cached; blobs 0 uploaded, 0 mounted, 2 already present`]);
  });

  test('per layer: bytes read of its files, then built and uploaded, only growing; the layers add up to the total', async () => {
    const { someBytes } = await import('./helpers/archives.js');
    const sizes = { one: 6 << 20, two: 10 << 20 };
    for (const [name, size] of Object.entries(sizes)) {
      mkdirSync(join(work, name));
      writeFileSync(join(work, name, 'data'), someBytes(size, name));
    }
    const args = ['publish', `${join(work, 'one')}:/one`, `${join(work, 'two')}:/two`, '--base', 'scratch', '--repo', `${reg.host}/progress/layers:v1`, '-j', '1'];
    const r = await runCli(args, { ...env, KOCACHE_PROGRESS: 'always' }, { cwd: work });
    assert.equal(r.code, 0, r.stderr);
    const drawn = r.stderr.split(/\r|\n/).map((l) => l.replace(/\x1b\[K/g, '')).filter(Boolean);
    const units: Record<string, number> = { B: 1, KiB: 1024, MiB: 1 << 20 };
    const bytes = (n: string, unit: string) => Number(n) * units[unit]!;
    const entry = /^\S+\/(one|two):\/(?:one|two)(?: ([\d.]+) (B|KiB|MiB) of ([\d.]+) (MiB))?( built| cached)?( uploading [\d.]+ \S+ of [\d.]+ \S+| uploaded)?$/;
    const rank = (state: string) => ['', ' built', ' built uploading', ' built uploaded'].indexOf(state);
    const last = new Map<string, { read: number; rank: number }>();
    let summed = 0;
    for (const line of drawn) {
      const list = / · layers \d\/2 \((.*)\)$/.exec(line);
      if (!list) continue;
      let read = 0;
      let unitSlack = 0;
      for (const e of list[1]!.split(', ')) {
        const m = entry.exec(e);
        assert.ok(m, `a layer's part: ${e}`);
        const [, name, n, unit, of, ofUnit, built, upload] = m;
        if (n !== undefined) {
          assert.equal(bytes(of!, ofUnit!), sizes[name as 'one' | 'two'], e);
          read += bytes(n, unit!);
          unitSlack += 0.05 * units[unit!]!;
        }
        const now = { read: n === undefined ? 0 : bytes(n, unit!), rank: rank(`${built ?? ''}${upload?.startsWith(' uploading') ? ' uploading' : upload ?? ''}`) };
        const before = last.get(name!);
        // A figure shown with one decimal only grows, and a state only moves on.
        assert.ok(!before || (now.read >= before.read && now.rank >= before.rank), `${name}: ${JSON.stringify(before)} then ${e}`);
        last.set(name!, now);
      }
      const total = / · read ([\d.]+) (B|KiB|MiB) of ([\d.]+) MiB · /.exec(line);
      if (total && line.startsWith('building layers')) {
        // The layers' figures add up to the total's, within the rounding of what is shown.
        assert.ok(Math.abs(read - bytes(total[1]!, total[2]!)) <= unitSlack + 0.05 * units[total[2]!]!, line);
        assert.equal(bytes(total[3]!, 'MiB'), sizes.one + sizes.two, line);
        summed++;
      }
    }
    assert.ok(summed > 0, drawn.join('\n'));
    assert.deepEqual([...last.keys()].sort(), ['one', 'two'], drawn.join('\n'));
    for (const [name, l] of last) assert.equal(l.rank, rank(' built uploaded'), `${name} ends uploaded:\n${drawn.join('\n')}`);
  });

  test('an upload retried after the connection drops counts its blob once: the bytes to upload stay the image\'s', async () => {
    const { someBytes } = await import('./helpers/archives.js');
    const { startFaultProxy } = await import('./helpers/fault-proxy.js');
    const dir = join(work, 'retried');
    mkdirSync(dir);
    writeFileSync(join(dir, 'data'), someBytes(8 << 20, 'retried'));
    // Built first, so publish pushes it from the cache (a layer built by publish streams as it is written).
    const built = await runCli(['build', `${dir}:/data`, '--import-path', 'example.com/retried'], env, { cwd: work });
    assert.equal(built.code, 0, built.stderr);
    const { digest, size } = JSON.parse(built.stdout) as { digest: string; size: number };
    const layer = digest.slice('sha256:'.length);
    // The layer's upload is cut off 1 MiB in; the retry sends the blob again from its start.
    const proxy = await startFaultProxy(reg.port, [{ method: 'PUT', path: new RegExp(`digest=sha256%3A${layer}`), times: 1, resetAfterBytes: 1 << 20 }]);
    try {
      const args = ['publish', `${dir}:/data`, '--base', 'scratch', '--repo', `${proxy.host}/progress/retried:v1`, '-j', '1'];
      const r = await runCli(args, { ...env, KOCACHE_PROGRESS: 'always' }, { cwd: work });
      assert.equal(r.code, 0, r.stderr);
      assert.ok(proxy.injected.length > 0, 'an upload was cut off');
      const drawn = r.stderr.split(/\r|\n/).map((l) => l.replace(/\x1b\[K/g, '')).filter(Boolean);
      const units: Record<string, number> = { B: 1, KiB: 1024, MiB: 1 << 20 };
      const shown = drawn.flatMap((l) => [...l.matchAll(/uploaded ([\d.]+) (B|KiB|MiB) of ([\d.]+) (B|KiB|MiB)/g)])
        .map((m) => ({ sent: Number(m[1]) * units[m[2]!]!, of: Number(m[3]) * units[m[4]!]! }));
      assert.ok(shown.length > 0, drawn.join('\n'));
      for (const { sent, of } of shown) {
        // Within the rounding of one decimal: the layer and a config of a few hundred bytes, never sent past them.
        assert.ok(of <= size * 1.01 + 4096 && sent <= of * 1.01, `${sent} of ${of}, a ${size}-byte layer:\n${drawn.join('\n')}`);
      }
    } finally {
      await proxy.stop();
    }
  });
});
