// `vxswarm lab demo`: the seed's tutorial end to end on test hosts made on this machine. The seed's
// underlay (node1 172.31.1.5 and node2 192.168.1.5 on separate L2 networks behind a router), a
// daemon on each, then the seed's commands in order through our CLI or the stock docker CLI, each
// printed with its real output and checked. The lab stays up for the user to explore.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { VxError } from '../core/errors.js';
import { DEMO_IMAGE, buildBusyboxRootfs } from './image.js';
import { cliCommand, daemonSocket, labDown, labUp, startDaemon } from './lab.js';

export const DOCKER_CLI = '/usr/local/bin/docker';
const STEP_TIMEOUT_MS = 90_000;

export interface DemoOptions {
  name: string;
  cli: 'vxswarm' | 'docker';
  /** use the built CLI and daemon (dist/) rather than the TypeScript sources */
  preferBuild?: boolean;
  /** print nothing (tests and benchmarks read the result) */
  quiet?: boolean;
}

export interface DemoStep {
  node: string;
  command: string;
  output: string;
  ms: number;
}

export interface DemoResult {
  steps: DemoStep[];
  totalMs: number;
  containers: { node1: string; node2: string };
  ips: { node1: string; node2: string };
  tracerouteHop: string;
  multiSubnet: { ips: [string, string]; hops: number };
}

