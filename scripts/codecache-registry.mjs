// A stand-in for a registry that takes one push, on 127.0.0.1, in memory: what the build's code-cache
// run (bundle-cli.mjs) publishes to, so that V8's code cache of the bundle also holds the registry
// path (undici, the upload and the manifest), not only the layer build. It is no registry: it checks
// nothing a push does not need to succeed, and tests never use it (they run a real one).
import { createHash, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';

const sha256 = (data) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

export async function startCodeCacheRegistry() {
  const blobs = new Map(); // digest -> Buffer
  const uploads = new Map(); // id -> Buffer[]
  const manifests = new Map(); // name:reference -> { body, type, digest }
  const server = createServer((req, res) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      const url = new URL(req.url ?? '/', 'http://stand-in');
      const send = (status, headers = {}, data) => {
        res.writeHead(status, { 'content-length': String(data ? data.length : 0), ...headers });
        res.end(req.method === 'HEAD' ? undefined : data);
      };
      let m;
      if (url.pathname === '/v2/' || url.pathname === '/v2') return send(200);
      if ((m = /^\/v2\/(.+)\/blobs\/uploads\/([^/]*)$/.exec(url.pathname))) {
        const [, name, id] = m;
        const mount = url.searchParams.get('mount');
        if (req.method === 'POST' && mount && blobs.has(mount)) return send(201, { location: `/v2/${name}/blobs/${mount}`, 'docker-content-digest': mount });
        if (req.method === 'POST') {
          const fresh = randomUUID();
          uploads.set(fresh, body.length ? [body] : []);
          const digest = url.searchParams.get('digest');
          if (digest) return finish(name, fresh, digest);
          return send(202, { location: `/v2/${name}/blobs/uploads/${fresh}`, range: '0-0', 'docker-upload-uuid': fresh });
        }
        const held = uploads.get(id);
        if (!held) return send(404);
        if (body.length) held.push(body);
        if (req.method === 'PATCH') {
          const n = held.reduce((s, b) => s + b.length, 0);
          return send(202, { location: `/v2/${name}/blobs/uploads/${id}`, range: `0-${Math.max(0, n - 1)}`, 'docker-upload-uuid': id });
        }
        if (req.method === 'PUT') return finish(name, id, url.searchParams.get('digest') ?? '');
        return send(405);
      }
      if ((m = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url.pathname))) {
        const blob = blobs.get(m[2]);
        if (!blob) return send(404);
        return send(200, { 'docker-content-digest': m[2], 'content-type': 'application/octet-stream' }, blob);
      }
      if ((m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(url.pathname))) {
        const key = `${m[1]}:${m[2]}`;
        if (req.method === 'PUT') {
          const manifest = { body, type: req.headers['content-type'] ?? '', digest: sha256(body) };
          manifests.set(key, manifest);
          manifests.set(`${m[1]}:${manifest.digest}`, manifest);
          return send(201, { location: `/v2/${m[1]}/manifests/${manifest.digest}`, 'docker-content-digest': manifest.digest });
        }
        const found = manifests.get(key);
        if (!found) return send(404, { 'content-type': 'application/json' }, Buffer.from('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'));
        return send(200, { 'content-type': found.type, 'docker-content-digest': found.digest }, found.body);
      }
      return send(404);

      function finish(name, id, digest) {
        const data = Buffer.concat(uploads.get(id) ?? []);
        uploads.delete(id);
        if (sha256(data) !== digest) return send(400);
        blobs.set(digest, data);
        return send(201, { location: `/v2/${name}/blobs/${digest}`, 'docker-content-digest': digest });
      }
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return { host: `127.0.0.1:${port}`, stop: () => new Promise((resolve) => server.close(resolve)) };
}
