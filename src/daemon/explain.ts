// `vxswarm explain path`: the hops a packet takes from a container to an address, read from the
// live kernel state of every node involved (their topologies), each with the device and the exact
// entry used. The first hop that is missing or wrong is named as the fault: a neighbour or FDB
// entry gossip asked for and the kernel lacks, an FDB entry pointing at another VTEP, a VNI that
// differs between the two ends, an MTU larger than the path carries, a stale gossip entry.
import { contains, parseCidr, parseIp } from '../core/ipv4.js';
import { dnatText } from '../kernel/nftnl.js';
import type { NetworkView } from '../overlay/network.js';
import { WIREGUARD_OVERHEAD, WIREGUARD_PORT } from '../overlay/tunnel.js';
import { isTopology, type ClusterTopology, type NodeTopology } from './topology.js';

/** VXLAN over IPv4 and UDP adds this much to every frame. */
const VXLAN_OVERHEAD = 50;

export interface Hop {
  node: string;
  what: string;
  detail: string;
  /** the kernel entry (or rule) the packet uses here */
  entry?: string;
  fault?: string;
}

export interface Explanation {
  from: string;
  to: string;
  /** the address the packet is sent to after a VIP's choice */
  target: string;
  hops: Hop[];
  /** the first fault on the path, if any */
  fault?: string;
  delivered: boolean;
}

export interface ExplainInput {
  topology: ClusterTopology;
  /** the container, on the first node of the topology */
  container: string;
  /** an address, or a name as the container's resolver would answer it */
  target: string;
  resolve(name: string, networkIds: string[]): string | undefined;
  /** the container's VIP table: VIP → backends */
  vips(netns: string): Map<string, string[]> | undefined;
}

type Net = NodeTopology['networks'][number];
type Ep = NetworkView['endpoints'][number];

const inSubnet = (ip: string, subnet: string): boolean => {
  try {
    return contains(parseCidr(subnet), parseIp(ip));
  } catch {
    return false;
  }
};
const isIp = (s: string): boolean => /^\d{1,3}(\.\d{1,3}){3}$/.test(s);

export function explainPath(x: ExplainInput): Explanation {
  const self = x.topology.nodes[0];
  const hops: Hop[] = [];
  const out = (target: string): Explanation => {
    const fault = hops.find((h) => h.fault)?.fault;
    return { from: x.container, to: x.target, target, hops, ...(fault ? { fault } : {}), delivered: !fault };
  };
  const fail = (node: string, what: string, fault: string, detail = ''): void => void hops.push({ node, what, detail, fault });
  if (!isTopology(self)) {
    fail('?', 'this node', 'this node has no overlay state (not in a swarm)');
    return out(x.target);
  }
  const port = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d+)(?:\/(tcp|udp))?$/.exec(x.target);
  if (port) {
    return out(published(x.topology, hops, port[1]!, `${port[3] ?? 'tcp'}/${port[2]}`) ?? x.target);
  }
  const here = self.node.hostname;
  const c = self.containers.find((k) => k.id === x.container || k.name === x.container || (x.container.length >= 4 && k.id.startsWith(x.container)));
  if (!c) {
    fail(here, 'container', `no container ${x.container} on ${here}`);
    return out(x.target);
  }
  const mine = self.networks.flatMap((n) => n.endpoints.filter((e) => e.netns === c.netns).map((e) => ({ net: n, ep: e })));
  // The name, as the container's resolver answers it.
  let dest = x.target;
  if (!isIp(dest)) {
    const ip = x.resolve(
      dest,
      mine.map((m) => m.net.id),
    );
    if (!ip) {
      fail(here, 'DNS', `${dest} does not resolve on the networks of ${c.name}`);
      return out(x.target);
    }
    hops.push({ node: here, what: 'DNS', detail: `${dest} resolves to ${ip} (the embedded resolver at 127.0.0.11 in ${c.name})` });
    dest = ip;
  }
  // A VIP: the container's own nftables choice, made once per connection.
  const backends = x.vips(c.netns)?.get(dest);
  if (backends) {
    if (!backends.length) {
      fail(here, 'VIP', `VIP ${dest} has no backend: no task of its service is running (or healthy)`, `table ip vxswarm in ${c.netns}`);
      return out(dest);
    }
    hops.push({
      node: here,
      what: 'VIP',
      detail: `${dest} is a service VIP: each new connection is DNATed to one of ${backends.join(', ')}; following ${backends[0]}`,
      entry: `nft table ip vxswarm (netns ${c.netns}): map vips { ${dest} : goto vip_${dest.replace(/\./g, '_')} }, ${dnatText(backends)}`,
    });
    dest = backends[0]!;
  }
  walk(x.topology, hops, { node: self, name: c.name, netns: c.netns }, dest);
  return out(dest);
}

