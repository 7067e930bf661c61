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

const MAX_STREAM = 32 << 20;

/** UDP packets and length-prefixed TCP request/response on the same port (7946 by default). */
export class NetTransport implements Transport {
  private packetHandler: ((from: string, data: Buffer) => void) | undefined;
  private requestHandler: ((from: string, data: Buffer) => Promise<Buffer>) | undefined;
  readonly stats = newStats();

  private constructor(
    readonly addr: string,
    private readonly udp: dgram.Socket,
    private readonly tcp: net.Server,
  ) {
    udp.on('message', (msg, rinfo) => {
      this.stats.packetsIn++;
      this.stats.bytesIn += msg.length;
      this.packetHandler?.(`${rinfo.address}:${rinfo.port}`, msg);
    });
    tcp.on('connection', (sock) => this.serve(sock));
  }

  static async listen(ip: string, port: number): Promise<NetTransport> {
    const udp = dgram.createSocket({ type: 'udp4', reuseAddr: false });
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(port, ip, () => resolve());
    });
    udp.on('error', () => undefined);
    const tcp = net.createServer();
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(port, ip, () => resolve());
    });
    udp.unref();
    tcp.unref();
    return new NetTransport(`${ip}:${port}`, udp, tcp);
  }

  sendPacket(to: string, data: Buffer): void {
    const [host, port] = split(to);
    this.stats.packetsOut++;
    this.stats.bytesOut += data.length;
    this.udp.send(data, port, host);
  }

  request(to: string, data: Buffer, timeoutMs: number): Promise<Buffer> {
    const [host, port] = split(to);
    this.stats.bytesOut += data.length + 4;
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
      sock.once('connect', () => sock.write(frame(data)));
      readFrame(sock).then(
        (reply) => {
          clearTimeout(timer);
          this.stats.bytesIn += reply.length + 4;
          sock.end();
          resolve(reply);
        },
        (e: Error) => {
          clearTimeout(timer);
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

  private serve(sock: net.Socket): void {
    sock.on('error', () => undefined);
    sock.setTimeout(10_000, () => sock.destroy());
    readFrame(sock).then(
      async (req) => {
        this.stats.bytesIn += req.length + 4;
        const reply = this.requestHandler ? await this.requestHandler(`${sock.remoteAddress}:${sock.remotePort}`, req) : Buffer.alloc(0);
        this.stats.bytesOut += reply.length + 4;
        sock.end(frame(reply));
      },
      () => sock.destroy(),
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

function frame(data: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(data.length);
  return Buffer.concat([h, data]);
}

function readFrame(sock: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c]);
      if (buf.length < 4) return;
      const len = buf.readUInt32BE(0);
      if (len > MAX_STREAM) {
        cleanup();
        reject(new Error('stream frame too large'));
        return;
      }
      if (buf.length >= 4 + len) {
        cleanup();
        resolve(buf.subarray(4, 4 + len));
      }
    };
    const onEnd = (): void => {
      cleanup();
      reject(new Error('stream closed early'));
    };
    const cleanup = (): void => {
      sock.off('data', onData);
      sock.off('end', onEnd);
      sock.off('close', onEnd);
    };
    sock.on('data', onData);
    sock.on('end', onEnd);
    sock.on('close', onEnd);
  });
}
