// `vxswarm lab demo`: the seed's underlay, then one overlay (VNI 4097, 10.0.0.0/24)
// spanning node1 and node2 with an endpoint on each, proven by ping and traceroute.
// The swarm control plane will drive these same steps once it exists.
import { execFileSync } from 'node:child_process';
import { createNetns } from '../kernel/netns.js';
import { OverlayHost } from '../overlay/host.js';
import { labDown, labUp } from './lab.js';

function show(title: string, cmd: string[]): string {
  process.stdout.write(`\n$ ${title}\n`);
  let out: string;
  try {
    out = execFileSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const ee = e as { stdout?: string; stderr?: string };
    out = `${ee.stdout ?? ''}${ee.stderr ?? ''}`;
    process.stdout.write(out);
    throw new Error(`step failed: ${title}`);
  }
  process.stdout.write(out);
  return out;
}

export async function dataplaneDemo(name: string): Promise<void> {
  await labDown(name);
  const plan = await labUp(name, 2);
  const [n1, n2] = plan.hosts as [(typeof plan.hosts)[0], (typeof plan.hosts)[0]];
  process.stdout.write(`lab ${name}: router ${plan.router}; ${n1.name} ${n1.ip} on ${plan.nets[0]!.cidr}; ${n2.name} ${n2.ip} on ${plan.nets[1]!.cidr}\n`);
  // No reconcile timer: this process exits and leaves the kernel state for the user to explore.
  const hosts = [n1, n2].map((h) => new OverlayHost({ prefix: `${name}-${h.name}-`, underlayIp: h.ip, hostNetns: h.netns, reconcileMs: 0 }));
  await Promise.all(hosts.map((h) => h.start()));
  const spec = { id: 'uber-net', subnets: [{ subnet: '10.0.0.0/24', gateway: '10.0.0.1', vni: 4097 }] };
  const eps = [];
  for (const [i, h] of hosts.entries()) {
    await h.createNetwork(spec);
    const c = `${name}-c${i + 1}`;
    createNetns(c);
    eps.push(await h.attach('uber-net', { id: `c${i + 1}`, netns: c, ip: `10.0.0.${3 + i}` }));
  }
  const vteps = [n1.ip, n2.ip];
  for (const [i, h] of hosts.entries()) {
    const other = eps[1 - i]!;
    await h.setPeers('uber-net', [{ ip: other.ip, mac: other.mac, vtep: vteps[1 - i]! }]);
  }
  show(`ip netns exec ${name}-c1 ip -br addr   # container on node1`, ['ip', 'netns', 'exec', `${name}-c1`, 'ip', '-br', 'addr']);
  const sbx = hosts[0]!.network('uber-net').sandbox;
  show(`ip netns exec ${sbx} bridge fdb show dev vxlan0 | grep dst   # node1's VTEP`, [
    'sh',
    '-c',
    `ip netns exec ${sbx} bridge fdb show dev vxlan0 | grep dst`,
  ]);
  show(`ip netns exec ${sbx} ip neigh show dev vxlan0`, ['ip', 'netns', 'exec', sbx, 'ip', 'neigh', 'show', 'dev', 'vxlan0']);
  show(`ping -c 3 10.0.0.4   # from the container on node1`, ['ip', 'netns', 'exec', `${name}-c1`, 'ping', '-c', '3', '-W', '2', '10.0.0.4']);
  show(`traceroute -n 10.0.0.4`, ['ip', 'netns', 'exec', `${name}-c1`, 'traceroute', '-n', '-w', '2', '-q', '1', '10.0.0.4']);
  process.stdout.write(
    `\nThe lab stays up: try  ip netns exec ${name}-c2 ping 10.0.0.3  or  vxswarm lab exec node1 -- ip addr\nRemove it with: vxswarm lab down${name === 'vxlab' ? '' : ` --name ${name}`}\n`,
  );
}
