// Service VIPs, load-balanced in each task's own namespace with nftables (this kernel has no IPVS,
// so Docker's VIPs do not work here at all). One table per namespace:
//
//   table ip vxswarm {
//     map vips { type ipv4_addr : verdict; elements = { 10.0.1.2 : goto vip_10_0_1_2, … } }
//     chain out { type nat hook output priority -100; ip daddr vmap @vips }
//     chain vip_10_0_1_2 { dnat to numgen random mod 3 map { 0 : 10.0.1.5, 1 : 10.0.1.6, 2 : 10.0.1.7 } }
//   }
//
// The map is a hash lookup, so a packet costs the same however many services there are (as
// kube-proxy's nftables mode); the choice is made once per connection (NAT rules see only a
// connection's first packet), for TCP, UDP and ICMP alike, and conntrack keeps its own timeouts (no
// 15-minute IPVS expiry: moby/moby#31208). The client's address is kept: no source NAT. A change is
// one nft transaction of only what differs: an element added or removed, one VIP's rule replaced.
import type { Logger } from '../core/log.js';
import { NftTables, type NftCodec } from './nft-tables.js';

/** A namespace's load balancer: VIP → its backends' addresses (sorted). */
export type LbSpec = Map<string, string[]>;

const TABLE = 'vxswarm';
const chainOf = (vip: string): string => `vip_${vip.replace(/\./g, '_')}`;

/** A DNAT to one of `backends`, picked at random per connection; to `port` when given (after a protocol match). */
export function dnat(backends: string[], port?: number): string {
  const to = port ? `:${port}` : '';
  if (backends.length === 1) return `dnat to ${backends[0]}${to}`;
  return `dnat to numgen random mod ${backends.length} map { ${backends.map((b, i) => `${i} : ${b}`).join(', ')} }${to}`;
}

/** The nft script that turns `have` (undefined: no table) into `want`, as one transaction; '' if nothing differs. */
export function lbScript(have: LbSpec | undefined, want: LbSpec): string {
  const lines: string[] = [];
  const cur = have ?? new Map<string, string[]>();
  if (!have && want.size === 0) return '';
  if (!have)
    lines.push(
      `add table ip ${TABLE}`,
      `add map ip ${TABLE} vips { type ipv4_addr : verdict; }`,
      `add chain ip ${TABLE} out { type nat hook output priority -100; policy accept; }`,
      `add rule ip ${TABLE} out ip daddr vmap @vips`,
    );
  for (const vip of cur.keys()) if (!want.has(vip)) lines.push(`delete element ip ${TABLE} vips { ${vip} }`, `delete chain ip ${TABLE} ${chainOf(vip)}`);
  for (const [vip, backends] of want) {
    const old = cur.get(vip);
    if (old && old.join() === backends.join()) continue;
    // No backend: the chain has no rule, and a connection to the VIP finds nobody (as with IPVS).
    // A chain left without its element (by hand) is emptied, not given a second rule.
    if (!old) lines.push(`add chain ip ${TABLE} ${chainOf(vip)}`);
    if (have) lines.push(`flush chain ip ${TABLE} ${chainOf(vip)}`);
    if (backends.length) lines.push(`add rule ip ${TABLE} ${chainOf(vip)} ${dnat(backends)}`);
    if (!old) lines.push(`add element ip ${TABLE} vips { ${vip} : goto ${chainOf(vip)} }`);
  }
  return lines.join('\n');
}

export type Json = Record<string, unknown>;

/**
 * What the kernel holds, from `nft -j list table ip vxswarm`: the spec, or `broken` when the table's
 * frame (the map, the hooked chain and its rule) is not ours as we made it.
 */
export function parseLbTable(json: string): { spec: LbSpec; broken: boolean } {
  const items = ((JSON.parse(json) as { nftables?: Json[] }).nftables ?? []) as Json[];
  const spec: LbSpec = new Map();
  const map = items.find((i) => (i.map as Json | undefined)?.name === 'vips')?.map as Json | undefined;
  const out = items.find((i) => (i.chain as Json | undefined)?.name === 'out')?.chain as Json | undefined;
  const rules = items.flatMap((i) => (i.rule ? [i.rule as Json] : []));
  const hooked = rules.some((r) => r.chain === 'out' && JSON.stringify(r.expr).includes('"data":"@vips"'));
  let broken = !map || map.map !== 'verdict' || !out || out.hook !== 'output' || out.type !== 'nat' || !hooked;
  const chains = new Set(items.flatMap((i) => (i.chain ? [String((i.chain as Json).name)] : [])));
  for (const e of (map?.elem ?? []) as unknown[]) {
    const [vip, verdict] = e as [string, { goto?: { target?: string } }];
    const chain = verdict?.goto?.target;
    if (typeof vip !== 'string' || chain !== chainOf(vip) || !chains.has(chain)) {
      broken = true;
      continue;
    }
    const mine = rules.filter((r) => r.chain === chain);
    if (mine.length > 1) broken = true;
    spec.set(vip, mine.length ? backendsOf(mine[0]!) : []);
  }
  return { spec, broken };
}

/** The backends of a rule of dnat(): `dnat to IP`, or `dnat to numgen … map { i : IP }` (in key order). */
export function backendsOf(rule: Json): string[] {
  return dnatOf(rule).backends;
}

/** A dnat() rule's backends and port (0: none), from its JSON. */
export function dnatOf(rule: Json): { backends: string[]; port: number } {
  const d = ((rule.expr as Json[] | undefined) ?? []).find((x) => x.dnat)?.dnat as Json | undefined;
  const port = typeof d?.port === 'number' ? d.port : 0;
  const addr = d?.addr;
  if (typeof addr === 'string') return { backends: [addr], port };
  const set = ((addr as Json | undefined)?.map as Json | undefined)?.data as Json | undefined;
  const pairs = (set?.set ?? []) as [number, string][];
  return { backends: [...pairs].sort((a, b) => a[0] - b[0]).map((p) => p[1]), port };
}

const same = (a: LbSpec, b: LbSpec): boolean => a.size === b.size && [...a].every(([k, v]) => b.get(k)?.join() === v.join());

/** A task namespace's VIPs as a table of ours; while adopting, a VIP keeps the backends it had besides those gossip has brought back so far. */
export const VIP_CODEC: NftCodec<LbSpec> = {
  table: TABLE,
  script: lbScript,
  parse: parseLbTable,
  same,
  merge: (goal, held) => new Map([...goal].map(([vip, b]) => [vip, [...new Set([...b, ...(held.get(vip) ?? [])])].sort()])),
};

/** Every task namespace's load balancer on this node. */
export class LoadBalancers extends NftTables<LbSpec> {
  constructor(log: Logger) {
    super(VIP_CODEC, log);
  }
}