/**
 * A connection to a published port on a node's address: the node's table sends it to its ingress
 * sandbox, the sandbox's picks a task per connection, and the ingress overlay carries it there;
 * the task sees the client's own address (no source NAT, unlike Docker's mesh).
 */
function published(topology: ClusterTopology, hops: Hop[], addr: string, key: string): string | undefined {
  const n = topology.nodes.find((k) => k.node.addr === addr);
  if (!n) return void hops.push({ node: '?', what: 'published port', detail: '', fault: `${addr} is no node of the swarm` });
  const here = n.node.hostname;
  if (!isTopology(n)) return void hops.push({ node: here, what: 'published port', detail: '', fault: `could not read ${here}'s kernel state: ${n.error}` });
  const m = n.mesh;
  const rule = m?.node[key];
  if (!m || !rule)
    return void hops.push({
      node: here,
      what: 'published port',
      detail: '',
      fault: `${key} is not published on ${here}: no rule for it in table ip vxswarm_ports`,
    });
  hops.push({
    node: here,
    what: 'published port',
    detail: `a connection to ${addr}:${key.split('/')[1]}/${key.split('/')[0]} is sent to the ingress sandbox ${rule.to[0]} on docker_gwbridge`,
    entry: `nft table ip vxswarm_ports: prerouting fib daddr type local, ${key.replace('/', ' . ')} → dnat to ${rule.to.join(', ')}:${rule.port}`,
  });
  const sb = m.sbox[key];
  if (!sb)
    return void hops.push({ node: here, what: 'ingress sandbox', detail: m.sboxNetns, fault: `the ingress sandbox ${m.sboxNetns} has no rule for ${key}` });
  if (!sb.to.length)
    return void hops.push({
      node: here,
      what: 'ingress sandbox',
      detail: m.sboxNetns,
      fault: `no task of the service publishing ${key} is running (or healthy): nothing to send it to`,
    });
  hops.push({
    node: here,
    what: 'ingress sandbox',
    detail: `${m.sboxNetns} picks a task per connection among ${sb.to.join(', ')} (port ${sb.port}); following ${sb.to[0]}; the client's address is kept`,
    entry: `nft table ip vxswarm_ports (netns ${m.sboxNetns}): iifname gw0, ${key.replace('/', ' . ')} → ${dnatText(sb.to, sb.port)}`,
  });
  walk(topology, hops, { node: n, name: 'the ingress sandbox', netns: m.sboxNetns }, sb.to[0]!);
  return sb.to[0];
}

/**
 * The overlay part of the path, from a namespace on `src.node` (a container, or an ingress sandbox)
 * to `dest`, hop by hop; a fault is pushed as a hop with `fault` set, and the walk stops there when
 * nothing after it could be true.
 */
