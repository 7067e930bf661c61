// The part of etcd's v3 API the manager's store uses: ranges, transactions with compares, one
// watch, and leases. `EtcdKv` speaks it through etcd's JSON gateway over the member's client TLS
// (keep-alive connections, base64 keys and values); `MemKv` is the same contract in memory.
import https from 'node:https';
import { VxError, errorMessage } from '../../core/errors.js';

export interface KvEntry {
  key: string;
  value: string;
  mod: number;
  create: number;
  lease?: string;
}

/** `rev` compares the key's MOD or CREATE revision; with `rangeEnd`, every key of [key, rangeEnd). */
export interface Compare {
  key: string;
  rangeEnd?: string;
  target: 'MOD' | 'CREATE';
  result: 'EQUAL' | 'LESS';
  rev: number;
}

export type Op = { put: string; value: string; lease?: string } | { del: string };

export interface WatchEvent {
  type: 'put' | 'delete';
  key: string;
  value: string;
  mod: number;
  create: number;
}

export interface Watch {
  close(): void;
}

export interface WatchHandlers {
  /** events of one revision batch; `rev` is the store's revision they bring the watcher to */
  events(events: WatchEvent[], rev: number): void;
  /** the watch ended (connection lost, `compacted` if history before fromRev is gone) */
  ended(why: string, compacted: boolean): void;
}

export interface Kv {
  /** This member's committed keys (a serializable read: answered without a quorum, maybe behind). */
  range(prefix: string): Promise<{ rev: number; kvs: KvEntry[] }>;
  /** All compares hold → all ops apply at one new revision. `rev` is that revision, or the store's now. */
  txn(compares: Compare[], ops: Op[], timeoutMs?: number): Promise<{ ok: boolean; rev: number }>;
  watch(prefix: string, fromRev: number, h: WatchHandlers): Watch;
  leaseGrant(ttlSeconds: number): Promise<string>;
  /** The lease's remaining TTL in seconds, 0 if it is gone. */
  leaseKeepAlive(id: string): Promise<number>;
  leaseRevoke(id: string): Promise<void>;
  close(): void;
}

/** The first key after every key that starts with `prefix`. */
export function prefixEnd(prefix: string): string {
  const b = Buffer.from(prefix, 'utf8');
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      b[i]!++;
      return b.subarray(0, i + 1).toString('latin1');
    }
  }
  return '\0';
}

/** A failed call whose write may or may not have committed (a timeout after it was sent). */
export class OutcomeUnknownError extends VxError {
  constructor(message: string) {
    super(message, 503);
  }
}

/** A call that never reached etcd (refused, unreachable): nothing it asked for was done. */
export class NotSentError extends VxError {
  constructor(message: string) {
    super(message, 503);
  }
}

/**
 * One call to an etcd member's JSON gateway: the parsed answer, or a VxError (etcd's refusals
 * 400, its failures 503). A call that timed out or broke after it was sent is an
 * OutcomeUnknownError: a write may or may not have committed.
 */
export function gatewayCall<T>(
  url: URL,
  method: string,
  body: unknown,
  timeoutMs: number,
  conn: { agent?: https.Agent; ca?: string; cert?: string; key?: string },
): Promise<T> {
  const data = body === undefined ? undefined : JSON.stringify(body);
  const path = url.pathname;
  return new Promise((resolve, reject) => {
    let sent = false;
    const req = https.request(
      url,
      { method, ...conn, headers: data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {} },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: Record<string, unknown>;
          try {
            parsed = (text ? JSON.parse(text) : {}) as Record<string, unknown>;
          } catch {
            return reject(new VxError(`etcd ${path}: unreadable answer`, 502));
          }
          if ((res.statusCode ?? 500) >= 300) {
            const m = String(parsed.message ?? parsed.error ?? text);
            return reject(new VxError(`etcd ${path}: ${m}`, (res.statusCode ?? 500) >= 500 ? 503 : 400));
          }
          resolve(parsed as T);
        });
        res.on('error', (e) => reject(new OutcomeUnknownError(`etcd ${path}: ${errorMessage(e)}`)));
      },
    );
    const timer = setTimeout(
      () =>
        req.destroy(
          new OutcomeUnknownError(`the cluster store gave no answer within ${timeoutMs} ms (the managers may have lost their quorum): the outcome is unknown`),
        ),
      timeoutMs,
    );
    req.on('finish', () => (sent = true));
    req.on('error', (e) => {
      clearTimeout(timer);
      if (e instanceof OutcomeUnknownError) reject(e);
      else if (sent) reject(new OutcomeUnknownError(`etcd ${path}: ${errorMessage(e)}`));
      else reject(new NotSentError(`etcd ${path}: ${errorMessage(e)}`));
    });
    req.end(data);
  });
}

const b64 = (s: string): string => Buffer.from(s, 'latin1').toString('base64');
const unb64 = (s: string | undefined): string => Buffer.from(s ?? '', 'base64').toString('latin1');

interface RawKv {
  key?: string;
  value?: string;
  mod_revision?: string;
  create_revision?: string;
  lease?: string;
}

const entry = (kv: RawKv): KvEntry => ({
  key: unb64(kv.key),
  value: unb64(kv.value),
  mod: Number(kv.mod_revision ?? 0),
  create: Number(kv.create_revision ?? 0),
  ...(kv.lease && kv.lease !== '0' ? { lease: kv.lease } : {}),
});

