// The benchmark's yardstick: a VXLAN overlay built by hand with iproute2 only, outside any lab,
// on its own router. Nothing here comes from src/, so a fault in our lab or sandbox code cannot
// hide itself by slowing the reference down too. Its layout is Docker's: per host a sandbox
// namespace with br0 + a vxlan whose UDP socket stays in the host, a container namespace behind a
// veth; the router holds its gateway addresses on veths (no bridge anywhere on the underlay).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
const ip = async (...args: string[]): Promise<void> => {
  await execFileP('ip', args);
};
const inNs = (netns: string, ...args: string[]): Promise<void> => ip('-n', netns, ...args);

export interface Reference {
  /** underlay host namespaces and their addresses */
  hosts: { netns: string; ip: string }[];
  /** container namespaces on the overlay and their overlay addresses */
  containers: { netns: string; ip: string }[];
  down(): Promise<void>;
}

/** Two hosts on two /24s joined by one router, and one overlay container on each. */
export async function buildReference(prefix: string, mtu = 1500): Promise<Reference> {
  const router = `${prefix}-router`;
  const made: string[] = [];
  const netns = async (n: string): Promise<void> => {
    await ip('netns', 'add', n);
    made.push(n);
    await inNs(n, 'link', 'set', 'lo', 'up');
  };
  const down = async (): Promise<void> => {
    // vxlans first: a VNI stays taken while its namespace is torn down
    for (const n of made) await inNs(n, 'link', 'del', 'refvx').catch(() => undefined);
    for (const n of made.reverse()) await ip('netns', 'del', n).catch(() => undefined);
  };
  const hosts = [
    { netns: `${prefix}-h1`, ip: '10.201.1.5', gw: '10.201.1.1' },
    { netns: `${prefix}-h2`, ip: '10.201.2.5', gw: '10.201.2.1' },
  ];
  const eps = [
    { ip: '10.99.0.3', mac: '02:bb:00:00:00:03' },
    { ip: '10.99.0.4', mac: '02:bb:00:00:00:04' },
  ];
  try {
    await netns(router);
    await execFileP('ip', ['netns', 'exec', router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    for (const [i, h] of hosts.entries()) {
      await netns(h.netns);
      await inNs(router, 'link', 'add', `r${i}`, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.netns);
      await inNs(router, 'addr', 'add', `${h.gw}/24`, 'dev', `r${i}`);
      await inNs(router, 'link', 'set', `r${i}`, 'up');
      await inNs(h.netns, 'addr', 'add', `${h.ip}/24`, 'dev', 'eth0');
      await inNs(h.netns, 'link', 'set', 'eth0', 'up');
      await inNs(h.netns, 'route', 'add', 'default', 'via', h.gw);
    }
    const omtu = String(mtu - 50);
    const containers: Reference['containers'] = [];
    for (const [i, h] of hosts.entries()) {
      const remote = hosts[1 - i]!;
      const me = eps[i]!;
      const peer = eps[1 - i]!;
      const sbx = `${h.netns}-sbx`;
      const c = `${h.netns}-c`;
      await netns(sbx);
      await netns(c);
      await inNs(h.netns, 'link', 'add', 'refvx', 'mtu', omtu, 'type', 'vxlan', 'id', '4999', 'dstport', '4789', 'local', h.ip, 'nolearning', 'proxy');
      await inNs(h.netns, 'link', 'set', 'refvx', 'netns', sbx);
      // no netfilter hooks on the bridge: br_netfilter is loaded on this kind of machine, and ours has them off too
      await inNs(sbx, 'link', 'add', 'br0', 'mtu', omtu, 'type', 'bridge', 'nf_call_iptables', '0', 'nf_call_ip6tables', '0', 'nf_call_arptables', '0');
      await inNs(sbx, 'addr', 'add', '10.99.0.1/24', 'dev', 'br0');
      await inNs(sbx, 'link', 'set', 'refvx', 'master', 'br0', 'up');
      await inNs(sbx, 'link', 'set', 'br0', 'up');
      await inNs(sbx, 'link', 'add', 'veth0', 'mtu', omtu, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', c);
      await inNs(sbx, 'link', 'set', 'veth0', 'master', 'br0', 'up');
      await inNs(c, 'link', 'set', 'eth0', 'address', me.mac, 'up');
      await inNs(c, 'addr', 'add', `${me.ip}/24`, 'dev', 'eth0');
      await inNs(sbx, 'neigh', 'add', peer.ip, 'lladdr', peer.mac, 'dev', 'refvx', 'nud', 'permanent');
      await execFileP('bridge', ['-n', sbx, 'fdb', 'add', peer.mac, 'dev', 'refvx', 'dst', remote.ip, 'self', 'permanent']);
      containers.push({ netns: c, ip: me.ip });
    }
    return { hosts: hosts.map((h) => ({ netns: h.netns, ip: h.ip })), containers, down };
  } catch (e) {
    await down();
    throw e;
  }
}
