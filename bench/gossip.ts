// Gossip benchmark (issue 4): failure detection and propagation on lab hosts running the
// built daemon, gossip cost, false deaths with a core kept busy, and spread rounds in a
// 1,000-node simulation compared with the O(log n) expectation.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import type { ApiClient } from '../src/cli/client.js';
import { FakeClock } from '../src/core/clock.js';
import { expectedSpreadRounds } from '../src/gossip/math.js';
import { Membership } from '../src/gossip/membership.js';
import { NetworkDB } from '../src/gossip/networkdb.js';
import { seededRng } from '../src/gossip/random.js';
import { MemNetwork } from '../src/gossip/transport.js';
import { listNetns } from '../src/kernel/netns.js';
import { Rtnl } from '../src/kernel/rtnl.js';
import { labDown, labUp, stopDaemon } from '../src/lab/lab.js';
import { apiOf, emit, percentile, round, startBuilt, until } from './util.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const HOSTS = Number(process.env.BENCH_HOSTS ?? 4);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const LOAD_S = Number(process.env.BENCH_LOAD_S ?? 30);
const SIM_N = Number(process.env.BENCH_SIM_NODES ?? 1000);

async function neighCount(netnsPrefix: string): Promise<number> {
  const [sbx] = listNetns(netnsPrefix);
  if (!sbx) return 0;
  const r = Rtnl.open(sbx);
  try {
    const vx = await r.getLink('vxlan0');
    return vx ? (await r.getNeighs(vx.index)).length : 0;
  } finally {
    r.close();
  }
}

