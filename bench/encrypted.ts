// Encrypted overlay benchmark (issue 18), two lab hosts on different L2 networks, built daemons:
// one iperf3 TCP stream between two tasks over an encrypted overlay and over a plain one beside
// it, alternated in one run (encrypted_vs_plain), with the machine's busy CPU seconds per GB
// moved on each path (kernel, wireguard-go and iperf3 together, as a user pays them).
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { labDown } from '../src/lab/lab.js';
import { emit, iperfGbps, round, runningTask, taskNetns, twoNodeSwarm, until } from './util.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const IPERF_S = Number(process.env.BENCH_IPERF_S ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

/** Busy and total CPU seconds of the whole machine so far (/proc/stat, USER_HZ 100). */
function cpuBusyS(): number {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return (f.reduce((a, b) => a + b, 0) - idle) / 100;
}

/** Gbit/s and busy CPU seconds per GB for one run. */
async function measure(serverNs: string, ip: string, clientNs: string): Promise<{ gbps: number; cpuPerGb: number; seconds: number }> {
  const c0 = cpuBusyS();
  const t0 = performance.now();
  const gbps = await iperfGbps(serverNs, ip, clientNs, IPERF_S);
  const s = (performance.now() - t0) / 1000;
  const gb = (gbps * IPERF_S) / 8;
  // The run's own start-up (about 0.4 s idle) counts too: small beside a 5 s transfer.
  return { gbps, cpuPerGb: (cpuBusyS() - c0) / Math.max(gb, 1e-9), seconds: s };
}

export async function run(): Promise<void> {
  const name = `ben${randomBytes(3).toString('hex')}`;
  const summary: Record<string, number | string> = { bench: 'encrypted' };
  try {
    const { a1 } = await twoNodeSwarm(name);
    const secure = (await a1.request<Json>('POST', '/networks/create', { Name: 'secure', Driver: 'overlay', Options: { encrypted: '' } })).data.Id as string;
    const plain = (await a1.request<Json>('POST', '/networks/create', { Name: 'plain', Driver: 'overlay' })).data.Id as string;
    const spec = (svc: string, host: string): Json => ({
      Name: svc,
      TaskTemplate: {
        ContainerSpec: { Image: 'busybox:local', Args: ['sleep', 'infinity'], StopGracePeriod: 100_000_000 },
        Networks: [{ Target: secure }, { Target: plain }],
        Placement: { Constraints: [`node.hostname==${host}`] },
      },
      Mode: { Replicated: { Replicas: 1 } },
    });
    await a1.post('/services/create', spec('srv', 'node1'));
    await a1.post('/services/create', spec('cli', 'node2'));
    const srv = await runningTask(a1, 'srv');
    const cli = await runningTask(a1, 'cli');
    const ipOn = (t: Json, net: string): string => (t.NetworksAttachments as Json[]).find((n) => n.Network.ID === net)!.Addresses[0].split('/')[0] as string;
    const serverNs = taskNetns(name, 'node1', srv);
    const clientNs = taskNetns(name, 'node2', cli);
    // The tunnel's first handshake is not what this measures.
    await until(async () => (await iperfGbps(serverNs, ipOn(srv, secure), clientNs, 1).catch(() => 0)) > 0, 30000, 200);
    const enc: { gbps: number; cpuPerGb: number }[] = [];
    const pla: { gbps: number; cpuPerGb: number }[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      enc.push(await measure(serverNs, ipOn(srv, secure), clientNs));
      pla.push(await measure(serverNs, ipOn(srv, plain), clientNs));
      emit({ round: i, tcp_gbps_encrypted: round(enc[i]!.gbps, 2), tcp_gbps_plain: round(pla[i]!.gbps, 2) });
    }
    const best = (xs: { gbps: number; cpuPerGb: number }[]): { gbps: number; cpuPerGb: number } => xs.reduce((a, b) => (b.gbps > a.gbps ? b : a));
    const e = best(enc);
    const p = best(pla);
    summary.tcp_gbps_encrypted = round(e.gbps, 2);
    summary.tcp_gbps_plain = round(p.gbps, 2);
    summary.encrypted_vs_plain = round(e.gbps / p.gbps, 3);
    summary.cpu_s_per_gb_encrypted = round(e.cpuPerGb, 2);
    summary.cpu_s_per_gb_plain = round(p.cpuPerGb, 2);
    summary.targets = 'encrypted_vs_plain>=0.3';
  } finally {
    await labDown(name);
  }
  emit(summary);
}
