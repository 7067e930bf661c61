// Engine API plumbing: a router over node:http on a unix socket, Docker's version prefix,
// bounded JSON bodies, and errors as {"message"} with Docker's status codes.
import fs from 'node:fs';
import http from 'node:http';
import type { Duplex } from 'node:stream';
import path from 'node:path';
import { readBody } from '../core/body.js';
import { VxError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { API_VERSION, MIN_API_VERSION, VERSION } from '../core/version.js';

export const MAX_BODY = 1 << 20;
/** a JSON body (at most MAX_BODY) must arrive within this */
export const BODY_DEADLINE_MS = 10_000;
/** the request line and headers must arrive within this */
export const HEADERS_DEADLINE_MS = 10_000;

export interface Ctx {
  method: string;
  path: string;
  params: string[];
  query: URLSearchParams;
  apiVersion: string;
  body: () => Promise<unknown>;
  req: http.IncomingMessage;
  res: http.ServerResponse;
}

export interface Reply {
  status?: number;
  json?: unknown;
  /** raw text body (e.g. _ping's OK) */
  text?: string;
}

export type Handler = (ctx: Ctx) => Promise<Reply | void> | Reply | void;

interface Route {
  method: string;
  re: RegExp;
  handler: Handler;
  /** for metrics: the pattern as registered */
  label: string;
}

const VERSION_RE = /^\/v(\d+\.\d+)(\/.*)$/;

/**
 * The request target, taken as sent: no `.` or `..` resolution, since a client following a cleaned
 * path would act on another object (`DELETE /services/../networks/x` must not delete a network).
 * A segment that is or decodes to `.` or `..`, an encoded `/` or `\`, or a target that is not an
 * absolute path is refused.
 */
export function parseTarget(raw: string | undefined): { path: string; query: URLSearchParams } {
  const target = raw ?? '/';
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  if (!path.startsWith('/') || path.includes('\\')) throw new VxError(`invalid request path ${JSON.stringify(path)}`, 400);
  for (const seg of path.split('/')) {
    let d: string;
    try {
      d = decodeURIComponent(seg);
    } catch {
      throw new VxError(`invalid request path ${JSON.stringify(path)}: bad percent-encoding`, 400);
    }
    if (d === '.' || d === '..') throw new VxError(`invalid request path ${JSON.stringify(path)}: "." and ".." segments are not allowed`, 400);
    if (d.includes('/') || d.includes('\\')) throw new VxError(`invalid request path ${JSON.stringify(path)}: an encoded "/" or "\\" is not allowed`, 400);
  }
  return { path, query: new URLSearchParams(q < 0 ? '' : target.slice(q + 1)) };
}

function versionLess(a: string, b: string): boolean {
  const [a1, a2] = a.split('.').map(Number) as [number, number];
  const [b1, b2] = b.split('.').map(Number) as [number, number];
  return a1 < b1 || (a1 === b1 && a2 < b2);
}

/** A hijacked connection (exec/attach): the handler owns the socket after the 101. */
export type UpgradeHandler = (ctx: { params: string[]; query: URLSearchParams; req: http.IncomingMessage; socket: Duplex; head: Buffer }) => Promise<void>;

export class Router {
  private readonly routes: Route[] = [];
  private readonly upgrades: { re: RegExp; handler: UpgradeHandler }[] = [];
  /** told of every answered request: its route, status and duration (metrics) */
  observe: ((route: string, status: number, seconds: number) => void) | undefined;

  constructor(private readonly headers: () => Record<string, string>) {}

  on(method: string, pattern: string | RegExp, handler: Handler): void {
    // "/networks/:id" → /^\/networks\/([^/]+)$/; a RegExp is taken as is (image names hold slashes)
    const re = typeof pattern === 'string' ? new RegExp(`^${pattern.replace(/:[a-z]+/g, '([^/]+)')}$`) : pattern;
    this.routes.push({ method, re, handler, label: `${method} ${typeof pattern === 'string' ? pattern : pattern.source}` });
  }

  onUpgrade(pattern: string, handler: UpgradeHandler): void {
    this.upgrades.push({ re: new RegExp(`^${pattern.replace(/:[a-z]+/g, '([^/]+)')}$`), handler });
  }

  async handleUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    try {
      const url = parseTarget(req.url);
      const p = url.path.replace(VERSION_RE, '$2');
      const route = req.method === 'POST' ? this.upgrades.find((u) => u.re.test(p)) : undefined;
      if (!route) throw new VxError('page not found', 404);
      await route.handler({
        params: route.re
          .exec(p)!
          .slice(1)
          .map((x) => decodeURIComponent(x)),
        query: url.query,
        req,
        socket,
        head,
      });
    } catch (e) {
      if (socket.destroyed) return;
      const status = e instanceof VxError ? e.status : 500;
      const body = `${JSON.stringify({ message: errorMessage(e) })}\n`;
      socket.end(
        `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    }
  }

  async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const t0 = performance.now();
    let label = 'unmatched';
    if (this.observe) res.once('finish', () => this.observe?.(label, res.statusCode, (performance.now() - t0) / 1000));
    let apiVersion = API_VERSION;
    for (const [k, v] of Object.entries(this.headers())) res.setHeader(k, v);
    let p = '';
    try {
      const url = parseTarget(req.url);
      p = url.path;
      const m = VERSION_RE.exec(p);
      if (m) {
        apiVersion = m[1]!;
        p = m[2]!;
        if (versionLess(API_VERSION, apiVersion))
          throw new VxError(`client version ${apiVersion} is too new. Maximum supported API version is ${API_VERSION}`, 400);
        if (versionLess(apiVersion, MIN_API_VERSION))
          throw new VxError(
            `client version ${apiVersion} is too old. Minimum supported API version is ${MIN_API_VERSION}, please upgrade your client to a newer version`,
            400,
          );
      } else if (/^\/v\d[^/]*\//.test(p)) {
        throw new VxError(`invalid API version in path ${p}`, 400);
      }
      const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
      const candidates = this.routes.filter((r) => r.re.test(p));
      const route = candidates.find((r) => r.method === method);
      if (!route) throw new VxError(candidates.length ? `method ${req.method} not allowed on ${p}` : 'page not found', candidates.length ? 405 : 404);
      label = route.label;
      let bodyPromise: Promise<unknown> | undefined;
      const ctx: Ctx = {
        method,
        path: p,
        params: route.re
          .exec(p)!
          .slice(1)
          .map((x) => decodeURIComponent(x)),
        query: url.query,
        apiVersion,
        body: () => (bodyPromise ??= readJson(req)),
        req,
        res,
      };
      const reply = (await route.handler(ctx)) ?? { status: 204 };
      if (res.headersSent || res.writableEnded) return;
      send(res, req.method === 'HEAD', reply);
    } catch (e) {
      const status = e instanceof VxError ? e.status : 500;
      if (res.headersSent) {
        res.destroy();
        return;
      }
      // A body too slow to wait for is not read on: the connection ends with the answer. (One too
      // large is read and dropped by node, so the client can finish writing and read the 413.)
      if (status === 408) res.setHeader('Connection', 'close');
      send(res, req.method === 'HEAD', { status, json: { message: errorMessage(e) } });
    }
  }
}

function send(res: http.ServerResponse, head: boolean, r: Reply): void {
  const status = r.status ?? 200;
  if (r.text !== undefined) {
    res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(r.text) });
    res.end(head ? undefined : r.text);
  } else if (r.json !== undefined) {
    const body = `${JSON.stringify(r.json)}\n`;
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(head ? undefined : body);
  } else {
    res.writeHead(status);
    res.end();
  }
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY) throw new VxError(`request body too large (${declared} bytes, limit ${MAX_BODY})`, 413);
  const text = (await readBody(req as AsyncIterable<Buffer>, MAX_BODY, BODY_DEADLINE_MS)).toString('utf8').trim();
  if (!text) return undefined;
  // As Docker: a body is JSON only when it says so (no Content-Type is fine without a body).
  const ct = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (ct !== 'application/json') throw new VxError(`unsupported Content-Type header (${req.headers['content-type'] ?? ''}): must be 'application/json'`, 400);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new VxError(`malformed JSON body: ${errorMessage(e)}`, 400);
  }
}

export function serverHeader(): string {
  return `vxswarm/${VERSION} (linux)`;
}

/** Listens on a unix socket, mode 0660, replacing a stale socket file. */
export async function listenUnix(server: http.Server, socketPath: string): Promise<void> {
  fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o755 });
  fs.rmSync(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  fs.chmodSync(socketPath, 0o660);
}

export function createHttpServer(router: Router, log: Logger): http.Server {
  // Streamed uploads (image load) are not bounded by requestTimeout's default; JSON bodies have
  // their own deadline (readJson). Slow headers are cut at HEADERS_DEADLINE_MS, checked every second.
  const server = http.createServer({ headersTimeout: HEADERS_DEADLINE_MS, connectionsCheckingInterval: 1000 }, (req, res) => {
    void router.handle(req, res).catch((e: unknown) => log.error('api handler crashed', { error: errorMessage(e) }));
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    void router.handleUpgrade(req, socket, head).catch((e: unknown) => log.error('api upgrade crashed', { error: errorMessage(e) }));
  });
  server.keepAliveTimeout = 30_000;
  return server;
}
