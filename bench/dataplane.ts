// Data-plane benchmark: peer programming rate, endpoint attach latency, and TCP throughput / RTT
// over our overlay against an independent hand-built iproute2 VXLAN (bench/reference.ts) and the
// bare underlay, plus the routed-subnet and shared-segment paths, all in one run: only ratios matter.
import { randomBytes } from 'node:crypto';
import { formatIp, parseIp } from '../src/core/ipv4.js';
import { createNetns } from '../src/kernel/netns.js';
import { labDown, labUp } from '../src/lab/lab.js';
import { OverlayHost } from '../src/overlay/host.js';
import { buildReference, type Reference } from './reference.js';
import { emit, iperfGbps, percentile, pingAvgMs, round } from './util.js';

const PEERS = Number(process.env.BENCH_PEERS ?? 20000);
const ATTACHES = Number(process.env.BENCH_ATTACHES ?? 60);
const IPERF_S = Number(process.env.BENCH_IPERF_S ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);

function peerAt(i: number): { ip: string; mac: string; vtep: string } {
  // distinct addresses in 10.128.0.0/9; VTEPs spread over 50 fake remote hosts.
  const ip = formatIp(parseIp('10.128.0.0') + i);
  const mac = `02:aa:${[(i >> 16) & 255, (i >> 8) & 255, i & 255, 1].map((x) => x.toString(16).padStart(2, '0')).join(':')}`;
  return { ip, mac, vtep: `192.0.2.${1 + (i % 50)}` };
}

/** Two lab hosts on one L2 network, one overlay container on each: the bridged-segment path. */
async function sharedSegment(lab: string): Promise<{ server: string; serverIp: string; client: string; close: () => Promise<void> }> {
  const plan = await labUp(lab, 2, 1);
  const hs = plan.hosts.map((h) => new OverlayHost({ prefix: `${lab}-${h.name}-`, underlayIp: h.ip, hostNetns: h.netns, reconcileMs: 0 }));
  const close = async (): Promise<void> => {
    for (const h of hs) await h.close().catch(() => undefined);
    await labDown(lab);
  };
  try {
    for (const h of hs) await h.start();
    const spec = { id: 'shared', subnets: [{ subnet: '10.2.0.0/24', gateway: '10.2.0.1', vni: 4301 }] };
    await Promise.all(hs.map((h) => h.createNetwork(spec)));
    const [a, b] = [`${lab}-sa`, `${lab}-sb`];
    createNetns(a);
    createNetns(b);
    const ea = await hs[0]!.attach('shared', { id: 'sa', netns: a, ip: '10.2.0.3' });
    const eb = await hs[1]!.attach('shared', { id: 'sb', netns: b, ip: '10.2.0.4' });
    await hs[0]!.setPeers('shared', [{ ip: eb.ip, mac: eb.mac, vtep: plan.hosts[1]!.ip }]);
    await hs[1]!.setPeers('shared', [{ ip: ea.ip, mac: ea.mac, vtep: plan.hosts[0]!.ip }]);
    return { server: b, serverIp: eb.ip, client: a, close };
  } catch (e) {
    await close();
    throw e;
  }
}