export async function seedDemo(o: DemoOptions): Promise<DemoResult> {
  const say = (s: string): void => {
    if (!o.quiet) process.stdout.write(s);
  };
  const t0 = Date.now();
  const steps: DemoStep[] = [];
  const sockets: Record<string, string> = {};
  const cliBase = o.cli === 'docker' ? [DOCKER_CLI] : cliCommand(o.preferBuild);
  const prog = o.cli === 'docker' ? 'docker' : 'vxswarm';

  /** Runs one CLI command on a node, prints it as the seed shows it, fails the demo if it fails. */
  const run = async (node: string, args: string[], show = args.join(' '), ours = false): Promise<string> => {
    const start = Date.now();
    // `explain` is vxswarm's own: the docker CLI has no such command.
    const [cmd, ...pre] = (ours ? cliCommand(o.preferBuild) : cliBase) as [string, ...string[]];
    const progName = ours ? 'vxswarm' : prog;
    const env = { ...process.env, DOCKER_HOST: `unix://${sockets[node]}`, VXSWARM_HOST: `unix://${sockets[node]}` };
    const r = await new Promise<{ code: number; out: string }>((resolve) => {
      const p = spawn(cmd, [...pre, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      // No step of the tutorial takes long; one that hangs fails the demo instead of stalling it.
      const timer = setTimeout(() => p.kill('SIGKILL'), STEP_TIMEOUT_MS);
      p.on('close', () => clearTimeout(timer));
      let out = '';
      p.stdout.on('data', (c: Buffer) => (out += c.toString()));
      p.stderr.on('data', (c: Buffer) => (out += c.toString()));
      p.on('close', (code) => resolve({ code: code ?? 1, out }));
    });
    say(`\n[${node}] $ ${progName} ${show}\n${r.out}`);
    steps.push({ node, command: `${progName} ${show}`, output: r.out, ms: Date.now() - start });
    if (r.code !== 0) throw new VxError(`step failed on ${node}: ${progName} ${show} (exit ${r.code})`, 500);
    return r.out;
  };
  const check = (ok: boolean, what: string): void => {
    if (!ok) throw new VxError(`demo check failed: ${what}`, 500);
    say(`  ✔ ${what}\n`);
  };

  await labDown(o.name);
  const plan = await labUp(o.name, 2);
  const [n1, n2] = plan.hosts as [(typeof plan.hosts)[0], (typeof plan.hosts)[0]];
  say(`lab ${o.name}: node1 ${n1.ip} on ${plan.nets[0]!.cidr}, node2 ${n2.ip} on ${plan.nets[1]!.cidr}, router ${plan.router} between them\n`);
  await Promise.all([n1, n2].map((h) => startDaemon(o.name, h.name, { preferBuild: !!o.preferBuild })));
  for (const h of [n1, n2]) sockets[h.name] = daemonSocket(o.name, h.name);

  // This machine reaches no registry: both nodes get the demo image from a local tarball.
  const tar = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vxswarm-demo-')), 'rootfs.tar');
  try {
    buildBusyboxRootfs(tar);
    for (const h of ['node1', 'node2'])
      await run(h, ['import', tar, DEMO_IMAGE], `import ${tar} ${DEMO_IMAGE}   # busybox-static as the image (no registry here)`);
  } finally {
    fs.rmSync(path.dirname(tar), { recursive: true, force: true });
  }

  // 1.1 the swarm
  const init = await run('node1', ['swarm', 'init']);
  const token = /--token (SWMTKN-1-\w+-\w+)/.exec(init)?.[1];
  check(!!token && init.includes(`${n1.ip}:2377`), `swarm init printed the join command for ${n1.ip}:2377`);
  await run('node2', ['swarm', 'join', '--token', token!, `${n1.ip}:2377`]);

  // 1.2 the overlay network; node2 does not have it yet
  await run('node1', ['network', 'create', '-d', 'overlay', 'uber-net']);
  await run('node1', ['network', 'ls']);
  const ls2 = await run('node2', ['network', 'ls']);
  check(!/\buber-net\b/.test(ls2), 'uber-net is not on node2 yet: overlays reach a worker only with its first task');

  // 1.3 the service
  await run('node1', ['service', 'create', '--name', 'test', '--network', 'uber-net', '--replicas', '2', DEMO_IMAGE, 'sleep', 'infinity']);
  const ps = await run('node1', ['service', 'ps', 'test']);
  check(/test\.1\s.*Running/.test(ps) && /test\.2\s.*Running/.test(ps) && /node1/.test(ps) && /node2/.test(ps), 'one task running on each node');
  const ls2b = await run('node2', ['network', 'ls']);
  check(/\buber-net\b/.test(ls2b), 'uber-net is on node2 now');

  // 1.4 test the overlay
  const inspect = await run('node1', ['network', 'inspect', 'uber-net']);
  check(/"Subnet": "10\.0\.0\.0\/24"/.test(inspect) && /"Gateway": "10\.0\.0\.1"/.test(inspect), 'uber-net is 10.0.0.0/24, gateway 10.0.0.1');
  const containers = { node1: '', node2: '' };
  const ips = { node1: '', node2: '' };
  for (const h of ['node1', 'node2'] as const) {
    const out = await run(h, ['ps']);
    containers[h] = /^([0-9a-f]{12})\s/m.exec(out)?.[1] ?? '';
    check(!!containers[h], `a container of test runs on ${h}`);
    const fmt = '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}';
    ips[h] = (await run(h, ['inspect', `--format=${fmt}`, containers[h]], `inspect --format='${fmt}' ${containers[h]}`)).trim();
    check(/^10\.0\.0\.\d+$/.test(ips[h]), `its overlay address is ${ips[h]}`);
  }
  const ping = await run('node1', ['exec', containers.node1, 'ping', '-c', '3', ips.node2]);
  check(/ 0% packet loss/.test(ping), `the container on node1 pings ${ips.node2} on node2 with 0% loss`);
  const trace = await run('node1', ['exec', containers.node1, 'traceroute', ips.node2]);
  const hops = trace.split('\n').filter((l) => /^\s*\d+\s/.test(l));
  const hop = /^\s*1\s+(\S+)\s+\(/.exec(hops[0] ?? '')?.[1] ?? '';
  check(hops.length === 1 && /^test\.\d+\.\w{25}\.uber-net$/.test(hop), `traceroute: one hop, ${hop}`);
  // The hop traceroute sees as one, as the kernels of both nodes hold it (issue 19).
  const why = await run('node1', ['explain', 'path', containers.node1, ips.node2], undefined, true);
  check(
    /\[node1\] FDB: .*\n\s+entry: fdb \S+ dev vxlan0 dst /.test(why) && /\[node2\] container: .*delivered/.test(why),
    'explain path: every hop from the kernel, delivered',
  );

  // Layer 3 inside one overlay: two subnets, one bridge each, routed in the network's sandbox.
  // The seed's second subnet, 11.1.1.0/24, is a public range (someone else's addresses); we use
  // private ones. Each /30 holds a single task address, so the two replicas land in different subnets.
  await run('node1', ['network', 'create', '-d', 'overlay', '--subnet', '10.1.1.0/30', '--subnet', '10.1.2.0/30', 'prod-net']);
  // dnsrr: no VIP, so the two addresses of the two /30s are the two tasks'.
  await run('node1', [
    'service',
    'create',
    '--name',
    'prod',
    '--endpoint-mode',
    'dnsrr',
    '--network',
    'prod-net',
    '--replicas',
    '2',
    DEMO_IMAGE,
    'sleep',
    'infinity',
  ]);
  const prodIps: string[] = [];
  const prodContainers: Record<string, string> = {};
  for (const h of ['node1', 'node2']) {
    const id = (await run(h, ['ps', '-q', '--filter', 'name=prod'])).trim().split('\n')[0]!;
    prodContainers[h] = id;
    prodIps.push((await run(h, ['inspect', '--format={{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', id])).trim());
  }
  check(new Set(prodIps.map((ip) => ip.split('.').slice(0, 3).join('.'))).size === 2, `prod's tasks are in two subnets: ${prodIps.join(' and ')}`);
  const [a, b] = prodIps as [string, string];
  const from = a.startsWith('10.1.1.') ? 'node1' : 'node2';
  const to = from === 'node1' ? b : a;
  const mping = await run(from, ['exec', prodContainers[from]!, 'ping', '-c', '2', to]);
  check(/ 0% packet loss/.test(mping), `10.1.1.0/30 reaches 10.1.2.0/30 across hosts`);
  const mtrace = await run(from, ['exec', prodContainers[from]!, 'traceroute', '-n', to]);
  const mhops = mtrace.split('\n').filter((l) => /^\s*\d+\s/.test(l)).length;
  check(mhops === 2, 'routed through the sandbox: two hops (the gateway, then the task)');

  const totalMs = Date.now() - t0;
  const nameOpt = o.name === 'vxlab' ? '' : ` --name ${o.name}`;
  say(
    `\nThe tutorial ran in ${(totalMs / 1000).toFixed(1)} s. The lab stays up; explore it:\n` +
      `  vxswarm -H unix://${sockets.node1} ps                 # or: DOCKER_HOST=unix://${sockets.node1} docker ps\n` +
      `  vxswarm -H unix://${sockets.node1} exec -it ${containers.node1} sh\n` +
      `  vxswarm lab exec${nameOpt} node1 -- ip -d link          # the node's own namespace\n` +
      `Remove everything with: vxswarm lab down${nameOpt}\n`,
  );
  return { steps, totalMs, containers, ips, tracerouteHop: hop, multiSubnet: { ips: [a, b], hops: mhops } };
}
