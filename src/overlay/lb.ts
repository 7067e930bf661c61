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
import { KernelError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { Mutex } from '../core/mutex.js';
import { nftAsync, nftForgetAsync } from '../kernel/thread.js';

/** A namespace's load balancer: VIP → its backends' addresses (sorted). */
export type LbSpec = Map<string, string[]>;

const TABLE = 'vxswarm';
const chainOf = (vip: string): string => `vip_${vip.replace(/\./g, '_')}`;

function dnat(backends: string[]): string {
  if (backends.length === 1) return `dnat to ${backends[0]}`;
  return `dnat to numgen random mod ${backends.length} map { ${backends.map((b, i) => `${i} : ${b}`).join(', ')} }`;
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
    lines.push(old ? `flush chain ip ${TABLE} ${chainOf(vip)}` : `add chain ip ${TABLE} ${chainOf(vip)}`);
    if (backends.length) lines.push(`add rule ip ${TABLE} ${chainOf(vip)} ${dnat(backends)}`);
    if (!old) lines.push(`add element ip ${TABLE} vips { ${vip} : goto ${chainOf(vip)} }`);
  }
  return lines.join('\n');
}

type Json = Record<string, unknown>;

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

/** The backends of a VIP chain's rule: `dnat to IP`, or `dnat to numgen … map { i : IP }` (in key order). */
function backendsOf(rule: Json): string[] {
  const d = ((rule.expr as Json[] | undefined) ?? []).find((x) => x.dnat)?.dnat as Json | undefined;
  const addr = d?.addr;
  if (typeof addr === 'string') return [addr];
  const set = ((addr as Json | undefined)?.map as Json | undefined)?.data as Json | undefined;
  const pairs = (set?.set ?? []) as [number, string][];
  return [...pairs].sort((a, b) => a[0] - b[0]).map((p) => p[1]);
}

const same = (a: LbSpec, b: LbSpec): boolean => a.size === b.size && [...a].every(([k, v]) => b.get(k)?.join() === v.join());

/** Every task namespace's load balancer on this node: programmed, adopted after a restart, reconciled. */
export class LoadBalancers {
  /** what each namespace holds, as we last programmed or read it */
  private readonly held = new Map<string, LbSpec>();
  /** what each namespace should hold */
  private readonly wanted = new Map<string, LbSpec>();
  private readonly locks = new Map<string, Mutex>();
  /** entries found changed behind our back and put back */
  repairs = 0;
  reconciles = 0;
  /**
   * After a restart, until then, a VIP keeps the backends its namespace already had besides those
   * gossip has brought back so far: the tables are adopted as they are, not shrunk while the
   * endpoint tables refill, and then converge.
   */
  adoptUntil = 0;

  constructor(private readonly log: Logger) {}

  /** Makes namespace `netns` balance `want`; a namespace seen for the first time is read first (adopted). */
  set(netns: string, want: LbSpec): Promise<void> {
    this.wanted.set(netns, want);
    return this.lock(netns).lock(async () => {
      const goal = this.wanted.get(netns);
      if (!goal) return;
      if (!this.held.has(netns)) {
        const read = await this.read(netns);
        if (read?.broken) await this.reset(netns);
        else if (read) this.held.set(netns, read.spec);
      }
      await this.apply(netns, this.adopting(netns, goal));
    });
  }

  private adopting(netns: string, goal: LbSpec): LbSpec {
    const held = this.held.get(netns);
    if (!held || Date.now() >= this.adoptUntil) return goal;
    return new Map([...goal].map(([vip, b]) => [vip, [...new Set([...b, ...(held.get(vip) ?? [])])].sort()]));
  }

  /** The namespace went (its task ended): nothing to keep for it. */
  forget(netns: string): void {
    this.wanted.delete(netns);
    this.held.delete(netns);
    this.locks.delete(netns);
    void nftForgetAsync(netns).catch(() => undefined);
  }

  /** What `netns` balances now, as programmed. */
  spec(netns: string): LbSpec | undefined {
    return this.held.get(netns);
  }

  /** Reads every namespace back and repairs what differs from what we programmed. */
  async reconcile(): Promise<void> {
    this.reconciles++;
    for (const netns of [...this.wanted.keys()]) {
      await this.lock(netns)
        .lock(async () => {
          const goal = this.wanted.get(netns);
          if (!goal) return;
          const read = await this.read(netns);
          const held = this.held.get(netns);
          if (read && !read.broken && held && same(read.spec, held)) return;
          this.repairs++;
          this.log.warn('load balancer changed behind our back: repairing', { netns, table: read ? (read.broken ? 'broken' : 'changed') : 'gone' });
          if (read?.broken) await this.reset(netns);
          else if (read) this.held.set(netns, read.spec);
          else this.held.delete(netns);
          await this.apply(netns, this.adopting(netns, goal));
        })
        .catch((e: unknown) => this.log.warn('load balancer reconcile failed', { netns, error: errorMessage(e) }));
    }
  }

  private lock(netns: string): Mutex {
    let m = this.locks.get(netns);
    if (!m) this.locks.set(netns, (m = new Mutex()));
    return m;
  }

  private async apply(netns: string, goal: LbSpec): Promise<void> {
    const held = this.held.get(netns);
    const script = lbScript(held, goal);
    if (!script) return;
    try {
      await nftAsync(netns, script);
      this.held.set(netns, new Map(goal));
    } catch (e) {
      // What the kernel holds is unknown now: read it again next time.
      this.held.delete(netns);
      throw e;
    }
  }

  /** The table as the kernel holds it, or undefined when there is none (or the namespace is gone). */
  private async read(netns: string): Promise<{ spec: LbSpec; broken: boolean } | undefined> {
    try {
      return parseLbTable(await nftAsync(netns, `list table ip ${TABLE}`, true));
    } catch (e) {
      if (e instanceof KernelError && e.code === 'ENOENT') return undefined;
      throw e;
    }
  }

  private async reset(netns: string): Promise<void> {
    await nftAsync(netns, `delete table ip ${TABLE}`);
    this.held.delete(netns);
  }
}
