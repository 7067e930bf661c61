// Data-plane benchmark (issue 2): peer programming rate, endpoint attach latency, and
// TCP throughput / RTT over our overlay vs a hand-built iproute2 VXLAN vs the bare underlay,
// all measured in one run on one lab so only the ratios matter.
import { randomBytes } from 'node:crypto';
import { formatIp, parseIp } from '../src/core/ipv4.js';
import { createNetns } from '../src/kernel/netns.js';
import { labDown, labUp } from '../src/lab/lab.js';
import { OverlayHost } from '../src/overlay/host.js';
import { emit, iperfGbps, ns, percentile, pingAvgMs, round } from './util.js';

const PEERS = Number(process.env.BENCH_PEERS ?? 20000);
const ATTACHES = Number(process.env.BENCH_ATTACHES ?? 60);
const IPERF_S = Number(process.env.BENCH_IPERF_S ?? 5);

function peerAt(i: number): { ip: string; mac: string; vtep: string } {
  // distinct addresses in 10.128.0.0/9; VTEPs spread over 50 fake remote hosts.
  const ip = formatIp(parseIp('10.128.0.0') + i);
  const mac = `02:aa:${[(i >> 16) & 255, (i >> 8) & 255, i & 255, 1].map((x) => x.toString(16).padStart(2, '0')).join(':')}`;
  return { ip, mac, vtep: `192.0.2.${1 + (i % 50)}` };
}

/** The same sandbox and endpoint as ours, built with plain iproute2 commands (Docker-style defaults). */
async function handBuilt(
  lab: string,
  hostNs: string,
  hostIp: string,
  remoteIp: string,
  epIp: string,
  remoteEpIp: string,
  remoteMac: string,
  mac: string,
  mtu: number,
): Promise<string> {
  const sbx = `${lab}-hb-${hostNs.slice(-5)}`;
  const c = `${lab}-hbc-${hostNs.slice(-5)}`;
  const run = (n: string, ...cmd: string[]): Promise<string> => ns(n, cmd);
  createNetns(sbx);
  createNetns(c);
  await run(hostNs, 'ip', 'link', 'add', 'hbvx', 'mtu', String(mtu), 'type', 'vxlan', 'id', '4999', 'dstport', '4789', 'local', hostIp, 'nolearning', 'proxy');
  await run(hostNs, 'ip', 'link', 'set', 'hbvx', 'netns', sbx);
  await run(sbx, 'ip', 'link', 'add', 'br0', 'mtu', String(mtu), 'type', 'bridge');
  await run(sbx, 'ip', 'addr', 'add', '10.99.0.1/24', 'dev', 'br0');
  await run(sbx, 'ip', 'link', 'set', 'hbvx', 'master', 'br0', 'up');
  await run(sbx, 'ip', 'link', 'set', 'br0', 'up');
  await run(sbx, 'ip', 'link', 'add', 'hbveth', 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', c);
  await run(sbx, 'ip', 'link', 'set', 'hbveth', 'master', 'br0', 'up');
  await run(c, 'ip', 'link', 'set', 'eth0', 'address', mac, 'mtu', String(mtu), 'up');
  await run(c, 'ip', 'addr', 'add', `${epIp}/24`, 'dev', 'eth0');
  await run(sbx, 'ip', 'neigh', 'add', remoteEpIp, 'lladdr', remoteMac, 'dev', 'hbvx', 'nud', 'permanent');
  await run(sbx, 'bridge', 'fdb', 'add', remoteMac, 'dev', 'hbvx', 'dst', remoteIp, 'self', 'permanent');
  return c;
}

export async function run(): Promise<void> {
  const name = `bdp${randomBytes(3).toString('hex')}`;
  const plan = await labUp(name, 2);
  const [n1, n2] = plan.hosts as [(typeof plan.hosts)[0], (typeof plan.hosts)[0]];
  const hosts = plan.hosts.map((h) => new OverlayHost({ prefix: `${name}-${h.name}-`, underlayIp: h.ip, hostNetns: h.netns, reconcileMs: 0 }));
  const summary: Record<string, number | string> = { bench: 'dataplane' };
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

    // 3. Throughput and RTT: overlay, hand-built VXLAN, underlay.
    const c1 = `${name}-c1`;
    const c2 = `${name}-c2`;
    createNetns(c1);
    createNetns(c2);
    const e1 = await hosts[0]!.attach('uber-net', { id: 'c1', netns: c1, ip: '10.0.0.3' });
    const e2 = await hosts[1]!.attach('uber-net', { id: 'c2', netns: c2, ip: '10.0.0.4' });
    await hosts[0]!.setPeers('uber-net', [{ ip: e2.ip, mac: e2.mac, vtep: n2.ip }]);
    await hosts[1]!.setPeers('uber-net', [{ ip: e1.ip, mac: e1.mac, vtep: n1.ip }]);
    const mtu = hosts[0]!.mtuDefault;
    const hb1 = await handBuilt(name, n1.netns, n1.ip, n2.ip, '10.99.0.3', '10.99.0.4', '02:bb:00:00:00:04', '02:bb:00:00:00:03', mtu);
    const hb2 = await handBuilt(name, n2.netns, n2.ip, n1.ip, '10.99.0.4', '10.99.0.3', '02:bb:00:00:00:03', '02:bb:00:00:00:04', mtu);
    summary.rtt_ms_overlay = await pingAvgMs(c1, '10.0.0.4');
    summary.rtt_ms_handbuilt = await pingAvgMs(hb1, '10.99.0.4');
    summary.rtt_ms_underlay = await pingAvgMs(n1.netns, n2.ip);
    // Interleave the three paths twice so drift in machine load hits all of them alike.
    const runs: Record<string, number[]> = { overlay: [], handbuilt: [], underlay: [] };
    for (let round_ = 0; round_ < 2; round_++) {
      runs.overlay!.push(await iperfGbps(c2, '10.0.0.4', c1, IPERF_S));
      runs.handbuilt!.push(await iperfGbps(hb2, '10.99.0.4', hb1, IPERF_S));
      runs.underlay!.push(await iperfGbps(n2.netns, n2.ip, n1.netns, IPERF_S));
    }
    for (const [k, v] of Object.entries(runs)) emit({ metric: `tcp_${k}`, gbps: v.map((x) => round(x)) });
    const best = (k: string): number => Math.max(...runs[k]!);
    summary.tcp_gbps_overlay = round(best('overlay'));
    summary.tcp_gbps_handbuilt = round(best('handbuilt'));
    summary.tcp_gbps_underlay = round(best('underlay'));
    summary.overlay_vs_handbuilt = round(best('overlay') / best('handbuilt'));
    summary.overlay_vs_underlay = round(best('overlay') / best('underlay'));
    const nf = (await ns(`${name}-hb-node1`, ['cat', '/proc/sys/net/bridge/bridge-nf-call-iptables']).catch(() => 'n/a')).trim();
    summary.handbuilt_bridge_nf_call_iptables = nf;
  } finally {
    for (const h of hosts) await h.close().catch(() => undefined);
    await labDown(name);
  }
  emit(summary);
}
