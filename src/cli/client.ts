// Engine API client over the daemon's unix socket, as the docker CLI talks to dockerd.
import http from 'node:http';
import type { Readable } from 'node:stream';
import { VxError } from '../core/errors.js';
import { API_VERSION } from '../core/version.js';

export const DEFAULT_HOST = 'unix:///run/vxswarm/vxswarm.sock';

type Query = Record<string, string | number | boolean | undefined>;

async function readAll(res: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function daemonError(status: number, text: string): VxError {
  let message = text;
  try {
    message = (JSON.parse(text) as { message?: string }).message ?? text;
  } catch {
    /* not JSON: keep the text */
  }
  return new VxError(`Error response from daemon: ${message}`, status);
}

export class ApiClient {
  readonly socketPath: string;
  constructor(host: string) {
    if (!host.startsWith('unix://')) throw new VxError(`unsupported host "${host}": use unix:///path/to/socket`, 400);
    this.socketPath = host.slice('unix://'.length);
  }

  /** Sends a request (a JSON string or a stream as its body) and gives the response as it starts. */
  private send(
    method: string,
    path: string,
    query: Query | undefined,
    body: string | Readable | undefined,
    contentType: string,
  ): Promise<http.IncomingMessage> {
    const qs = query
      ? Object.entries(query)
          .filter(([, v]) => v !== undefined)
          .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
          .join('&')
      : '';
    const headers: Record<string, string | number> = { Host: 'vxswarm', 'User-Agent': 'vxswarm-cli' };
    if (typeof body === 'string') Object.assign(headers, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
    else if (body) Object.assign(headers, { 'Content-Type': contentType, 'Transfer-Encoding': 'chunked' });
    return new Promise((resolve, reject) => {
      const req = http.request({ socketPath: this.socketPath, method, path: `/v${API_VERSION}${path}${qs ? `?${qs}` : ''}`, headers }, resolve);
      req.on('error', (e: NodeJS.ErrnoException) => {
        reject(
          new VxError(
            e.code === 'ENOENT' || e.code === 'ECONNREFUSED'
              ? `Cannot connect to the vxswarm daemon at unix://${this.socketPath}. Is the daemon running?`
              : e.message,
            503,
          ),
        );
      });
      if (body && typeof body !== 'string') {
        body.on('error', reject);
        body.pipe(req);
      } else req.end(body);
    });
  }

  async request<T = unknown>(method: string, path: string, body?: unknown, query?: Query): Promise<{ status: number; data: T }> {
    const res = await this.send(method, path, query, body === undefined ? undefined : JSON.stringify(body), 'application/json');
    const text = await readAll(res);
    const status = res.statusCode ?? 0;
    if (status >= 400) throw daemonError(status, text);
    let data: unknown = undefined;
    try {
      data = text ? JSON.parse(text) : undefined;
    } catch {
      data = text;
    }
    return { status, data: data as T };
  }

  /** A streamed exchange (uploads, logs): the response once its status says it succeeded. */
  async stream(method: string, path: string, query?: Query, body?: Readable, contentType = 'application/x-tar'): Promise<http.IncomingMessage> {
    const res = await this.send(method, path, query, body, contentType);
    const status = res.statusCode ?? 0;
    if (status >= 400) throw daemonError(status, await readAll(res));
    return res;
  }

  /** The whole body of a streamed exchange, as text. */
  async streamText(method: string, path: string, query?: Query, body?: Readable): Promise<string> {
    return readAll(await this.stream(method, path, query, body));
  }

  async get<T>(path: string, query?: Query): Promise<T> {
    return (await this.request<T>('GET', path, undefined, query)).data;
  }
  async post<T>(path: string, body?: unknown, query?: Query): Promise<T> {
    return (await this.request<T>('POST', path, body, query)).data;
  }
  async del(path: string, query?: Query): Promise<void> {
    await this.request('DELETE', path, undefined, query);
  }
}
