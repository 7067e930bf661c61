// Engine API client over the daemon's unix socket, as the docker CLI talks to dockerd.
import http from 'node:http';
import { VxError } from '../core/errors.js';
import { API_VERSION } from '../core/version.js';

export const DEFAULT_HOST = 'unix:///run/vxswarm/vxswarm.sock';

export class ApiClient {
  readonly socketPath: string;
  constructor(host: string) {
    if (!host.startsWith('unix://')) throw new VxError(`unsupported host "${host}": use unix:///path/to/socket`, 400);
    this.socketPath = host.slice('unix://'.length);
  }

  request<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    query?: Record<string, string | number | boolean | undefined>,
  ): Promise<{ status: number; data: T }> {
    const qs = query
      ? Object.entries(query)
          .filter(([, v]) => v !== undefined)
          .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
          .join('&')
      : '';
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          socketPath: this.socketPath,
          method,
          path: `/v${API_VERSION}${path}${qs ? `?${qs}` : ''}`,
          headers: {
            Host: 'vxswarm',
            'User-Agent': 'vxswarm-cli',
            ...(payload ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let data: unknown = undefined;
            try {
              data = text ? JSON.parse(text) : undefined;
            } catch {
              data = text;
            }
            const status = res.statusCode ?? 0;
            if (status >= 400) reject(new VxError(`Error response from daemon: ${(data as { message?: string })?.message ?? text}`, status));
            else resolve({ status, data: data as T });
          });
        },
      );
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
      req.end(payload);
    });
  }

  async get<T>(path: string, query?: Record<string, string | number | boolean | undefined>): Promise<T> {
    return (await this.request<T>('GET', path, undefined, query)).data;
  }
  async post<T>(path: string, body?: unknown, query?: Record<string, string | number | boolean | undefined>): Promise<T> {
    return (await this.request<T>('POST', path, body, query)).data;
  }
  async del(path: string, query?: Record<string, string | number | boolean | undefined>): Promise<void> {
    await this.request('DELETE', path, undefined, query);
  }
}
