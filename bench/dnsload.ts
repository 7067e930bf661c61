// Runs inside a container's namespace: N queries for a name at the embedded resolver, C at a time;
// prints {qps, p50_ms, p99_ms, answers}. Usage: dnsload.ts <name> <count> <concurrency>
import dgram from 'node:dgram';
import * as packet from 'dns-packet';

const [name, countS, concS] = process.argv.slice(2) as [string, string, string];
const count = Number(countS);
const conc = Number(concS);
const sock = dgram.createSocket('udp4');
const waiting = new Map<number, (answers: number) => void>();
sock.on('message', (m) => {
  const r = packet.decode(m);
  waiting.get(r.id!)?.(r.answers?.length ?? 0);
});
await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
const lat: number[] = [];
let answers = 0;
let next = 0;
const one = (id: number): Promise<void> =>
  new Promise((resolve) => {
    const t0 = performance.now();
    const timer = setTimeout(() => done(-1), 2000);
    const done = (n: number): void => {
      clearTimeout(timer);
      waiting.delete(id);
      lat.push(performance.now() - t0);
      if (n > 0) answers++;
      resolve();
    };
    waiting.set(id, done);
    sock.send(packet.encode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ type: 'A', name }] }), 53, '127.0.0.11');
  });
const t0 = performance.now();
await Promise.all(
  Array.from({ length: conc }, async () => {
    while (next < count) await one(next++ & 0xffff);
  }),
);
const secs = (performance.now() - t0) / 1000;
lat.sort((a, b) => a - b);
process.stdout.write(
  JSON.stringify({ qps: Math.round(count / secs), p50_ms: lat[Math.floor(lat.length * 0.5)], p99_ms: lat[Math.floor(lat.length * 0.99)], answers }) + '\n',
);
sock.close();
