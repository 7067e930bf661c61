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

interface Pair {
  client: string;
  server: string;
  serverIp: string;
}

/** One container on `network` in each of two hosts, each host's VTEP pointed at the other's endpoint. */
async function containerPair(hosts: OverlayHost[], vteps: string[], network: string, ns: [string, string], ips: [string, string]): Promise<Pair> {
  const attach = (i: 0 | 1): ReturnType<OverlayHost['attach']> => {
    createNetns(ns[i]);
    return hosts[i]!.attach(network, { id: ns[i].slice(ns[i].lastIndexOf('-') + 1), netns: ns[i], ip: ips[i] });
  };
  const a = await attach(0);
  const b = await attach(1);
  await hosts[0]!.setPeers(network, [{ ip: b.ip, mac: b.mac, vtep: vteps[1]! }]);
  await hosts[1]!.setPeers(network, [{ ip: a.ip, mac: a.mac, vtep: vteps[0]! }]);
  return { client: ns[0], server: ns[1], serverIp: b.ip };
}

/** Two lab hosts on one L2 network, one overlay container on each: the bridged-segment path. */
async function sharedSegment(lab: string): Promise<Pair & { close: () => Promise<void> }> {
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
    const pair = await containerPair(
      hs,
      plan.hosts.map((h) => h.ip),
      'shared',
      [`${lab}-sa`, `${lab}-sb`],
      ['10.2.0.3', '10.2.0.4'],
    );
    return { ...pair, close };
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
    const vteps = [n1.ip, n2.ip];
    const overlay = await containerPair(hosts, vteps, 'uber-net', [`${name}-c1`, `${name}-c2`], ['10.0.0.3', '10.0.0.4']);
    // The guard for routing inside the sandbox: one overlay, two subnets, one container in each.
    const routed = {
      id: 'routed',
      subnets: [
        { subnet: '10.1.1.0/24', gateway: '10.1.1.1', vni: 4201 },
        { subnet: '10.1.2.0/24', gateway: '10.1.2.1', vni: 4202 },
      ],
    };
    await Promise.all(hosts.map((h) => h.createNetwork(routed)));
    const routedPair = await containerPair(hosts, vteps, 'routed', [`${name}-r1`, `${name}-r2`], ['10.1.1.3', '10.1.2.3']);

    // The guard for a shared segment: a second lab whose two hosts sit on one L2 network.
    const shared = await sharedSegment(`${name}s`);
    cleanups.push(shared.close);
    ref = await buildReference(`${name}-ref`, plan.mtu);
    const [rc1, rc2] = ref.containers as [Reference['containers'][0], Reference['containers'][0]];
    const [rh1, rh2] = ref.hosts as [Reference['hosts'][0], Reference['hosts'][0]];

    summary.rtt_ms_overlay = await pingAvgMs(overlay.client, overlay.serverIp);
    summary.rtt_ms_handbuilt = await pingAvgMs(rc1.netns, rc2.ip);
    summary.rtt_ms_underlay = await pingAvgMs(n1.netns, n2.ip);
    const across = (p: Pair) => (): Promise<number> => iperfGbps(p.server, p.serverIp, p.client, IPERF_S);
    const paths: Record<string, () => Promise<number>> = {
      overlay: across(overlay),
      handbuilt: () => iperfGbps(rc2.netns, rc2.ip, rc1.netns, IPERF_S),
      underlay: () => iperfGbps(n2.netns, n2.ip, n1.netns, IPERF_S),
      handbuilt_underlay: () => iperfGbps(rh2.netns, rh2.ip, rh1.netns, IPERF_S),
      routed_subnets: across(routedPair),
      shared_l2: across(shared),
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
