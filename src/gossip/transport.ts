// How gossip moves bytes: best-effort packets (UDP) and request/response streams (TCP, for
// push-pull state sync). Two implementations: the real network, and an in-memory one.
import dgram from 'node:dgram';
import net from 'node:net';
import type { Clock } from '../core/clock.js';

export interface Transport {
  /** "ip:port" other nodes reach us at */
  readonly addr: string;
  sendPacket(to: string, data: Buffer): void;
  request(to: string, data: Buffer, timeoutMs: number): Promise<Buffer>;
  onPacket(h: (from: string, data: Buffer) => void): void;
  onRequest(h: (from: string, data: Buffer) => Promise<Buffer>): void;
  close(): Promise<void>;
  readonly stats: TransportStats;
}

export interface TransportStats {
  packetsOut: number;
  packetsIn: number;
  bytesOut: number;
  bytesIn: number;
}

const newStats = (): TransportStats => ({ packetsOut: 0, packetsIn: 0, bytesOut: 0, bytesIn: 0 });

// ---------------------------------------------------------------- in memory

/** A simulated network: per-packet latency, random loss, and partitions, all on a (fake) clock. */
export class MemNetwork {
  private readonly nodes = new Map<string, MemTransport>();
  private readonly cut = new Set<string>();
  loss = 0;
  latencyMs = 1;

  constructor(
    readonly clock: Clock,
    private readonly rng: () => number = Math.random,
  ) {}

  create(addr: string): MemTransport {
    const t = new MemTransport(addr, this);
    this.nodes.set(addr, t);
    return t;
  }

  remove(addr: string): void {
    this.nodes.delete(addr);
  }

  /** Cuts every link between the two groups (both directions). */
  partition(a: string[], b: string[]): void {
    for (const x of a) for (const y of b) this.cut.add(`${x}|${y}`).add(`${y}|${x}`);
  }
  heal(): void {
    this.cut.clear();
  }

  reachable(from: string, to: string): boolean {
    return this.nodes.has(to) && !this.cut.has(`${from}|${to}`);
  }

  /** @internal */
  deliver(from: string, to: string, data: Buffer): void {
    if (!this.reachable(from, to) || this.rng() < this.loss) return;
    this.clock.after(this.latencyMs, () => this.nodes.get(to)?.receive(from, data));
  }

  /** @internal */
  call(from: string, to: string, data: Buffer, timeoutMs: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const timer = this.clock.after(timeoutMs, () => reject(new Error(`request to ${to} timed out`)));
      if (!this.reachable(from, to)) return; // times out, as a dropped TCP SYN would
      this.clock.after(this.latencyMs, () => {
        const target = this.nodes.get(to);
        if (!target?.requestHandler) return;
        void target.requestHandler(from, data).then((reply) => {
          if (!this.reachable(to, from)) return;
          this.clock.after(this.latencyMs, () => {
            timer.cancel();
            resolve(reply);
          });
        }, reject);
      });
    });
  }
}

export class MemTransport implements Transport {
  private packetHandler: ((from: string, data: Buffer) => void) | undefined;
  requestHandler: ((from: string, data: Buffer) => Promise<Buffer>) | undefined;
  readonly stats = newStats();

  constructor(
    readonly addr: string,
    private readonly net: MemNetwork,
  ) {}

  sendPacket(to: string, data: Buffer): void {
    this.stats.packetsOut++;
    this.stats.bytesOut += data.length;
    this.net.deliver(this.addr, to, data);
  }
  request(to: string, data: Buffer, timeoutMs: number): Promise<Buffer> {
    this.stats.bytesOut += data.length;
    return this.net.call(this.addr, to, data, timeoutMs);
  }
  onPacket(h: (from: string, data: Buffer) => void): void {
    this.packetHandler = h;
  }
  onRequest(h: (from: string, data: Buffer) => Promise<Buffer>): void {
    this.requestHandler = h;
  }
  /** @internal */
  receive(from: string, data: Buffer): void {
    this.stats.packetsIn++;
    this.stats.bytesIn += data.length;
    this.packetHandler?.(from, data);
  }
  async close(): Promise<void> {
    this.net.remove(this.addr);
  }
}

// ---------------------------------------------------------------- UDP + TCP

/**
 * Seals and opens stream records. The keyring does it for real; without one, records are only
 * framed. A stream is a series of records, each `u32 length | sealed(flags | payload)`, sealed
 * with its direction and position as additional data so records cannot be reordered, cut short
 * or moved from a reply into a request.
 */