async function simRounds(): Promise<Record<string, number>> {
  const clock = new FakeClock();
  const rng = seededRng(1);
  const net = new MemNetwork(clock, rng);
  const nodes: Membership[] = [];
  const dbs: NetworkDB[] = [];
  for (let i = 0; i < SIM_N; i++) {
    const m = new Membership({
      name: `n${i}`,
      transport: net.create(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}:7946`),
      clock,
      rng,
      incarnation: 1,
      pushPullIntervalMs: 5000,
    });
    const db = new NetworkDB(m, clock, { rng });
    nodes.push(m);
    dbs.push(db);
  }
  // Start with full membership (as after a converged join) so only table spread is measured.
  for (const [i, m] of nodes.entries()) {
    m.start();
    dbs[i]!.start();
  }
  // Joins run on the fake clock: start them all, then let time pass.
  for (const m of nodes.slice(1)) void m.join([nodes[0]!.self.addr]).catch(() => 0);
  for (let t = 0; t < 120_000 && Math.min(...nodes.map((m) => m.live().length)) < SIM_N; t += 1000) await clock.advance(1000);
  for (const d of dbs) d.joinNetwork('net');
  await clock.advance(3000);
  dbs[0]!.put('overlay_peer_table', 'net', 'ep', { ip: '10.0.0.2' });
  let rounds = 0;
  while (dbs.some((d) => d.list('overlay_peer_table', 'net').length === 0) && rounds < 500) {
    await clock.advance(50);
    rounds++;
  }
  for (const m of nodes) m.shutdown();
  for (const d of dbs) d.stop();
  return { sim_rounds_1000_nodes: rounds, sim_rounds_log_bound: round(expectedSpreadRounds(SIM_N, 3), 1) };
}

export async function run(): Promise<void> {
  const name = `bgs${randomBytes(3).toString('hex')}`;
  const summary: Record<string, number | string> = { bench: 'gossip', hosts: HOSTS };
  try {
    const plan = await labUp(name, HOSTS);
    for (const h of plan.hosts) await startBuilt(name, h.name);
    const api = (h: string): ApiClient => apiOf(name, h);
    await api('node1').post('/swarm/init', {});
    const token = (await api('node1').get<Json>('/swarm')).JoinTokens.Worker as string;
    for (const h of plan.hosts.slice(1)) await api(h.name).post('/swarm/join', { RemoteAddrs: ['172.31.1.5:2377'], JoinToken: token });
    await api('node1').post('/networks/create', { Name: 'uber-net', Driver: 'overlay', Attachable: true });
    for (const h of plan.hosts) await api(h.name).post('/vxswarm/endpoints', { Network: 'uber-net', Name: `ep-${h.name}` });
    const others = (h: string): string[] => plan.hosts.filter((x) => x.name !== h).map((x) => `${x.netns}-ov-`);
    await until(async () => (await Promise.all(plan.hosts.map((h) => neighCount(`${h.netns}-ov-`)))).every((n) => n === HOSTS - 1), 10000);

    // Propagation: a new endpoint on node2 until every other node has programmed it.
    const prop: number[] = [];
    for (let i = 0; i < RUNS * 3; i++) {
      const t0 = performance.now();
      const ep = await api('node2').post<Json>('/vxswarm/endpoints', { Network: 'uber-net', Name: `p${i}` });
      await until(async () => (await Promise.all(others('node2').map(neighCount))).every((n) => n === HOSTS), 5000);
      prop.push(performance.now() - t0);
      await api('node2').del(`/vxswarm/endpoints/${ep.Id}`);
      await until(async () => (await Promise.all(others('node2').map(neighCount))).every((n) => n === HOSTS - 1), 5000);
    }
    emit({ metric: 'propagate', ms: prop.map((x) => round(x, 1)) });
    summary.propagate_ms_p99 = round(percentile(prop, 99), 1);

    // Detection: kill node3's daemon until every other node removed its peers.
    const det: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t0 = performance.now();
      await stopDaemon(name, 'node3', 'SIGKILL');
      await until(async () => (await Promise.all(others('node3').map(neighCount))).every((n) => n === HOSTS - 2), 30000);
      det.push((performance.now() - t0) / 1000);
      await startBuilt(name, 'node3');
      await until(async () => (await Promise.all(others('node3').map(neighCount))).every((n) => n === HOSTS - 1), 15000).catch(async (e: unknown) => {
        process.stderr.write(
          `${JSON.stringify(await Promise.all(others('node3').map(neighCount)))} ${readFileSync(`/run/vxswarm/labs/${name}/node3/daemon.log`, 'utf8')}\n`,
        );
        throw e;
      });
    }
    emit({ metric: 'detect', s: det.map((x) => round(x)) });
    summary.detect_s_p50 = round(percentile(det, 50));
    summary.detect_s_max = round(Math.max(...det));

    // Cost while idle.
    const bytes = async (): Promise<number> => {
      let total = 0;
      for (const h of plan.hosts) total += (await api(h.name).get<Json>('/vxswarm/gossip')).transport.bytesOut as number;
      return total;
    };
    const b0 = await bytes();
    await new Promise((r) => setTimeout(r, 5000));
    summary.bytes_per_s_per_node_idle = Math.round((await bytes()) - b0) / 5 / HOSTS;
    // Churn: an endpoint created and removed every 100 ms on node4.
    const c0 = await bytes();
    const tc = Date.now();
    while (Date.now() - tc < 5000) {
      const ep = await api('node4').post<Json>('/vxswarm/endpoints', { Network: 'uber-net' });
      await new Promise((r) => setTimeout(r, 50));
      await api('node4').del(`/vxswarm/endpoints/${ep.Id}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    summary.bytes_per_s_per_node_churn = Math.round(((await bytes()) - c0) / ((Date.now() - tc) / 1000) / HOSTS);

    // False deaths with one core kept busy (bounded: LOAD_S seconds).
    const deaths = async (): Promise<number> => {
      let n = 0;
      for (const h of plan.hosts) n += (await api(h.name).get<Json>('/vxswarm/gossip')).membership.deaths as number;
      return n;
    };
    const deathsBefore = await deaths();
    const burner = spawn(process.execPath, ['-e', `const end = Date.now() + ${LOAD_S * 1000}; while (Date.now() < end) {}`], { stdio: 'ignore' });
    await new Promise((r) => burner.once('exit', r));
    summary.false_deaths_under_load = (await deaths()) - deathsBefore;
    summary.load_seconds = LOAD_S;
  } finally {
    await labDown(name);
  }
  Object.assign(summary, await simRounds());
  emit(summary);
}
