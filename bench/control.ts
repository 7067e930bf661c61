// Control-plane benchmark: join, network create, failure detection, idle memory, the event loop's
// lag while tasks start, and a restart with many networks and tasks, on two lab hosts running the
// built daemon.
import { randomBytes } from 'node:crypto';
import { labDown, labUp, stopDaemon } from '../src/lab/lab.js';
import { anonMb, apiOf, daemonPid, emit, importBusybox, percentile, round, rssMb, sleeperSpec, startBuilt, until } from './util.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const CREATES = Number(process.env.BENCH_CREATES ?? 30);
const DOWN_RUNS = Number(process.env.BENCH_DOWN_RUNS ?? 3);
const BURST = Number(process.env.BENCH_BURST ?? 20);
const RESTART_NETWORKS = Number(process.env.BENCH_RESTART_NETWORKS ?? 100);
const RESTART_TASKS = Number(process.env.BENCH_RESTART_TASKS ?? 400);

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

    // The event loop (it runs gossip probes, heartbeats, elections) while BURST tasks start at once.
    await importBusybox(name, ['node1', 'node2']);
    const ready = async (svc: string): Promise<number> =>
      (await a1.get<Json[]>('/tasks', { filters: JSON.stringify({ service: { [svc]: true }, 'desired-state': { running: true } }) })).filter(
        (t) => t.Status.State === 'running',
      ).length;
    await a1.post('/networks/create', { Name: 'burst-net', Driver: 'overlay' });
    await a1.get('/vxswarm/eventloop', { reset: '1' });
    await a2.get('/vxswarm/eventloop', { reset: '1' });
    await a1.post('/services/create', sleeperSpec('burst', BURST, 'burst-net', ['node.hostname==node2']));
    await until(async () => (await ready('burst')) === BURST, 120_000, 50);
    const lag1 = await a1.get<Json>('/vxswarm/eventloop');
    const lag2 = await a2.get<Json>('/vxswarm/eventloop');
    emit({ metric: 'loop_lag_burst', tasks: BURST, worker: lag2, manager: lag1 });
    summary.loop_lag_ms_p99_burst = lag2.P99Ms;
    summary.loop_lag_ms_p99_burst_manager = lag1.P99Ms;
    await a1.del('/services/burst');

    // kill -9 of a node with RESTART_NETWORKS networks and RESTART_TASKS tasks, until it is Ready
    // again and serving; adoption of its sandboxes goes on in the background.
    const per = Math.max(1, Math.round(RESTART_TASKS / RESTART_NETWORKS));
    for (let i = 0; i < RESTART_NETWORKS; i++) {
      await a1.post('/networks/create', { Name: `r${i}`, Driver: 'overlay' });
      await a1.post('/services/create', sleeperSpec(`r${i}`, per, `r${i}`, ['node.hostname==node2']));
    }
    const total = per * RESTART_NETWORKS;
    const running = async (): Promise<number> =>
      (await a1.get<Json[]>('/tasks', { filters: JSON.stringify({ 'desired-state': { running: true } }) })).filter((t) => t.Status.State === 'running').length;
    t0 = performance.now();
    await until(async () => (await running()) >= total, 900_000, 500);
    emit({ metric: 'restart_setup', networks: RESTART_NETWORKS, tasks: total, start_all_s: round((performance.now() - t0) / 1000, 1) });
    const n2 = async (): Promise<string> => (await a1.get<Json[]>('/nodes')).find((n) => n.Description.Hostname === 'node2')!.Status.State;
    await stopDaemon(name, 'node2', 'SIGKILL');
    await until(async () => (await n2()) === 'down', 20000);
    t0 = performance.now();
    await startBuilt(name, 'node2');
    await until(async () => (await n2()) === 'ready' && (await a2.get<Json>('/info')).Swarm.LocalNodeState === 'active', 60000, 10);
    summary.restart_ready_s_100_networks = round((performance.now() - t0) / 1000, 3);
    await until(async () => (await a2.get<Json[]>('/vxswarm/endpoints')).length >= total, 300_000, 50);
    summary.restart_adopted_s_100_networks = round((performance.now() - t0) / 1000, 2);
    summary.restart_networks = RESTART_NETWORKS;
    summary.restart_tasks = total;
    summary.targets = 'restart_ready_s_100_networks<=1.0 (docker ~12 s with 20 tasks) loop_lag_ms_p99_burst<=20 daemon_rss_mb_idle<=80';
  } finally {
    await labDown(name);
  }
  emit(summary);
}
