// Pure layout of a lab: hosts on separate L2 networks joined by one router namespace.
// The first two L2 networks are the seed's (172.31.1.0/24 and 192.168.1.0/24).
import { InvalidArgumentError } from '../core/errors.js';

export interface L2Net {
  index: number;
  cidr: string;
  prefix: number;
  /** router address on this segment */
  gateway: string;
  /** Router interface that holds the gateway address: the host's own veth on a one-host segment;
   *  on a shared segment a veth whose peer (`<bridge>p`) is a port of `bridge`. */
  routerIf: string;
  /** bridge inside the router namespace, only on a segment several hosts share */
  bridge?: string;
}

export interface LabHost {
  /** short name, e.g. node1 */
  name: string;
  /** namespace name, e.g. vxlab-node1 */
  netns: string;
  ip: string;
  l2: number;
  /** router-side veth name */
  routerIf: string;
}

/** A host outside the swarm (no daemon): a client of published ports, on a segment of its own behind the router. */
export interface LabClient {
  netns: string;
  ip: string;
  prefix: number;
  gateway: string;
  routerIf: string;
}

export interface LabPlan {
  name: string;
  /** absent in a plan written before clients existed */
  client?: LabClient;
  /** underlay MTU of every lab link */
  mtu: number;
  router: string;
  nets: L2Net[];
  hosts: LabHost[];
}

export const LAB_NAME_RE = /^[a-z][a-z0-9]{0,11}$/;

function l2Base(j: number): [number, number, number] {
  // alternate the seed's two ranges: 172.31.1, 192.168.1, 172.31.2, 192.168.2, ...
  const k = Math.floor(j / 2) + 1;
  return j % 2 === 0 ? [172, 31, k] : [192, 168, k];
}

export function planLab(name: string, hosts = 2, l2 = Math.min(hosts, 2), mtu = 1500): LabPlan {
  if (!LAB_NAME_RE.test(name)) throw new InvalidArgumentError(`invalid lab name "${name}": 1-12 lowercase letters or digits, starting with a letter`);
  if (!Number.isInteger(hosts) || hosts < 1 || hosts > 32) throw new InvalidArgumentError(`invalid host count ${hosts}: 1..32`);
  if (!Number.isInteger(l2) || l2 < 1 || l2 > hosts || l2 > 16) throw new InvalidArgumentError(`invalid L2 network count ${l2}: 1..min(hosts, 16)`);
  if (!Number.isInteger(mtu) || mtu < 1280 || mtu > 9000) throw new InvalidArgumentError(`invalid underlay MTU ${mtu}: 1280..9000`);
  const list: LabHost[] = Array.from({ length: hosts }, (_, i) => {
    const j = i % l2;
    const [a, b, c] = l2Base(j);
    return { name: `node${i + 1}`, netns: `${name}-node${i + 1}`, ip: `${a}.${b}.${c}.${5 + Math.floor(i / l2)}`, l2: j, routerIf: `h${i + 1}` };
  });
  // The gateway address never sits on a bridge: forwarding out through a bridge device makes the
  // kernel segment VXLAN super-packets in software (docs/ARCHITECTURE.md, lab/).
  const nets: L2Net[] = Array.from({ length: l2 }, (_, j) => {
    const [a, b, c] = l2Base(j);
    const members = list.filter((h) => h.l2 === j);
    const base = { index: j, cidr: `${a}.${b}.${c}.0/24`, prefix: 24, gateway: `${a}.${b}.${c}.1` };
    return members.length === 1 ? { ...base, routerIf: members[0]!.routerIf } : { ...base, routerIf: `gw${j}`, bridge: `l2br${j}` };
  });
  // TEST-NET-3 (RFC 5737): an address no swarm network uses and no real network routes.
  const client: LabClient = { netns: `${name}-client`, ip: '203.0.113.10', prefix: 24, gateway: '203.0.113.1', routerIf: 'cl0' };
  return { name, mtu, router: `${name}-router`, nets, hosts: list, client };
}