export interface RecordSealer {
  seal(plain: Buffer, aad: Buffer): Buffer;
  open(sealed: Buffer, aad: Buffer): Buffer | undefined;
}

/** payload bytes per record: the most a peer can make us hold before it has proved its key */
export const MAX_RECORD = 64 << 10;
/** sealing adds a version byte, a nonce and a tag; the flags byte comes on top */
const RECORD_OVERHEAD = 64;
/** a whole message, counted only from records that opened */
export const MAX_STREAM = 32 << 20;
/** streams served at once; more are refused, so a flood of idle connections costs nothing */
const MAX_INBOUND = 16;
/** the whole request must arrive within this (a trickle does not hold a slot) */
const REQUEST_DEADLINE_MS = 10_000;
const LAST = 1;

export class StreamError extends Error {}

/** UDP packets and sealed request/response streams over TCP on the same port (7946 by default). */
export class NetTransport implements Transport {
  private packetHandler: ((from: string, data: Buffer) => void) | undefined;
  private requestHandler: ((from: string, data: Buffer) => Promise<Buffer>) | undefined;
  private inbound = 0;
  readonly stats = newStats();
  /** inbound streams cut: a record no key opened, too large, too slow, or too many at once */
  streamsRefused = 0;
  /** called once per refused stream, with the reason */
  onRefused: ((why: string) => void) | undefined;

  private constructor(
    readonly addr: string,
    private readonly udp: dgram.Socket,
    private readonly tcp: net.Server,
    private readonly sealer: RecordSealer | undefined,
  ) {
    udp.on('message', (msg, rinfo) => {
      this.stats.packetsIn++;
      this.stats.bytesIn += msg.length;
      this.packetHandler?.(`${rinfo.address}:${rinfo.port}`, msg);
    });
    tcp.on('connection', (sock) => this.serve(sock));
  }

  static async listen(ip: string, port: number, sealer?: RecordSealer): Promise<NetTransport> {
    const udp = dgram.createSocket({ type: 'udp4', reuseAddr: false });
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(port, ip, () => resolve());
    });
    udp.on('error', () => undefined);
    // Port 0 (tests): the TCP side takes the port the UDP side got.
    const bound = udp.address().port;
    const tcp = net.createServer();
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(bound, ip, () => resolve());
    });
    udp.unref();
    tcp.unref();
    return new NetTransport(`${ip}:${bound}`, udp, tcp, sealer);
  }

  sendPacket(to: string, data: Buffer): void {
    const [host, port] = split(to);
    this.stats.packetsOut++;
    this.stats.bytesOut += data.length;
    this.udp.send(data, port, host);
  }

  request(to: string, data: Buffer, timeoutMs: number): Promise<Buffer> {
    const [host, port] = split(to);
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host, port });
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error(`request to ${to} timed out`));
      }, timeoutMs);
      sock.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      sock.once('connect', () => {
        const out = encodeStream(data, DIR_REQUEST, this.sealer);
        this.stats.bytesOut += out.length;
        sock.write(out);
      });
      new StreamReader(sock, DIR_REPLY, this.sealer).read().then(
        (reply) => {
          clearTimeout(timer);
          this.stats.bytesIn += reply.length;
          sock.end();
          resolve(reply);
        },
        (e: Error) => {
          clearTimeout(timer);
          sock.destroy();
          reject(e);
        },
      );
    });
  }

  onPacket(h: (from: string, data: Buffer) => void): void {
    this.packetHandler = h;
  }
  onRequest(h: (from: string, data: Buffer) => Promise<Buffer>): void {
    this.requestHandler = h;
  }

  private refuse(sock: net.Socket, why: string): void {
    this.streamsRefused++;
    this.onRefused?.(why);
    sock.destroy();
  }

  private serve(sock: net.Socket): void {
    sock.on('error', () => undefined);
    if (this.inbound >= MAX_INBOUND) return this.refuse(sock, `more than ${MAX_INBOUND} streams at once`);
    this.inbound++;
    sock.once('close', () => this.inbound--);
    const deadline = setTimeout(() => this.refuse(sock, 'request not complete in time'), REQUEST_DEADLINE_MS);
    deadline.unref();
    new StreamReader(sock, DIR_REQUEST, this.sealer).read().then(
      async (req) => {
        clearTimeout(deadline);
        this.stats.bytesIn += req.length;
        const reply = this.requestHandler ? await this.requestHandler(`${sock.remoteAddress}:${sock.remotePort}`, req) : Buffer.alloc(0);
        const out = encodeStream(reply, DIR_REPLY, this.sealer);
        this.stats.bytesOut += out.length;
        sock.end(out);
      },
      (e: unknown) => {
        clearTimeout(deadline);
        if (!sock.destroyed) this.refuse(sock, e instanceof Error ? e.message : String(e));
      },
    );
  }

  async close(): Promise<void> {
    this.udp.close();
    await new Promise<void>((r) => this.tcp.close(() => r()));
  }
}

