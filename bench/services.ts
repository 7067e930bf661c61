// Services benchmark (issue 5), on two lab hosts running the built daemon, image already present:
// create → running, create → first cross-host ping, scale 2 → 20, reschedule after a daemon is
// killed, and memory (daemon with 20 tasks, the per-container helper).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { labDown, stopDaemon } from '../src/lab/lab.js';
import { emit, percentile, round, rssMb, sleeperSpec, twoNodeSwarm, until } from './util.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const execFileP = promisify(execFile);

const spec = (name: string, replicas: number, network: string): Json => sleeperSpec(name, replicas, network);

export async function run(): Promise<void> {
  const name = `bsv${randomBytes(3).toString('hex')}`;
  const summary: Record<string, number | string> = { bench: 'services' };
  try {
    const { a1, pid1 } = await twoNodeSwarm(name);
    const net = (await a1.request<Json>('POST', '/networks/create', { Name: 'uber-net', Driver: 'overlay' })).data.Id as string;
    const nodes = Object.fromEntries((await a1.get<Json[]>('/nodes')).map((n) => [n.Description.Hostname, n.ID]));
    const tasks = async (svc: string): Promise<Json[]> =>
      (await a1.get<Json[]>('/tasks', { filters: JSON.stringify({ service: { [svc]: true } }) })).filter((t) => t.DesiredState === 'running');
    const runningN = async (svc: string, n: number, on?: string): Promise<Json[] | undefined> => {
      const r = (await tasks(svc)).filter((t) => t.Status.State === 'running' && (!on || t.NodeID === on));
      return r.length === n ? r : undefined;
    };

    const toRunning: number[] = [];
    const toPing: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t0 = performance.now();
      const id = (await a1.request<Json>('POST', '/services/create', spec(`s${i}`, 2, net))).data.ID as string;
      // Ping from node1's task namespace to node2's task address, as soon as both exist.
      const pingDone = (async () => {
        const [from, to] = await until(async () => {
          const ts = await tasks(id);
          const f = ts.find((t) => t.NodeID === nodes.node1 && t.Status.State !== 'new');
          const g = ts.find((t) => t.NodeID === nodes.node2 && t.NetworksAttachments.length);
          return f && g ? ([f, g] as const) : undefined;
        }, 20000);
        const ns = `${name}-node1-c-${(from.ID as string).slice(0, 12)}`;
        const ip = (to.NetworksAttachments[0].Addresses[0] as string).split('/')[0]!;
        await until(
          () =>
            execFileP('ip', ['netns', 'exec', ns, 'ping', '-c', '1', '-W', '0.2', ip]).then(
              () => true,
              () => undefined,
            ),
          20000,
          2,
        );
        toPing.push(performance.now() - t0);
      })();
      await until(() => runningN(id, 2), 20000);
      toRunning.push(performance.now() - t0);
      await pingDone;
      await a1.del(`/services/${id}`);
      await until(async () => ((await a1.get<Json[]>('/tasks')).length === 0 ? true : undefined), 20000, 20);
      emit({ run: i, create_to_running_ms: round(toRunning[i]!, 1), create_to_ping_ms: round(toPing[i]!, 1) });
    }
    summary.create_to_running_ms_p50 = round(percentile(toRunning, 50), 1);
    summary.create_to_ping_ms_p50 = round(percentile(toPing, 50), 1);

    const svc = (await a1.request<Json>('POST', '/services/create', spec('scale', 2, net))).data.ID as string;
    await until(() => runningN(svc, 2), 20000);
    const rss2 = rssMb(pid1);
    const cur = await a1.get<Json>(`/services/${svc}`);
    let t0 = performance.now();
    await a1.post(`/services/${svc}/update`, { ...cur.Spec, Mode: { Replicated: { Replicas: 20 } } }, { version: cur.Version.Index });
    await until(() => runningN(svc, 20), 60000);
    summary.scale_2_to_20_ms = round(performance.now() - t0, 1);
    await new Promise((r) => setTimeout(r, 2000));
    const on1 = (await runningN(svc, 20))!.filter((t) => t.NodeID === nodes.node1).length;
    summary.rss_mb_daemon_20_tasks = round(rssMb(pid1), 1);
    summary.rss_mb_daemon_per_task = round((rssMb(pid1) - rss2) / Math.max(1, on1 - 1), 2);
    const shims = (await execFileP('pgrep', ['-f', `vxshim run .*/labs/${name}/node1/`])).stdout.split('\n').filter(Boolean).map(Number);
    summary.rss_mb_per_task_extra = round(shims.reduce((s, p) => s + rssMb(p), 0) / Math.max(1, shims.length), 2);
    summary.tasks_on_node1 = on1;

    await stopDaemon(name, 'node2', 'SIGKILL');
    t0 = performance.now();
    await until(() => runningN(svc, 20, nodes.node1), 60000, 20);
    summary.reschedule_after_kill_s = round((performance.now() - t0) / 1000, 2);
    summary.targets =
      'create_to_running<=250ms create_to_ping<=300ms (docker ~1500) scale<=1000ms (docker ~3600) reschedule<=5s (docker ~19) rss<=100MB per_task<=2MB';
  } finally {
    await labDown(name);
  }
  emit(summary);
}
