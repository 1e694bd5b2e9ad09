import { type IncomingMessage, createServer, request, type Server } from 'node:http';

/** A fault to inject into the first `times` requests that match. */
export interface Fault {
  method: string;
  path: RegExp;
  times: number;
  /** Let this many matching requests through first (a fault in the middle of an upload). */
  skip?: number;
  /** Answer with this status (and headers) instead of forwarding. */
  status?: number;
  headers?: Record<string, string>;
  /** Drop the connection after reading this many request-body bytes (0: at once), as a crashed proxy would. */
  resetAfterBytes?: number;
  /** Answer 307 with this Location instead (a registry sending blob reads to a storage host). */
  redirectTo?: (path: string) => string;
  /** Forward, but cut the response body off after this many bytes (a download that breaks). */
  cutResponseAfterBytes?: number;
  /** Forward, but rewrite the answer's Location (a registry sending uploads to another host). */
  rewriteLocation?: (location: string) => string;
}

export interface FaultProxy {
  /** `127.0.0.1:PORT`, to use as the registry name. */
  host: string;
  /** Faults injected so far, as `METHOD path -> what`. */
  injected: string[];
  /** Requests forwarded to the registry, as `METHOD path`. */
  forwarded: string[];
  /** Every request that reached the proxy, and whether it carried an Authorization header. */
  seen: { method: string; path: string; authorization: boolean }[];
  stop(): Promise<void>;
}

/**
 * A fault-injecting HTTP proxy in front of a real registry: matching requests get an error status
 * or a dropped connection, everything else goes through unchanged (Host included, so the
 * registry's Location headers point back at the proxy).
 */
export interface ProxyOptions {
  /** Rewrite absolute Location headers to bare paths (some registries send relative ones). */
  relativeLocations?: boolean;
  /**
   * Headers added to every forwarded request, replacing the client's (a storage host whose URLs
   * carry their own authority: it reaches the registry with credentials the client never sent it).
   */
  upstreamHeaders?: Record<string, string>;
}

export async function startFaultProxy(upstreamPort: number, faults: Fault[], opts: ProxyOptions = {}): Promise<FaultProxy> {
  const left = faults.map((f) => ({ ...f }));
  const injected: string[] = [];
  const forwarded: string[] = [];
  const seen: { method: string; path: string; authorization: boolean }[] = [];
  const server: Server = createServer((req: IncomingMessage, res) => {
    const path = req.url ?? '/';
    seen.push({ method: req.method ?? '', path, authorization: req.headers.authorization !== undefined });
    const fault = left.find((f) => f.times > 0 && f.method === req.method && f.path.test(path) && !(f.skip && f.skip-- > 0));
    if (fault) fault.times--;
    if (fault && !fault.rewriteLocation) {
      if (fault.redirectTo) {
        injected.push(`${req.method} ${path} -> 307`);
        req.resume();
        res.writeHead(307, { location: fault.redirectTo(path), 'content-length': '0' });
        res.end();
        return;
      }
      if (fault.cutResponseAfterBytes !== undefined) {
        injected.push(`${req.method} ${path} -> cut`);
        const up = request({ host: '127.0.0.1', port: upstreamPort, method: req.method, path, headers: req.headers }, (upRes) => {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          let sent = 0;
          upRes.on('data', (b: Buffer) => {
            const room = (fault.cutResponseAfterBytes ?? 0) - sent;
            if (room <= 0) return;
            res.write(b.subarray(0, room));
            sent += Math.min(room, b.length);
            if (sent >= (fault.cutResponseAfterBytes ?? 0)) {
              upRes.destroy();
              // Let the bytes leave before the socket goes.
              setTimeout(() => res.socket?.destroy(), 20);
            }
          });
        });
        up.on('error', () => res.destroy());
        req.pipe(up);
        return;
      }
      if (fault.resetAfterBytes !== undefined) {
        injected.push(`${req.method} ${path} -> reset`);
        let seen = 0;
        const drop = () => { req.socket.destroy(); };
        if (fault.resetAfterBytes === 0) return drop();
        req.on('data', (b: Buffer) => {
          seen += b.length;
          if (seen >= (fault.resetAfterBytes ?? 0)) drop();
        });
        req.on('end', drop);
        return;
      }
      injected.push(`${req.method} ${path} -> ${fault.status ?? 500}`);
      req.resume();
      req.on('end', () => {
        const body = JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'injected fault' }] });
        res.writeHead(fault.status ?? 500, { 'content-type': 'application/json', ...fault.headers });
        res.end(body);
      });
      return;
    }
    forwarded.push(`${req.method} ${path}`);
    const rewrite = fault?.rewriteLocation;
    const up = request({ host: '127.0.0.1', port: upstreamPort, method: req.method, path, headers: { ...req.headers, ...opts.upstreamHeaders } }, (upRes) => {
      const headers = { ...upRes.headers };
      if (rewrite && typeof headers.location === 'string') {
        headers.location = rewrite(headers.location);
        injected.push(`${req.method} ${path} -> Location ${headers.location}`);
      }
      if (opts.relativeLocations && typeof headers.location === 'string') {
        const u = new URL(headers.location, 'http://x');
        headers.location = `${u.pathname}${u.search}`;
      }
      res.writeHead(upRes.statusCode ?? 502, headers);
      upRes.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    host: `127.0.0.1:${port}`,
    injected,
    forwarded,
    seen,
    stop: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}
