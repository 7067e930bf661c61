// Address and VNI allocation, as pure functions over what is already taken. The manager
// calls them inside a store transaction, so a decision and its record land together.
import { InvalidArgumentError } from '../../core/errors.js';
import { broadcastOf, contains, formatCidr, formatIp, overlaps, parseCidr, parseIp, sizeOf, type Cidr } from '../../core/ipv4.js';
import { VNI_MAX } from '../../overlay/spec.js';
import type { IpamConfig } from './types.js';

export const DEFAULT_ADDR_POOL = ['10.0.0.0/8'];
export const DEFAULT_SUBNET_SIZE = 24;
/** Auto-assigned VNIs start here (below 4096 is the 802.1Q range), as in Docker. */
export const VNI_START = 4096;

export interface SubnetRequest {
  subnet?: string;
  gateway?: string;
  ipRange?: string;
}

export function checkPool(pool: string[], size: number): void {
  if (!Number.isInteger(size) || size < 8 || size > 29) throw new InvalidArgumentError(`invalid default address pool mask length ${size}: must be 8..29`);
  if (pool.length === 0) throw new InvalidArgumentError('the default address pool is empty');
  const cidrs = pool.map(parseCidr);
  cidrs.forEach((c, i) => {
    if (c.prefix > size) throw new InvalidArgumentError(`default address pool ${pool[i]} is smaller than the subnet size /${size}`);
    for (let j = 0; j < i; j++) if (overlaps(c, cidrs[j]!)) throw new InvalidArgumentError(`default address pools ${pool[j]} and ${pool[i]} overlap`);
  });
}

/** Decides the subnets of a new network: the user's (validated) or the next free ones from the pool. */
export function planSubnets(taken: Cidr[], requests: SubnetRequest[], pool: string[], size: number): IpamConfig[] {
  const out: IpamConfig[] = [];
  const chosen: Cidr[] = [];
  const clash = (c: Cidr): boolean => taken.some((t) => overlaps(t, c)) || chosen.some((t) => overlaps(t, c));
  for (const r of requests.length ? requests : [{}]) {
    let cidr: Cidr;
    if (r.subnet === undefined) {
      if (r.gateway !== undefined || r.ipRange !== undefined) throw new InvalidArgumentError('a gateway or IP range needs a subnet (--subnet)');
      const found = nextFreeSubnet(pool, size, clash);
      if (!found) throw new InvalidArgumentError('could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network');
      cidr = found;
    } else {
      cidr = parseCidr(r.subnet);
      if (cidr.prefix > 30) throw new InvalidArgumentError(`invalid subnet ${r.subnet}: too small, need at most /30`);
      if (cidr.prefix < 8) throw new InvalidArgumentError(`invalid subnet ${r.subnet}: too large, at most /8`);
      if (clash(cidr)) throw new InvalidArgumentError(`invalid pool request: subnet ${r.subnet} overlaps with another network's subnet`);
    }
    let gateway = (cidr.network + 1) >>> 0;
    if (r.gateway !== undefined) {
      gateway = parseIp(r.gateway);
      if (!contains(cidr, gateway)) throw new InvalidArgumentError(`invalid gateway ${r.gateway}: outside subnet ${formatCidr(cidr)}`);
      if (gateway === cidr.network || gateway === broadcastOf(cidr))
        throw new InvalidArgumentError(`invalid gateway ${r.gateway}: the network or broadcast address of ${formatCidr(cidr)}`);
    }
    const cfg: IpamConfig = { subnet: formatCidr(cidr), gateway: formatIp(gateway) };
    if (r.ipRange !== undefined) {
      const range = parseCidr(r.ipRange);
      if (range.prefix < cidr.prefix || !contains(cidr, range.network))
        throw new InvalidArgumentError(`invalid IP range ${r.ipRange}: not inside subnet ${formatCidr(cidr)}`);
      cfg.ipRange = formatCidr(range);
    }
    chosen.push(cidr);
    out.push(cfg);
  }
  return out;
}

function nextFreeSubnet(pool: string[], size: number, clash: (c: Cidr) => boolean): Cidr | undefined {
  for (const p of pool) {
    const base = parseCidr(p);
    const step = 2 ** (32 - size);
    const count = sizeOf(base) / step;
    for (let i = 0; i < count; i++) {
      const c = { network: (base.network + i * step) >>> 0, prefix: size };
      if (!clash(c)) return c;
    }
  }
  return undefined;
}

/** VNIs for a network: the user's list (checked) or the lowest free ones from VNI_START. */
export function planVnis(used: ReadonlySet<number>, count: number, requested?: number[]): number[] {
  if (requested) {
    if (requested.length !== count)
      throw new InvalidArgumentError(`option com.docker.network.driver.overlay.vxlanid_list has ${requested.length} VNIs for ${count} subnets`);
    for (const v of requested) {
      if (!Number.isInteger(v) || v < 1 || v > VNI_MAX) throw new InvalidArgumentError(`invalid VXLAN ID ${v}: must be 1..${VNI_MAX}`);
      if (used.has(v)) throw new InvalidArgumentError(`VXLAN ID ${v} is already in use`);
    }
    if (new Set(requested).size !== requested.length) throw new InvalidArgumentError('option com.docker.network.driver.overlay.vxlanid_list repeats a VNI');
    return requested;
  }
  const out: number[] = [];
  for (let v = VNI_START; v <= VNI_MAX && out.length < count; v++) if (!used.has(v)) out.push(v);
  if (out.length < count) throw new InvalidArgumentError('no free VXLAN IDs left');
  return out;
}

export function parseVniList(text: string): number[] {
  return text.split(',').map((s) => {
    const t = s.trim();
    if (!/^\d+$/.test(t)) throw new InvalidArgumentError(`invalid VXLAN ID "${t}" in com.docker.network.driver.overlay.vxlanid_list`);
    return Number(t);
  });
}

/**
 * Next-fit: the first free address after the last one handed out, wrapping around, so a
 * just-freed address is not reused at once (its stale ARP/FDB entries have time to go).
 */
export function nextFitIp(cfg: IpamConfig, last: number | undefined, taken: (ip: number) => boolean): number | undefined {
  const subnet = parseCidr(cfg.subnet);
  const range = cfg.ipRange ? parseCidr(cfg.ipRange) : subnet;
  const gateway = parseIp(cfg.gateway);
  const first = range.network;
  const n = sizeOf(range);
  const start = last !== undefined && contains(range, last) ? last - first + 1 : 0;
  for (let k = 0; k < n; k++) {
    const ip = (first + ((start + k) % n)) >>> 0;
    if (ip === subnet.network || ip === broadcastOf(subnet) || ip === gateway) continue;
    if (!taken(ip)) return ip;
  }
  return undefined;
}
