// What the embedded resolver answers, as a pure function of the endpoint table, the services' VIPs
// and the asking container's networks: <service> and its aliases → its VIP (vip mode) or its task
// IPs (dnsrr), tasks.<service> → the task IPs, <task name> → that task, PTR for task IPs (a VIP has
// none, as in Docker); only on networks the asker shares with the target.
import { contains, parseCidr, parseIp } from '../core/ipv4.js';

export interface DnsRecord {
  networkId: string;
  networkName: string;
  ip: string;
  /** the task's container name: <service>.<slot>.<taskid> */
  name: string;
  service?: string;
  aliases?: string[];
  /** a service's virtual IP on this network (`ip`), not a task */
  vip?: boolean;
}

export type Answer = { kind: 'a'; ips: string[] } | { kind: 'ptr'; name: string } | { kind: 'nxdomain' } | { kind: 'forward' };

const norm = (n: string): string => n.toLowerCase().replace(/\.$/, '');

/** Reverse name (4.3.2.1.in-addr.arpa) → 1.2.3.4, or undefined. */
export function ptrToIp(name: string): string | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.in-addr\.arpa$/.exec(norm(name));
  return m ? [m[4], m[3], m[2], m[1]].join('.') : undefined;
}

/**
 * `overlays` are the subnets of the overlay networks this node knows: a PTR query for an address
 * in them that no task holds is ours to deny, not the upstream resolver's.
 */
export function answer(qname: string, qtype: 'A' | 'PTR' | 'AAAA' | string, records: DnsRecord[], askerNetworks: Set<string>, overlays: string[] = []): Answer {
  const name = norm(qname);
  const visible = records.filter((r) => askerNetworks.has(r.networkId));
  if (qtype === 'PTR') {
    const ip = ptrToIp(name);
    if (!ip) return { kind: 'forward' };
    const r = visible.find((x) => x.ip === ip && !x.vip);
    if (r) return { kind: 'ptr', name: `${r.name}.${r.networkName}` };
    const n = parseIp(ip);
    return overlays.some((c) => contains(parseCidr(c), n)) ? { kind: 'nxdomain' } : { kind: 'forward' };
  }
  const tasksOf = name.startsWith('tasks.');
  const svc = tasksOf ? name.slice(6) : name;
  const ips = new Set<string>();
  const named = (r: DnsRecord): boolean => (!!r.service && norm(r.service) === name) || !!r.aliases?.some((a) => norm(a) === name);
  if (!tasksOf) for (const r of visible) if (r.vip && named(r)) ips.add(r.ip);
  if (ips.size) return qtype === 'A' ? { kind: 'a', ips: [...ips].sort() } : { kind: 'a', ips: [] };
  for (const r of visible) {
    if (r.vip) continue;
    if (r.service && norm(r.service) === svc) ips.add(r.ip);
    else if (norm(r.name) === name) ips.add(r.ip);
    else if (r.aliases?.some((a) => norm(a) === name)) ips.add(r.ip);
  }
  if (ips.size) return qtype === 'A' ? { kind: 'a', ips: [...ips].sort() } : { kind: 'a', ips: [] };
  // Single-label names are cluster names; nobody upstream knows them better (Docker forwards them
  // and waits for the upstream's NXDOMAIN or timeout; we answer at once).
  if (!name.includes('.') || records.some((r) => r.service && name === `tasks.${norm(r.service)}`)) return { kind: 'nxdomain' };
  return { kind: 'forward' };
}