function split(addr: string): [string, number] {
  const i = addr.lastIndexOf(':');
  return [addr.slice(0, i), Number(addr.slice(i + 1))];
}

const DIR_REQUEST = 0;
const DIR_REPLY = 1;

function recordAad(dir: number, index: number): Buffer {
  const b = Buffer.alloc(5);
  b[0] = dir;
  b.writeUInt32BE(index, 1);
  return b;
}

/** A whole message as records of at most MAX_RECORD payload bytes, the last one flagged. */
export function encodeStream(data: Buffer, dir: number, sealer: RecordSealer | undefined): Buffer {
  const parts: Buffer[] = [];
  const n = Math.max(1, Math.ceil(data.length / MAX_RECORD));
  for (let i = 0; i < n; i++) {
    const plain = Buffer.concat([Buffer.from([i === n - 1 ? LAST : 0]), data.subarray(i * MAX_RECORD, (i + 1) * MAX_RECORD)]);
    const body = sealer ? sealer.seal(plain, recordAad(dir, i)) : plain;
    const h = Buffer.alloc(4);
    h.writeUInt32BE(body.length);
    parts.push(h, body);
  }
  return Buffer.concat(parts);
}

/**
 * Reads one message from a socket record by record: each length is checked before its bytes are
 * kept, each record is opened as soon as it is complete, and the first that fails ends the stream.
 * Bytes are kept as a list of chunks, so a large message costs O(size), not O(size²).
 */
export class StreamReader {
  private pending: Buffer[] = [];
  private pendingLen = 0;
  private readonly payload: Buffer[] = [];
  private payloadLen = 0;
  private index = 0;

  constructor(
    private readonly sock: net.Socket,
    private readonly dir: number,
    private readonly sealer: RecordSealer | undefined,
  ) {}

  read(): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const fail = (e: Error): void => {
        cleanup();
        reject(e);
      };
      const onData = (c: Buffer): void => {
        this.pending.push(c);
        this.pendingLen += c.length;
        try {
          const done = this.drain();
          if (done) {
            cleanup();
            resolve(done);
          }
        } catch (e) {
          fail(e as Error);
        }
      };
      const onEnd = (): void => fail(new StreamError('stream closed early'));
      const cleanup = (): void => {
        this.sock.off('data', onData);
        this.sock.off('end', onEnd);
        this.sock.off('close', onEnd);
      };
      this.sock.on('data', onData);
      this.sock.on('end', onEnd);
      this.sock.on('close', onEnd);
    });
  }

  private take(n: number): Buffer {
    const all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingLen);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.pending = rest.length ? [rest] : [];
    this.pendingLen = rest.length;
    return out;
  }

  /** Consumes every complete record; the message once its last record is in. */
  private drain(): Buffer | undefined {
    for (;;) {
      if (this.pendingLen < 4) return undefined;
      const head = this.pending[0]!.length >= 4 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingLen);
      const len = head.readUInt32BE(0);
      if (len > MAX_RECORD + RECORD_OVERHEAD) throw new StreamError(`stream record of ${len} bytes exceeds ${MAX_RECORD + RECORD_OVERHEAD}`);
      if (this.pendingLen < 4 + len) return undefined;
      this.take(4);
      const body = Buffer.from(this.take(len));
      const plain = this.sealer ? this.sealer.open(body, recordAad(this.dir, this.index)) : body;
      if (!plain || plain.length < 1) throw new StreamError('stream record failed authentication');
      this.index++;
      this.payloadLen += plain.length - 1;
      if (this.payloadLen > MAX_STREAM) throw new StreamError(`stream message exceeds ${MAX_STREAM} bytes`);
      this.payload.push(plain.subarray(1));
      if (plain[0]! & LAST) return Buffer.concat(this.payload, this.payloadLen);
    }
  }
}