function walk(topology: ClusterTopology, hops: Hop[], from: { node: NodeTopology; name: string; netns: string }, dest: string): void {
  const self = from.node;
  const here = self.node.hostname;
  const c = { name: from.name, netns: from.netns };
  const fail = (node: string, what: string, fault: string, detail = ''): void => void hops.push({ node, what, detail, fault });
  const mine = self.networks.flatMap((n) => n.endpoints.filter((e) => e.netns === c.netns).map((e) => ({ net: n, ep: e })));
  const m = mine.find((k) => k.net.subnets.some((s) => inSubnet(dest, s.subnet)));
  if (!m) {
    hops.push({
      node: here,
      what: 'route',
      detail: `${dest} is on none of ${c.name}'s overlay networks (${mine.map((k) => k.net.name).join(', ') || 'none'}): it leaves by the container's default route (docker_gwbridge, masqueraded), not the overlay`,
    });
    return;
  }
  const { net, ep } = m;
  const sub = net.subnets.find((s) => inSubnet(dest, s.subnet))!;
  hops.push({
    node: here,
    what: 'container',
    detail: `${c.name}: ${ep.ifname} ${ep.ip}/${sub.subnet.split('/')[1]} mac ${ep.mac} mtu ${ep.mtu} (netns ${c.netns}); ${dest} is on-link: the container ARPs for it`,
  });
  if (!vethHop(hops, here, net, ep, sub)) return;
  // Delivered on this node: the bridge forwards port to port.
  const local = net.endpoints.find((e) => e.ip === dest);
  if (local) {
    const tc = self.containers.find((k) => k.netns === local.netns);
    hops.push({
      node: here,
      what: 'bridge',
      detail: `${sub.bridge?.name} forwards to ${local.veth} (the target is on this node)`,
      entry: `fdb ${local.mac} on ${local.veth} (learned)`,
    });
    arrive(hops, here, net, local, tc?.name, sub);
    return;
  }
  const peer = net.peers.find((p) => p.ip === dest);
  const owner = net.sources[dest];
  if (!peer) {
    const holder = topology.nodes.filter(isTopology).find((n) => n.networks.some((k) => k.id === net.id && k.endpoints.some((e) => e.ip === dest)));
    fail(
      here,
      'gossip',
      holder
        ? `${holder.node.hostname} has ${dest} on ${net.name}, but its peer entry has not reached ${here}: no neighbour or FDB entry can be made`
        : `no endpoint ${dest} on network ${net.name} on any node: nothing answers it`,
    );
    return;
  }
  const src = owner ? `gossip entry ${owner.key} in overlay_peer_table, written by ${owner.ownerHost}` : 'gossip';
  const vx = sub.vxlan;
  if (!vx) {
    fail(here, 'VTEP', `the sandbox ${net.sandbox} has no VXLAN device for ${sub.subnet}`);
    return;
  }
  if (peer.neigh === 'ok')
    hops.push({
      node: here,
      what: 'neighbour',
      detail: `${vx.name} answers the ARP for ${dest} itself (proxy)`,
      entry: `neigh ${dest} lladdr ${peer.mac} PERMANENT dev ${vx.name} (${src})`,
    });
  else
    fail(
      here,
      'neighbour',
      peer.neigh === 'missing'
        ? `missing neighbour entry ${dest} lladdr ${peer.mac} on ${vx.name} in ${net.sandbox} (${src} asks for it): the ARP goes unanswered`
        : `neighbour entry ${dest} on ${vx.name} says ${peer.neighMac}, ${src} says ${peer.mac}`,
    );
  if (peer.fdb === 'ok')
    hops.push({
      node: here,
      what: 'FDB',
      detail: `${sub.bridge?.name} sends ${peer.mac} to ${vx.name}`,
      entry: `fdb ${peer.mac} dev ${vx.name} dst ${peer.vtep} self permanent (${src})`,
    });
  else
    fail(
      here,
      'FDB',
      peer.fdb === 'missing'
        ? `missing FDB entry ${peer.mac} dst ${peer.vtep} on ${vx.name} in ${net.sandbox} (${src} asks for it): the frame is flooded to no VTEP and lost`
        : `FDB entry ${peer.mac} on ${vx.name} points at ${peer.fdbDst?.join(', ')}, ${src} says ${peer.vtep}`,
    );
  const u = self.underlay;
  hops.push({
    node: here,
    what: 'VTEP',
    detail: `${vx.name} VNI ${vx.vni} wraps the frame in UDP ${vx.local ?? u?.ip}:${vx.port} → ${peer.vtep}:${vx.port}`,
    ...(vx.vni !== sub.wantVni ? { fault: `${vx.name} carries VNI ${vx.vni}, the network's spec says ${sub.wantVni}` } : {}),
  });
  const overhead = VXLAN_OVERHEAD + (net.encrypted ? WIREGUARD_OVERHEAD : 0);
  if (u && u.mtu - overhead < ep.mtu)
    fail(
      here,
      'MTU',
      `${c.name}'s ${ep.ifname} has MTU ${ep.mtu}, more than the underlay ${u.device} (${u.mtu}) carries after ${net.encrypted ? `VXLAN's and WireGuard's ${overhead}` : `VXLAN's ${overhead}`} bytes`,
    );
  // An encrypted network's VTEP address is the peer's tunnel address: WireGuard carries the datagram.
  const remote = topology.nodes.find((n) => n.node.addr === peer.vtep || (net.encrypted && n.node.tunnelIp === peer.vtep));
  const wire = net.encrypted ? remote?.node.addr : peer.vtep;
  if (net.encrypted)
    hops.push({
      node: here,
      what: 'WireGuard',
      detail: `vxwg0 ${self.node.tunnelIp ?? '?'} → ${peer.vtep}: the VXLAN datagram is encrypted to ${wire ?? '?'}:${WIREGUARD_PORT}; only WireGuard's UDP is on the wire`,
      ...(self.node.tunnelIp ? {} : { fault: `${here} has no WireGuard tunnel up` }),
    });
  if (u && wire) {
    const sameNet = u.prefix > 0 && inSubnet(wire, `${u.ip}/${u.prefix}`);
    hops.push({
      node: here,
      what: 'underlay',
      detail: `${u.device} ${u.ip}/${u.prefix} → ${wire}${sameNet ? ' on the same underlay network' : u.gateway ? ` via the router ${u.gateway}` : ' (no route off the underlay subnet)'}`,
      ...(!sameNet && !u.gateway ? { fault: `${here} has no route to ${wire}` } : {}),
    });
  }
  if (!remote) {
    fail(here, 'remote', `no node of the swarm has the VTEP address ${peer.vtep}: the FDB entry points nowhere`);
    return;
  }
  const there = remote.node.hostname;
  if (!isTopology(remote)) {
    fail(there, 'remote', `could not read ${there}'s kernel state: ${remote.error}`);
    return;
  }
  const rnet = remote.networks.find((k) => k.id === net.id);
  const rsub = rnet?.subnets.find((s) => s.subnet === sub.subnet);
  if (!rnet || !rsub?.vxlan) {
    fail(there, 'VTEP', `${there} has no sandbox with a VXLAN device for ${net.name} ${sub.subnet}: the datagram is dropped`);
    return;
  }
  hops.push({
    node: there,
    what: 'VTEP',
    detail: `${rsub.vxlan.name} VNI ${rsub.vxlan.vni} on ${rsub.vxlan.local ?? remote.underlay?.ip}:${rsub.vxlan.port} takes the datagram off and hands the frame to ${rsub.bridge?.name} (sandbox ${rnet.sandbox})`,
    ...(rsub.vxlan.vni !== vx.vni ? { fault: `VNI differs: ${here} sends ${vx.vni}, ${there}'s ${rsub.vxlan.name} listens for ${rsub.vxlan.vni}` } : {}),
  });
  const target = rnet.endpoints.find((e) => e.ip === dest);
  if (!target) {
    fail(there, 'endpoint', `${there} has no endpoint ${dest} on ${net.name}: ${src} is stale`);
    return;
  }
  if (target.mac !== peer.mac) fail(there, 'endpoint', `${dest} on ${there} has MAC ${target.mac}, ${src} says ${peer.mac}`);
  const tc = remote.containers.find((k) => k.netns === target.netns);
  hops.push({
    node: there,
    what: 'bridge',
    detail: `${rsub.bridge?.name} forwards ${target.mac} to ${target.veth}`,
    entry: `fdb ${target.mac} on ${target.veth}`,
  });
  arrive(hops, there, rnet, target, tc?.name, rsub);
}

