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
// one transaction of only what differs (an element added or removed, one VIP's rule replaced), sent
// as a netlink batch of our own: libnftables would refetch the whole table first (kernel/nftnl.ts).
import type { Logger } from '../core/log.js';
import { nftText, type NftOp } from '../kernel/nftnl.js';
import { NftTables, type NftCodec } from './nft-tables.js';

/** A namespace's load balancer: VIP → its backends' addresses (sorted). */
export type LbSpec = Map<string, string[]>;

const TABLE = 'vxswarm';

/** Element by element: no strings built, as this runs over every VIP of a namespace on each change. */
function sameList(a: string[], b: string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
const chainOf = (vip: string): string => `vip_${vip.replace(/\./g, '_')}`;

/** The changes that turn `have` into `want` in a table that exists (from nothing: `have` empty), as one transaction. */
export function lbChanges(have: LbSpec, want: LbSpec, fresh = false): NftOp[] {
  const ops: NftOp[] = [];
  const table = TABLE;
  for (const vip of have.keys())
    if (!want.has(vip)) ops.push({ op: 'deleteElement', table, set: 'vips', key: vip }, { op: 'deleteChain', table, chain: chainOf(vip) });
  for (const [vip, backends] of want) {
    const old = have.get(vip);
    if (old && sameList(old, backends)) continue;
    const chain = chainOf(vip);
    // No backend: the chain has no rule, and a connection to the VIP finds nobody (as with IPVS).
    // A chain left without its element (by hand) is emptied, not given a second rule.
    if (!old) ops.push({ op: 'addChain', table, chain });
    if (!fresh) ops.push({ op: 'flushChain', table, chain });
    if (backends.length) ops.push({ op: 'addDnatRule', table, chain, backends });
    if (!old) ops.push({ op: 'addGotoElement', table, map: 'vips', key: vip, chain });
  }
  return ops;
}

/** The nft script that turns `have` (undefined: no table) into `want`, as one transaction; '' if nothing differs. */
export function lbScript(have: LbSpec | undefined, want: LbSpec): string {
  if (!have && want.size === 0) return '';
  const frame = have
    ? []
    : [
        `add table ip ${TABLE}`,
        `add map ip ${TABLE} vips { type ipv4_addr : verdict; }`,
        `add chain ip ${TABLE} out { type nat hook output priority -100; policy accept; }`,
        `add rule ip ${TABLE} out ip daddr vmap @vips`,
      ];
  return [...frame, ...lbChanges(have ?? new Map(), want, !have).map(nftText)].join('\n');
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

const same = (a: LbSpec, b: LbSpec): boolean => {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w || !sameList(v, w)) return false;
  }
  return true;
};

/** A task namespace's VIPs as a table of ours; while adopting, a VIP keeps the backends it had besides those gossip has brought back so far. */
export const VIP_CODEC: NftCodec<LbSpec> = {
  table: TABLE,
  script: lbScript,
  changes: lbChanges,
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
