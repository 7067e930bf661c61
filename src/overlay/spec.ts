// What callers ask the data plane for, and the checks that run before any kernel call,
// so bad input changes nothing.
import { InvalidArgumentError } from '../core/errors.js';
import { isMac } from '../core/ids.js';
import { broadcastOf, contains, overlaps, parseCidr, parseIp, type Cidr } from '../core/ipv4.js';

export const VNI_MIN = 1;
export const VNI_MAX = 0xffffff;
export const VXLAN_OVERHEAD = 50;
export const DEFAULT_VXLAN_PORT = 4789;
export const MIN_MTU = 68;

export interface SubnetSpec {
  /** e.g. "10.0.0.0/24" */
  subnet: string;
  /** e.g. "10.0.0.1" */
  gateway: string;
  vni: number;
}

export interface NetworkSpec {
  id: string;
  subnets: SubnetSpec[];
  /** Container-side MTU (option com.docker.network.driver.mtu); default underlay MTU − 50. */
  mtu?: number;
  /** VXLAN UDP port; default 4789. */
  port?: number;
  /** Its VXLAN rides the node's WireGuard tunnel (--opt encrypted). */
  encrypted?: boolean;
}

export interface EndpointSpec {
  id: string;
  /** Name of the container's network namespace under /run/netns. */
  netns: string;
  ip: string;
  /** Interface name inside the container; default eth0. */
  ifname?: string;
  /** Default: a random locally administered MAC. */
  mac?: string;
  /** Install a default route via the gateway when the container has none (default true). */
  defaultRoute?: boolean;
}

export interface PeerSpec {
  ip: string;
  mac: string;
  /** Underlay address of the host that holds the endpoint. */
  vtep: string;
}

export interface ParsedSubnet {
  index: number;
  cidr: Cidr;
  text: string;
  gateway: number;
  vni: number;
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function checkId(kind: string, id: string): void {
  if (typeof id !== 'string' || !ID_RE.test(id)) throw new InvalidArgumentError(`invalid ${kind} ID "${id}": use 1-64 letters, digits, "_", "." or "-"`);
}

export function checkVni(vni: number): void {
  if (!Number.isInteger(vni) || vni < VNI_MIN || vni > VNI_MAX)
    throw new InvalidArgumentError(`invalid VNI ${vni}: must be an integer in ${VNI_MIN}..${VNI_MAX}`);
}

export function parseNetworkSpec(spec: NetworkSpec): ParsedSubnet[] {
  checkId('network', spec.id);
  if (!Array.isArray(spec.subnets) || spec.subnets.length === 0) throw new InvalidArgumentError(`network ${spec.id}: at least one subnet is required`);
  if (spec.subnets.length > 16) throw new InvalidArgumentError(`network ${spec.id}: at most 16 subnets`);
  if (spec.mtu !== undefined && (!Number.isInteger(spec.mtu) || spec.mtu < MIN_MTU || spec.mtu > 65535)) {
    throw new InvalidArgumentError(`network ${spec.id}: invalid MTU ${spec.mtu}: must be an integer in ${MIN_MTU}..65535`);
  }
  if (spec.port !== undefined && (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65535))
    throw new InvalidArgumentError(`network ${spec.id}: invalid VXLAN port ${spec.port}`);
  const out: ParsedSubnet[] = [];
  spec.subnets.forEach((s, index) => {
    const cidr = parseCidr(s.subnet);
    if (cidr.prefix > 30) throw new InvalidArgumentError(`subnet ${s.subnet}: too small, need at most /30`);
    const gateway = parseIp(s.gateway);
    if (!contains(cidr, gateway)) throw new InvalidArgumentError(`gateway ${s.gateway} is outside subnet ${s.subnet}`);
    if (gateway === cidr.network || gateway === broadcastOf(cidr))
      throw new InvalidArgumentError(`gateway ${s.gateway} is the network or broadcast address of ${s.subnet}`);
    checkVni(s.vni);
    for (const o of out) {
      if (overlaps(o.cidr, cidr)) throw new InvalidArgumentError(`subnets ${o.text} and ${s.subnet} overlap`);
      if (o.vni === s.vni) throw new InvalidArgumentError(`VNI ${s.vni} is used by two subnets`);
    }
    out.push({ index, cidr, text: s.subnet, gateway, vni: s.vni });
  });
  return out;
}

/** The subnet an address belongs to, or an error naming the network's subnets. */
export function subnetFor(subnets: ParsedSubnet[], ipText: string, what: string): ParsedSubnet {
  const ip = parseIp(ipText);
  const s = subnets.find((x) => contains(x.cidr, ip));
  if (!s) throw new InvalidArgumentError(`${what} ${ipText} is outside the network's subnets (${subnets.map((x) => x.text).join(', ')})`);
  if (ip === s.cidr.network || ip === broadcastOf(s.cidr)) throw new InvalidArgumentError(`${what} ${ipText} is the network or broadcast address of ${s.text}`);
  if (ip === s.gateway) throw new InvalidArgumentError(`${what} ${ipText} is the gateway of ${s.text}`);
  return s;
}

export function checkEndpointSpec(ep: EndpointSpec): void {
  checkId('endpoint', ep.id);
  if (typeof ep.netns !== 'string' || ep.netns.length === 0) throw new InvalidArgumentError(`endpoint ${ep.id}: a container namespace is required`);
  if (ep.ifname !== undefined && !/^[A-Za-z0-9_.-]{1,15}$/.test(ep.ifname))
    throw new InvalidArgumentError(`endpoint ${ep.id}: invalid interface name "${ep.ifname}"`);
  if (ep.mac !== undefined) checkUnicastMac(ep.mac, `endpoint ${ep.id}`);
}

export function checkPeerSpec(p: PeerSpec): void {
  parseIp(p.vtep);
  checkUnicastMac(p.mac, `peer ${p.ip}`);
}

function checkUnicastMac(mac: string, what: string): void {
  if (typeof mac !== 'string' || !isMac(mac)) throw new InvalidArgumentError(`${what}: invalid MAC "${mac}" (expected lowercase xx:xx:xx:xx:xx:xx)`);
  if (parseInt(mac.slice(0, 2), 16) & 1) throw new InvalidArgumentError(`${what}: MAC ${mac} is multicast`);
}
