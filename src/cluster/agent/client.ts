// Client of the manager API (HTTP/2 + JSON over mutual TLS).
import http2 from 'node:http2';
import net from 'node:net';
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
/** A follower names the leader in this header when it refuses a leader-only call. */
export const LEADER_HEADER = 'x-vxswarm-leader';

/** The manager asked is not the leader; `leader` is where to ask (empty while none is elected). */
export class NotLeaderReply extends VxError {
  constructor(
    message: string,
    readonly leader: string,
  ) {
    super(message, 503);
  }
}

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

function call(session: http2.ClientHttp2Session, method: string, path: string, body?: unknown, timeoutMs?: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': method, ':path': path, 'content-type': 'application/json' });
    if (timeoutMs) {
      req.setTimeout(timeoutMs, () => {
        req.close(http2.constants.NGHTTP2_CANCEL);
        reject(new VxError(`manager API ${method} ${path}: no answer in ${timeoutMs} ms`, 504));
      });
    }
    const chunks: Buffer[] = [];
    let status = 0;
    let leader: string | undefined;
    req.on('response', (h) => {
      status = Number(h[':status']);
      const l = h[LEADER_HEADER];
      if (typeof l === 'string') leader = l;
    });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', (e) => reject(new VxError(`manager API ${method} ${path}: ${errorMessage(e)}`, 503)));
    // closed without an end or an error (its session went): no answer is coming (after 'end' this does nothing)
    req.on('close', () => reject(new VxError(`manager API ${method} ${path}: the connection closed before the answer`, 503)));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let parsed: unknown = {};
      try {
        parsed = text ? JSON.parse(text) : {};
      } catch {
        return reject(new VxError(`manager API ${method} ${path}: malformed reply`, 502));
      }
      if (status >= 200 && status < 300) resolve(parsed);
      else if (leader !== undefined) reject(new NotLeaderReply((parsed as { message?: string }).message ?? 'not the leader', leader));
      else reject(new VxError((parsed as { message?: string }).message ?? `manager API error ${status}`, status || 502));
    });
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** True if a TCP connection to host:port is refused (nothing listens; the host answered). */
export function portRefuses(addr: string, timeoutMs = 500): Promise<boolean> {
  const { host, port } = splitHostPort(addr);
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: timeoutMs });
    const done = (v: boolean): void => {
      s.destroy();
      resolve(v);
    };
    s.once('connect', () => done(false));
    s.once('timeout', () => done(false));
    s.once('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNREFUSED'));
  });
}

/** One call to a given manager (not the client's current one): another manager's dispatcher. */
export async function callManager(
  addr: string,
  tls: ClientTls,
  method: string,
  path: string,
  body: unknown,
  timeoutMs: number,
): Promise<{ [k: string]: unknown }> {
  const s = await connect(addr, tls);
  try {
    return (await call(s, method, path, body, timeoutMs)) as { [k: string]: unknown };
  } finally {
    s.close();
  }
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

/**
 * A verified connection to the leading manager, reopened on demand. It knows every manager's
 * address: a call that cannot connect tries the next, and a follower's refusal names the leader.
 */
export class ManagerClient {
  private session: http2.ClientHttp2Session | undefined;
  private addrs: string[];
  private current = 0;

  constructor(
    addrs: string | string[],
    private tls: ClientTls,
  ) {
    this.addrs = [...new Set(Array.isArray(addrs) ? addrs : [addrs])];
  }

  get addr(): string {
    return this.addrs[this.current] ?? this.addrs[0]!;
  }

  /** Every manager we know of, the one in use first. */
  get managers(): string[] {
    return [this.addr, ...this.addrs.filter((a) => a !== this.addr)];
  }

  /** The managers' addresses, as the leader lists them; keeps using the current one if still listed. */
  setManagers(addrs: string[]): void {
    if (!addrs.length) return;
    const cur = this.addr;
    this.addrs = [...new Set(addrs)];
    const i = this.addrs.indexOf(cur);
    if (i >= 0) this.current = i;
    else {
      this.current = 0;
      this.dropSession();
    }
  }

  /** Switches to `addr` (the leader a follower named), or to the next manager when none is named. */
  follow(addr: string | undefined): void {
    if (addr === this.addr) return;
    if (addr) {
      if (!this.addrs.includes(addr)) this.addrs.push(addr);
      this.current = this.addrs.indexOf(addr);
    } else this.current = (this.current + 1) % this.addrs.length;
    this.dropSession();
  }

  /** Forgets the connection (it may be one the manager is closing); the next call opens another. */
  reset(): void {
    this.dropSession();
  }

  private dropSession(): void {
    this.session?.close();
    this.session = undefined;
  }

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

  /** Calls the leader: follows a redirect, or moves to the next manager if this one is unreachable. */
  async request<T>(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
    let last: unknown;
    for (let attempt = 0; attempt <= this.addrs.length + 1; attempt++) {
      let s: http2.ClientHttp2Session;
      try {
        s = await this.open();
      } catch (e) {
        last = e;
        this.follow(undefined);
        continue;
      }
      try {
        return (await call(s, method, path, body, timeoutMs)) as T;
      } catch (e) {
        if (!(e instanceof NotLeaderReply) || !e.leader || e.leader === this.addr) throw e;
        last = e;
        this.follow(e.leader);
      }
    }
    throw last instanceof Error ? last : new VxError('no manager answered', 503);
  }

  close(): void {
    this.session?.close();
    this.session = undefined;
  }
}
