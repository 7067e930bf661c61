// Routing mesh benchmark (issue 15), on two lab hosts and the lab's client host, built daemons:
// iperf3 from the client through node2 (no task there) to the task on node1, against iperf3 from
// a task on node2 straight to the same task over the overlay, in one run (mesh_vs_overlay); new
// connections per second through the mesh; service create → the port answers on every node.
import { randomBytes } from 'node:crypto';
import { labDown } from '../src/lab/lab.js';
import { emit, ns, percentile, round, runningTask, sleeperSpec, taskNetns, twoNodeSwarm, until } from './util.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const IPERF_S = Number(process.env.BENCH_IPERF_S ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);

/** iperf3, one TCP stream from `clientNs` to `target`, the server in `serverNs` on any address; Gbit/s received. */
async function iperf(serverNs: string, clientNs: string, target: string, port: number): Promise<number> {
  const server = ns(serverNs, ['iperf3', '-s', '-1', '-p', String(port)], IPERF_S * 1000 + 20000);
  await new Promise((r) => setTimeout(r, 400));
  const out = await ns(clientNs, ['iperf3', '-c', target, '-p', String(port), '-t', String(IPERF_S), '-J'], IPERF_S * 1000 + 20000);
  await server.catch(() => undefined);
  return (JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e9;
}

/** New TCP connections per second from `clientNs` to target:port for about `seconds` (each accepted and closed). */
const CONNECT_LOOP = `import socket,sys,time
t=time.time()+float(sys.argv[3]);n=0
while time.time()<t:
  s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=2);s.close();n+=1
print(n/float(sys.argv[3]))`;
/** Accepts and closes connections forever. */
const ACCEPT_LOOP = `import socket
s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('0.0.0.0',80));s.listen(512)
while True:
  c,_=s.accept();c.close()`;

export async function run(): Promise<void> {
  const name = `bms${randomBytes(3).toString('hex')}`;
  const summary: Record<string, number | string> = { bench: 'mesh' };
  const killers: Array<() => void> = [];
  try {
    const { plan, a1 } = await twoNodeSwarm(name);
    const client = plan.client!.netns;
    const net = (await a1.request<Json>('POST', '/networks/create', { Name: 'bench-net', Driver: 'overlay' })).data.Id as string;
    const node2Ip = plan.hosts[1]!.ip;
    const running = (svc: string): Promise<Json> => runningTask(a1, svc);
    const netnsOf = (host: string, t: Json): string => taskNetns(name, host, t);
    const withPorts = (spec: Json, ports: Json[]): Json => ({ ...spec, EndpointSpec: { Ports: ports } });

    // The target on node1, publishing iperf3's port and an accept loop's; a peer task on node2.
    await a1.post(
      '/services/create',
      withPorts(sleeperSpec('target', 1, net, ['node.hostname==node1']), [
        { TargetPort: 5201, PublishedPort: 5201 },
        { TargetPort: 80, PublishedPort: 8000 },
      ]),
    );
    await a1.post('/services/create', sleeperSpec('peer', 1, net, ['node.hostname==node2']));
    const target = await running('target');
    const peer = await running('peer');
    const targetNs = netnsOf('node1', target);
    const targetOverlayIp = (target.NetworksAttachments as Json[]).find((n) => n.Network.ID === net)!.Addresses[0].split('/')[0] as string;
    const mesh: number[] = [];
    const overlay: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      mesh.push(await iperf(targetNs, client, node2Ip, 5201));
      overlay.push(await iperf(targetNs, netnsOf('node2', peer), targetOverlayIp, 5201));
      emit({ round: i, tcp_gbps_mesh: round(mesh[i]!, 2), tcp_gbps_overlay: round(overlay[i]!, 2) });
    }
    const best = (xs: number[]): number => Math.max(...xs);
    summary.tcp_gbps_mesh = round(best(mesh), 2);
    summary.tcp_gbps_overlay = round(best(overlay), 2);
    summary.mesh_vs_overlay = round(best(mesh) / best(overlay), 3);

    const { spawn } = await import('node:child_process');
    const acceptor = spawn('ip', ['netns', 'exec', targetNs, 'python3', '-c', ACCEPT_LOOP], { stdio: 'ignore' });
    killers.push(() => acceptor.kill('SIGKILL'));
    await new Promise((r) => setTimeout(r, 500));
    summary.connect_per_s_mesh = round(Number((await ns(client, ['python3', '-c', CONNECT_LOOP, node2Ip, '8000', '3'], 30000)).trim()), 0);

    // Service create returns → the port answers on both nodes (a listener that is up at once).
    const publishMs: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const port = 9100 + i;
      const spec = withPorts(
        {
          Name: `pub${i}`,
          TaskTemplate: { ContainerSpec: { Image: 'busybox:local', Args: ['httpd', '-f', '-p', '80', '-h', '/'], StopGracePeriod: 100_000_000 } },
          Mode: { Replicated: { Replicas: 1 } },
        },
        [{ TargetPort: 80, PublishedPort: port }],
      );
      await a1.post('/services/create', spec);
      const t0 = performance.now();
      const answers = (ip: string): Promise<boolean> =>
        ns(client, ['python3', '-c', `import socket;socket.create_connection(('${ip}',${port}),timeout=0.5).close()`], 5000).then(
          () => true,
          () => false,
        );
      await until(async () => (await answers(plan.hosts[0]!.ip)) && (await answers(node2Ip)), 30000, 5);
      publishMs.push(performance.now() - t0);
      emit({ run: i, publish_ms: round(publishMs[i]!, 1) });
    }
    summary.publish_ms = round(percentile(publishMs, 50), 1);
    summary.publish_ms_max = round(Math.max(...publishMs), 1);
    summary.targets = 'mesh_vs_overlay>=0.9 publish_ms<=500';
  } finally {
    for (const k of killers) k();
    await labDown(name);
  }
  emit(summary);
}
