// The embedded DNS server's thread. A socket belongs to the network namespace of the thread that
// creates it, so this thread steps into each container's namespace just long enough to bind
// 127.0.0.11:53 (UDP and TCP) and an upstream socket there, then returns home; it does nothing
// else that makes sockets. Queries are answered from the records the main thread pushes.
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import { parentPort } from 'node:worker_threads';
import * as packet from 'dns-packet';
import { enterNetnsThread } from '../kernel/netns.js';
import { answer, type DnsRecord } from './records.js';

export const DNS_IP = '127.0.0.11';
const TTL = 600;
const UPSTREAM_TIMEOUT_MS = 2000;

type Msg =
  | { op: 'add'; netns: string; networks: string[] }
  | { op: 'remove'; netns: string }
  | { op: 'records'; records: DnsRecord[]; overlays: string[] }
  | { op: 'stats' };

interface Sandbox {
  udp: dgram.Socket;
  tcp: net.Server;
  upstream: dgram.Socket;
  networks: Set<string>;
  pending: Map<number, (b: Buffer | undefined) => void>;
}

const boxes = new Map<string, Sandbox>();
let records: DnsRecord[] = [];
let overlays: string[] = [];
const stats = { queries: 0, local: 0, nxdomain: 0, forwarded: 0, failed: 0 };
let chain: Promise<unknown> = Promise.resolve();

function upstreams(): string[] {
  try {
    return fs
      .readFileSync('/etc/resolv.conf', 'utf8')
      .split('\n')
      .map((l) => /^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)\s*$/.exec(l)?.[1])
      .filter((x): x is string => !!x && !x.startsWith('127.'));
  } catch {
    return [];
  }
}

async function bindIn(netns: string, networks: string[]): Promise<void> {
  if (boxes.has(netns)) {
    boxes.get(netns)!.networks = new Set(networks);
    return;
  }
  const leave = enterNetnsThread(netns);
  let box: Sandbox;
  try {
    const udp = dgram.createSocket('udp4');
    const upstream = dgram.createSocket('udp4');
    const tcp = net.createServer();
    box = { udp, tcp, upstream, networks: new Set(networks), pending: new Map() };
    await Promise.all([
      new Promise<void>((res, rej) => udp.once('error', rej).bind(53, DNS_IP, () => res())),
      new Promise<void>((res, rej) => upstream.once('error', rej).bind(0, '0.0.0.0', () => res())),
      new Promise<void>((res, rej) => tcp.once('error', rej).listen(53, DNS_IP, () => res())),
    ]);
  } finally {
    leave();
  }
  box.udp.on('message', (m, rinfo) => void handle(box, m).then((r) => r && box.udp.send(r, rinfo.port, rinfo.address)));
  box.udp.on('error', () => undefined);
  box.upstream.on('message', (m) => {
    const id = m.readUInt16BE(0);
    box.pending.get(id)?.(m);
  });
  box.upstream.on('error', () => undefined);
  box.tcp.on('connection', (s) => {
    let buf = Buffer.alloc(0);
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const q = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + q.length);
        void handle(box, q).then((r) => {
          if (!r) return;
          const len = Buffer.alloc(2);
          len.writeUInt16BE(r.length);
          s.write(Buffer.concat([len, r]));
        });
      }
    });
    s.on('error', () => undefined);
  });
  boxes.set(netns, box);
}

function reply(q: packet.Packet, rcode: string, answers: packet.Answer[]): Buffer {
  return packet.encode({
    id: q.id,
    type: 'response',
    flags: packet.RECURSION_DESIRED | packet.RECURSION_AVAILABLE | (rcode === 'NXDOMAIN' ? 3 : rcode === 'SERVFAIL' ? 2 : 0),
    questions: q.questions,
    answers,
  });
}

async function handle(box: Sandbox, m: Buffer): Promise<Buffer | undefined> {
  let q: packet.Packet;
  try {
    q = packet.decode(m);
  } catch {
    return undefined;
  }
  const question = q.questions?.[0];
  if (!question) return undefined;
  stats.queries++;
  const a = answer(question.name, question.type, records, box.networks, overlays);
  if (a.kind === 'a') {
    stats.local++;
    return reply(
      q,
      'NOERROR',
      a.ips.map((ip) => ({ name: question.name, type: 'A', class: 'IN', ttl: TTL, data: ip })),
    );
  }
  if (a.kind === 'ptr') {
    stats.local++;
    return reply(q, 'NOERROR', [{ name: question.name, type: 'PTR', class: 'IN', ttl: TTL, data: a.name }]);
  }
  if (a.kind === 'nxdomain') {
    stats.nxdomain++;
    return reply(q, 'NXDOMAIN', []);
  }
  stats.forwarded++;
  const r = await forward(box, m, q.id ?? 0);
  if (!r) stats.failed++;
  return r ?? reply(q, 'SERVFAIL', []);
}

/** Asks the host's resolvers from inside the container's namespace (its routes, its firewall). */
function forward(box: Sandbox, m: Buffer, id: number): Promise<Buffer | undefined> {
  const servers = upstreams();
  if (!servers.length) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const t = setTimeout(() => done(undefined), UPSTREAM_TIMEOUT_MS);
    const done = (b: Buffer | undefined): void => {
      clearTimeout(t);
      box.pending.delete(id);
      resolve(b);
    };
    box.pending.set(id, done);
    for (const s of servers) box.upstream.send(m, 53, s, (e) => e && servers.length === 1 && done(undefined));
  });
}

function unbind(netns: string): void {
  const b = boxes.get(netns);
  if (!b) return;
  boxes.delete(netns);
  b.udp.close();
  b.upstream.close();
  b.tcp.close();
}

parentPort!.on('message', (msg: Msg & { seq?: number }) => {
  const run = async (): Promise<unknown> => {
    switch (msg.op) {
      case 'add':
        await bindIn(msg.netns, msg.networks);
        return undefined;
      case 'remove':
        unbind(msg.netns);
        return undefined;
      case 'records':
        records = msg.records;
        overlays = msg.overlays;
        return undefined;
      case 'stats':
        return { ...stats, sandboxes: boxes.size, records: records.length };
    }
  };
  // One namespace switch at a time.
  chain = chain.then(run).then(
    (result) => parentPort!.postMessage({ seq: msg.seq, ok: true, result }),
    (e: unknown) => parentPort!.postMessage({ seq: msg.seq, ok: false, error: (e as Error).message }),
  );
});