export async function run(): Promise<void> {
  const name = `bdp${randomBytes(3).toString('hex')}`;
  const plan = await labUp(name, 2);
  const [n1, n2] = plan.hosts as [(typeof plan.hosts)[0], (typeof plan.hosts)[0]];
  const hosts = plan.hosts.map((h) => new OverlayHost({ prefix: `${name}-${h.name}-`, underlayIp: h.ip, hostNetns: h.netns, reconcileMs: 0 }));
  const summary: Record<string, number | string> = { bench: 'dataplane' };
  const cleanups: (() => Promise<unknown>)[] = [];
  let ref: Reference | undefined;
  try {
    for (const h of hosts) await h.start();

    // 1. Peer programming with read-back, into one sandbox.
    const big = await hosts[0]!.createNetwork({ id: 'bigpeers', subnets: [{ subnet: '10.128.0.0/9', gateway: '10.128.0.1', vni: 9000 }] });
    const peers = Array.from({ length: PEERS }, (_, i) => peerAt(i + 2));
    let t0 = performance.now();
    const first = await big.setPeers(peers);
    const verify = await big.reconcile();
    const peerMs = performance.now() - t0;
    if (verify.neighSet + verify.fdbSet + verify.neighDel + verify.fdbDel !== 0) throw new Error(`read-back found differences: ${JSON.stringify(verify)}`);
    emit({ metric: 'peers_programmed', peers: PEERS, program_ms: round(first.ms, 1), readback_ms: round(verify.ms, 1), total_ms: round(peerMs, 1) });
    summary.peers_per_s = Math.round(PEERS / (peerMs / 1000));
    await hosts[0]!.deleteNetwork('bigpeers');

    // 2. Endpoint attach latency into an existing sandbox.
    const spec = { id: 'uber-net', subnets: [{ subnet: '10.0.0.0/16', gateway: '10.0.0.1', vni: 4097 }] };
    await Promise.all(hosts.map((h) => h.createNetwork(spec)));
    const times: number[] = [];
    for (let i = 0; i < ATTACHES; i++) {
      const c = `${name}-a${i}`;
      createNetns(c);
      t0 = performance.now();
      await hosts[0]!.attach('uber-net', { id: `a${i}`, netns: c, ip: `10.0.1.${10 + i}` });
      times.push(performance.now() - t0);
    }
    emit({ metric: 'attach', n: ATTACHES, p50_ms: round(percentile(times, 50)), p90_ms: round(percentile(times, 90)), max_ms: round(Math.max(...times)) });
    summary.attach_ms_p50 = round(percentile(times, 50));

    // 3. Throughput and RTT: our overlay against an independent hand-built one (bench/reference.ts,
    // its own router, no bridge on its underlay) and against the bare underlay, in one run.
    const c1 = `${name}-c1`;
    const c2 = `${name}-c2`;
    createNetns(c1);
    createNetns(c2);
    const e1 = await hosts[0]!.attach('uber-net', { id: 'c1', netns: c1, ip: '10.0.0.3' });
    const e2 = await hosts[1]!.attach('uber-net', { id: 'c2', netns: c2, ip: '10.0.0.4' });
    // The guard for routing inside the sandbox: one overlay, two subnets, one container in each.
    const routed = {
      id: 'routed',
      subnets: [
        { subnet: '10.1.1.0/24', gateway: '10.1.1.1', vni: 4201 },
        { subnet: '10.1.2.0/24', gateway: '10.1.2.1', vni: 4202 },
      ],
    };
    await Promise.all(hosts.map((h) => h.createNetwork(routed)));
    const r1 = `${name}-r1`;
    const r2 = `${name}-r2`;
    createNetns(r1);
    createNetns(r2);
    const f1 = await hosts[0]!.attach('routed', { id: 'r1', netns: r1, ip: '10.1.1.3' });
    const f2 = await hosts[1]!.attach('routed', { id: 'r2', netns: r2, ip: '10.1.2.3' });
    await hosts[0]!.setPeers('uber-net', [{ ip: e2.ip, mac: e2.mac, vtep: n2.ip }]);
    await hosts[1]!.setPeers('uber-net', [{ ip: e1.ip, mac: e1.mac, vtep: n1.ip }]);
    await hosts[0]!.setPeers('routed', [{ ip: f2.ip, mac: f2.mac, vtep: n2.ip }]);
    await hosts[1]!.setPeers('routed', [{ ip: f1.ip, mac: f1.mac, vtep: n1.ip }]);

    // The guard for a shared segment: a second lab whose two hosts sit on one L2 network.
    const shared = await sharedSegment(`${name}s`);
    cleanups.push(shared.close);
    ref = await buildReference(`${name}-ref`, plan.mtu);
    const [rc1, rc2] = ref.containers as [Reference['containers'][0], Reference['containers'][0]];
    const [rh1, rh2] = ref.hosts as [Reference['hosts'][0], Reference['hosts'][0]];

    summary.rtt_ms_overlay = await pingAvgMs(c1, '10.0.0.4');
    summary.rtt_ms_handbuilt = await pingAvgMs(rc1.netns, rc2.ip);
    summary.rtt_ms_underlay = await pingAvgMs(n1.netns, n2.ip);
    const paths: Record<string, () => Promise<number>> = {
      overlay: () => iperfGbps(c2, '10.0.0.4', c1, IPERF_S),
      handbuilt: () => iperfGbps(rc2.netns, rc2.ip, rc1.netns, IPERF_S),
      underlay: () => iperfGbps(n2.netns, n2.ip, n1.netns, IPERF_S),
      handbuilt_underlay: () => iperfGbps(rh2.netns, rh2.ip, rh1.netns, IPERF_S),
      routed_subnets: () => iperfGbps(r2, f2.ip, r1, IPERF_S),
      shared_l2: () => iperfGbps(shared.server, shared.serverIp, shared.client, IPERF_S),
    };
    // Interleave the paths so drift in machine load hits all of them alike.
    const runs: Record<string, number[]> = Object.fromEntries(Object.keys(paths).map((k) => [k, []]));
    for (let round_ = 0; round_ < ROUNDS; round_++) for (const [k, f] of Object.entries(paths)) runs[k]!.push(await f());
    for (const [k, v] of Object.entries(runs)) emit({ metric: `tcp_${k}`, gbps: v.map((x) => round(x)) });
    const best = (k: string): number => Math.max(...runs[k]!);
    for (const k of Object.keys(paths)) summary[`tcp_gbps_${k}`] = round(best(k));
    summary.overlay_vs_handbuilt = round(best('overlay') / best('handbuilt'));
    summary.overlay_vs_underlay = round(best('overlay') / best('underlay'));
    summary.handbuilt_vs_handbuilt_underlay = round(best('handbuilt') / best('handbuilt_underlay'));
    summary.overlay_vs_handbuilt_routed_subnets = round(best('routed_subnets') / best('handbuilt'));
    summary.overlay_vs_handbuilt_shared_l2 = round(best('shared_l2') / best('handbuilt'));
  } finally {
    for (const h of hosts) await h.close().catch(() => undefined);
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    await ref?.down();
    await labDown(name);
  }
  emit(summary);
}
