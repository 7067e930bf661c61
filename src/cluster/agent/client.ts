// Client of the manager API (HTTP/2 + JSON over mutual TLS).
import http2 from 'node:http2';
import { InvalidArgumentError, VxError, errorMessage } from '../../core/errors.js';
import { pemToDer } from '../manager/ca.js';
import { caDigest, parseToken } from '../manager/tokens.js';
import { MANAGER_SERVERNAME, splitHostPort } from '../wire.js';

export interface ClientTls {
  caPem: string;
  certPem?: string;
  keyPem?: string;
}

const CONNECT_TIMEOUT_MS = 5000;

function connect(addr: string, tls: ClientTls | 'insecure'): Promise<http2.ClientHttp2Session> {
  const { host, port } = splitHostPort(addr);
  const opts: http2.SecureClientSessionOptions =
    tls === 'insecure'
      ? { rejectUnauthorized: false }
      : { ca: tls.caPem, cert: tls.certPem, key: tls.keyPem, servername: MANAGER_SERVERNAME, minVersion: 'TLSv1.2' };
  return new Promise((resolve, reject) => {
    const s = http2.connect(`https://${host}:${port}`, opts);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new VxError(`timeout connecting to manager at ${host}:${port}`, 503));
    }, CONNECT_TIMEOUT_MS);
    s.once('connect', () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(new VxError(`cannot reach manager at ${host}:${port}: ${errorMessage(e)}`, 503));
    });
  });
}

function call(session: http2.ClientHttp2Session, method: string, path: string, body?: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': method, ':path': path, 'content-type': 'application/json' });
    const chunks: Buffer[] = [];
    let status = 0;
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', (e) => reject(new VxError(`manager API ${method} ${path}: ${errorMessage(e)}`, 503)));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let parsed: unknown = {};
      try {
        parsed = text ? JSON.parse(text) : {};
      } catch {
        return reject(new VxError(`manager API ${method} ${path}: malformed reply`, 502));
      }
      if (status >= 200 && status < 300) resolve(parsed);
      else reject(new VxError((parsed as { message?: string }).message ?? `manager API error ${status}`, status || 502));
    });
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/**
 * Fetches the manager's root CA over an unverified connection and accepts it only if its
 * digest matches the token's: the token pins the CA before any secret is sent.
 */
export async function fetchPinnedCa(addr: string, token: string): Promise<string> {
  const want = parseToken(token).caDigest;
  const s = await connect(addr, 'insecure');
  try {
    const r = (await call(s, 'GET', '/v1/ca')) as { ca?: string };
    if (typeof r.ca !== 'string') throw new VxError('manager sent no CA certificate', 502);
    if (caDigest(pemToDer(r.ca)) !== want)
      throw new InvalidArgumentError(`the manager at ${addr} presented a CA whose digest does not match the join token: refusing to join`);
    return r.ca;
  } finally {
    s.close();
  }
}

/** A verified connection to one manager, reopened on demand. */
export class ManagerClient {
  private session: http2.ClientHttp2Session | undefined;

  constructor(
    readonly addr: string,
    private tls: ClientTls,
  ) {}

  setTls(tls: ClientTls): void {
    this.tls = tls;
    this.session?.close();
    this.session = undefined;
  }

  async open(): Promise<http2.ClientHttp2Session> {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const s = await connect(this.addr, this.tls);
    s.on('close', () => {
      if (this.session === s) this.session = undefined;
    });
    s.on('error', () => undefined);
    s.on('goaway', () => s.close());
    s.unref();
    this.session = s;
    return s;
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    return (await call(await this.open(), method, path, body)) as T;
  }

  close(): void {
    this.session?.close();
    this.session = undefined;
  }
}
