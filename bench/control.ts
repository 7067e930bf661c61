// Control-plane benchmark (issue 3): join, network create, failure detection, idle memory,
// on two lab hosts running the built daemon.
import { randomBytes } from 'node:crypto';
import { labDown, labUp, stopDaemon } from '../src/lab/lab.js';
import { anonMb, apiOf, daemonPid, emit, percentile, round, rssMb, startBuilt, until } from './util.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const CREATES = Number(process.env.BENCH_CREATES ?? 30);
const DOWN_RUNS = Number(process.env.BENCH_DOWN_RUNS ?? 3);

export async function run(): Promise<void> {
  const name = `bcp${randomBytes(3).toString('hex')}`;
  const summary: Record<string, number | string> = { bench: 'control' };
  try {
    await labUp(name, 2);
    const pid1 = await startBuilt(name, 'node1');
    await startBuilt(name, 'node2');
    const a1 = apiOf(name, 'node1');
    const a2 = apiOf(name, 'node2');
    await a1.post('/swarm/init', {});
    const token = (await a1.get<Json>('/swarm')).JoinTokens.Worker as string;

    let t0 = performance.now();
    await a2.post('/swarm/join', { RemoteAddrs: ['172.31.1.5:2377'], JoinToken: token });
    await until(async () => (await a1.get<Json[]>('/nodes')).some((n) => n.Description.Hostname === 'node2' && n.Status.State === 'ready'), 10000);
    summary.join_ms = round(performance.now() - t0, 1);

    const times: number[] = [];
    for (let i = 0; i < CREATES; i++) {
      t0 = performance.now();
      await a1.post('/networks/create', { Name: `bench${i}`, Driver: 'overlay' });
      times.push(performance.now() - t0);
    }
    emit({ metric: 'network_create', n: CREATES, p50_ms: round(percentile(times, 50)), p90_ms: round(percentile(times, 90)) });
    summary.network_create_ms_p50 = round(percentile(times, 50));

    const downs: number[] = [];
    for (let i = 0; i < DOWN_RUNS; i++) {
      const state = async (): Promise<string> => (await a1.get<Json[]>('/nodes')).find((n) => n.Description.Hostname === 'node2')!.Status.State;
      await until(async () => (await state()) === 'ready', 10000);
      t0 = performance.now();
      await stopDaemon(name, 'node2', 'SIGKILL');
      await until(async () => (await state()) === 'down', 20000);
      downs.push((performance.now() - t0) / 1000);
      await startBuilt(name, 'node2');
    }
    emit({ metric: 'node_down_detect', runs: downs.map((x) => round(x)) });
    summary.node_down_detect_s = round(Math.max(...downs));

    await new Promise((r) => setTimeout(r, 2000));
    summary.daemon_rss_mb_idle = round(rssMb(pid1), 1);
    summary.daemon_anon_mb_idle = round(anonMb(pid1), 1);
    const pid2 = daemonPid(name, 'node2');
    summary.daemon_rss_mb_idle_worker = round(rssMb(pid2), 1);
  } finally {
    await labDown(name);
  }
  emit(summary);
}