/** The container's veth into its network's sandbox; false when it is not plugged where it should be. */
function vethHop(hops: Hop[], node: string, net: Net, ep: Ep, sub: Net['subnets'][number]): boolean {
  const br = sub.bridge?.name ?? 'br?';
  if (!ep.present || ep.vethMaster !== br || !ep.vethUp) {
    hops.push({
      node,
      what: 'veth',
      detail: `${ep.ifname} ↔ ${ep.veth} in ${net.sandbox}`,
      fault: !ep.present
        ? `the veth ${ep.veth} is missing from ${net.sandbox}`
        : ep.vethMaster !== br
          ? `${ep.veth} is not plugged into ${br}`
          : `${ep.veth} is down`,
    });
    return false;
  }
  hops.push({ node, what: 'veth', detail: `${ep.ifname} ↔ ${ep.veth} in sandbox ${net.sandbox}, master ${br} (up, mtu ${ep.vethMtu})` });
  return true;
}

function arrive(hops: Hop[], node: string, net: Net, ep: Ep, name: string | undefined, sub: Net['subnets'][number]): void {
  if (!vethHop(hops, node, net, ep, sub)) return;
  hops.push({ node, what: 'container', detail: `${name ?? ep.netns}: ${ep.ifname} ${ep.ip} mac ${ep.mac}: delivered` });
}

/** The explanation as `vxswarm explain path` prints it. */
export function formatExplanation(e: Explanation): string {
  const lines = [`explain path ${e.from} → ${e.to}${e.target !== e.to ? ` (${e.target})` : ''}`];
  e.hops.forEach((h, i) => {
    lines.push(`${String(i + 1).padStart(2)}. [${h.node}] ${h.what}: ${h.detail}`);
    if (h.entry) lines.push(`      entry: ${h.entry}`);
    if (h.fault) lines.push(`      FAULT: ${h.fault}`);
  });
  lines.push(e.fault ? `result: not delivered: ${e.fault}` : 'result: delivered');
  return `${lines.join('\n')}\n`;
}