export interface EtcdKvOptions {
  url: string;
  caPem: string;
  certPem: string;
  keyPem: string;
  /** a call that takes longer is abandoned (a write's outcome is then unknown) */
  timeoutMs?: number;
}

/** Keys and values are latin1 strings in both directions, so UTF-8 JSON round-trips byte for byte. */
export class EtcdKv implements Kv {
  private readonly agent: https.Agent;
  private readonly watches = new Set<() => void>();

  constructor(private readonly o: EtcdKvOptions) {
    this.agent = new https.Agent({ keepAlive: true, maxSockets: 16, ca: o.caPem, cert: o.certPem, key: o.keyPem });
  }

  close(): void {
    for (const w of [...this.watches]) w();
    this.agent.destroy();
  }

  private call<T>(path: string, body: unknown, timeoutMs = this.o.timeoutMs ?? 4000): Promise<T> {
    return gatewayCall<T>(new URL(path, this.o.url), 'POST', body, timeoutMs, { agent: this.agent });
  }

  async range(prefix: string): Promise<{ rev: number; kvs: KvEntry[] }> {
    const r = await this.call<{ header: { revision: string }; kvs?: RawKv[] }>(
      '/v3/kv/range',
      { key: b64(prefix), range_end: b64(prefixEnd(prefix)), serializable: true },
      20_000,
    );
    return { rev: Number(r.header.revision), kvs: (r.kvs ?? []).map(entry) };
  }

  async txn(compares: Compare[], ops: Op[], timeoutMs?: number): Promise<{ ok: boolean; rev: number }> {
    const r = await this.call<{ header: { revision: string }; succeeded?: boolean }>(
      '/v3/kv/txn',
      {
        compare: compares.map((c) => ({
          key: b64(c.key),
          ...(c.rangeEnd !== undefined ? { range_end: b64(c.rangeEnd) } : {}),
          target: c.target,
          result: c.result,
          [c.target === 'MOD' ? 'mod_revision' : 'create_revision']: String(c.rev),
        })),
        success: ops.map((op) =>
          'put' in op
            ? { request_put: { key: b64(op.put), value: b64(op.value), ...(op.lease ? { lease: op.lease } : {}) } }
            : { request_delete_range: { key: b64(op.del) } },
        ),
      },
      timeoutMs,
    );
    return { ok: r.succeeded === true, rev: Number(r.header.revision) };
  }

  watch(prefix: string, fromRev: number, h: WatchHandlers): Watch {
    const body = JSON.stringify({ create_request: { key: b64(prefix), range_end: b64(prefixEnd(prefix)), start_revision: String(fromRev) } });
    let done = false;
    const end = (why: string, compacted = false): void => {
      if (done) return;
      done = true;
      this.watches.delete(stop);
      req.destroy();
      h.ended(why, compacted);
    };
    const stop = (): void => {
      done = true;
      this.watches.delete(stop);
      req.destroy();
    };
    this.watches.add(stop);
    // A watch has no deadline; its own agent-free socket, so a stalled stream blocks no call.
    const req = https.request(new URL('/v3/watch', this.o.url), {
      method: 'POST',
      ca: this.o.caPem,
      cert: this.o.certPem,
      key: this.o.keyPem,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    });
    req.on('response', (res) => {
      if ((res.statusCode ?? 500) >= 300) return end(`watch refused with ${res.statusCode}`);
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        buf += c;
        for (let i = buf.indexOf('\n'); i >= 0 && !done; i = buf.indexOf('\n')) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (line.trim()) this.onWatchLine(line, h, end);
        }
      });
      res.on('end', () => end('watch stream ended'));
      res.on('error', (e) => end(errorMessage(e)));
    });
    req.on('error', (e) => end(errorMessage(e)));
    req.end(body);
    return { close: stop };
  }

  private onWatchLine(line: string, h: WatchHandlers, end: (why: string, compacted?: boolean) => void): void {
    let msg: {
      result?: {
        header?: { revision?: string };
        events?: { type?: string; kv?: RawKv }[];
        canceled?: boolean;
        compact_revision?: string;
        cancel_reason?: string;
      };
      error?: { message?: string };
    };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      return end('unreadable watch line');
    }
    if (msg.error) return end(msg.error.message ?? 'watch error');
    const r = msg.result;
    if (!r) return;
    if (r.canceled) return end(r.cancel_reason ?? 'watch canceled', Number(r.compact_revision ?? 0) > 0);
    if (Number(r.compact_revision ?? 0) > 0) return end('history compacted', true);
    const events: WatchEvent[] = (r.events ?? []).map((e) => {
      const kv = entry(e.kv ?? {});
      return { type: e.type === 'DELETE' ? 'delete' : 'put', key: kv.key, value: kv.value, mod: kv.mod, create: kv.create };
    });
    h.events(events, Number(r.header?.revision ?? 0));
  }

  async leaseGrant(ttlSeconds: number): Promise<string> {
    return (await this.call<{ ID: string }>('/v3/lease/grant', { TTL: String(ttlSeconds) })).ID;
  }

  async leaseKeepAlive(id: string): Promise<number> {
    // The gateway streams keep-alive answers; one request line gets one answer line.
    const r = await this.call<{ result?: { TTL?: string } }>('/v3/lease/keepalive', { ID: id }, 1500);
    return Number(r.result?.TTL ?? 0);
  }

  async leaseRevoke(id: string): Promise<void> {
    await this.call('/v3/lease/revoke', { ID: id }, 2000).catch(() => undefined);
  }
}
