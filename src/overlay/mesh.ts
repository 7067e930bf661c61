// Published ports: the ingress routing mesh, which keeps the client's address, and host-mode ports.
//
// A connection from client C to any node N on published port P, ingress mode:
//
//   N's own namespace   table ip vxswarm_ports: prerouting (and output, for N itself), to a local
//                       address, `tcp . P` → DNAT to N's ingress sandbox on docker_gwbridge
//                       (172.18.0.2:P); routed there over the bridge.
//   N's ingress_sbox    table ip vxswarm_ports: prerouting from gw0, `tcp . P` → DNAT to one task's
//                       ingress address, picked per connection (10.255.0.7:80); routed out of its
//                       ingress endpoint, over the ingress overlay (VXLAN) to the task's node.
//   the task            sees C's own address: nobody rewrote the source. Table ip vxswarm_ingress
//                       marks the connection by the source MAC of its first packet, which is the
//                       sandbox it came through (mark = that sandbox's ingress address, as a number);
//                       a rule per ingress sandbox, `fwmark M lookup M`, sends the replies, whose
//                       packets carry the connection's mark, to `default via <that sandbox>`.
//   back                the sandbox undoes its DNAT (source 172.18.0.2:P) and routes to C by its
//                       default route, N's docker_gwbridge; N undoes its DNAT (source N:P) and
//                       routes to C. The reply leaves through the node C connected to.
//
// Docker's mesh source-NATs in the sandbox instead (IPVS), so the task sees the sandbox's address
// (moby/moby#25526). A host-mode port is one DNAT in N's table straight to the local task's address
// on docker_gwbridge (or docker0); its replies go out of the task's default route, N itself.
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { parseIp } from '../core/ipv4.js';
import { Rtnl, type RuleInfo } from '../kernel/rtnl.js';
import { Mutex } from '../core/mutex.js';
import { DOCKER0, GWBRIDGE, HAIRPIN_MARK } from './gwbridge.js';
import { dnatText } from '../kernel/nftnl.js';
import { dnatOf, type Json } from './lb.js';
import { NftTables, type NftCodec } from './nft-tables.js';

/** "tcp/8080" → where its connections go: backends (one picked per connection) and their port. */
export type PortSpec = Map<string, { to: string[]; port: number }>;

export const PORTS_TABLE = 'vxswarm_ports';
export const INGRESS_TABLE = 'vxswarm_ingress';
/** the priority of the reply rules in a task's namespace (before main, 32766) */
export const REPLY_RULE_PRIORITY = 100;

export const portKey = (protocol: string, port: number): string => `${protocol}/${port}`;
/** the node's local bridges a task may reach a published port from (docker_gwbridge, docker0) */
const HAIRPIN_BRIDGES = [GWBRIDGE, DOCKER0];
const chainOf = (key: string): string => `port_${key.replace('/', '_')}`;
const sameTo = (a: { to: string[]; port: number }, b: { to: string[]; port: number } | undefined): boolean =>
  !!b && a.port === b.port && a.to.join() === b.to.join();

/** Where the ports' chains hook: a node's own namespace (connections to any local address) or an ingress sandbox (from its bridge leg). */
export type PortsFrame = { kind: 'node' } | { kind: 'sbox'; iif: string };

function frameLines(t: string, f: PortsFrame): string[] {
  const hook = (name: string, hookName: string, match: string): string[] => [
    `add chain ip ${t} ${name} { type nat hook ${hookName} priority -100; policy accept; }`,
    `add rule ip ${t} ${name} ${match} meta l4proto . th dport vmap @ports`,
  ];
  if (f.kind === 'sbox') return hook('pre', 'prerouting', `iifname "${f.iif}"`);
  return [
    ...hook('pre', 'prerouting', 'fib daddr type local'),
    ...hook('out', 'output', 'fib daddr type local'),
    // A client on the node's loopback (127.0.0.1:P) cannot be answered from elsewhere, nor a task of
    // this node (its bridge address is the node's own, the same on other nodes): only those are
    // rewritten. A task's packets to the sandbox are marked so the bridge's isolation lets them by.
    `add chain ip ${t} post { type nat hook postrouting priority 100; policy accept; }`,
    `add rule ip ${t} post ip saddr 127.0.0.0/8 ct status dnat masquerade`,
    ...HAIRPIN_BRIDGES.map((br) => `add rule ip ${t} post ip saddr ${br.subnet} ct status dnat masquerade`),
    `add chain ip ${t} hairpin { type filter hook prerouting priority -90; policy accept; }`,
    `add rule ip ${t} hairpin iifname { ${HAIRPIN_BRIDGES.map((br) => `"${br.name}"`).join(', ')} } ct status dnat meta mark set meta mark | ${HAIRPIN_MARK}`,
  ];
}

export function portsCodec(frame: PortsFrame): NftCodec<PortSpec> {
  const t = PORTS_TABLE;
  return {
    table: t,
    script(have, want) {
      const cur = have ?? new Map();
      if (!have && want.size === 0) return '';
      const lines: string[] = [];
      if (!have) lines.push(`add table ip ${t}`, `add map ip ${t} ports { type inet_proto . inet_service : verdict; }`, ...frameLines(t, frame));
      for (const key of cur.keys())
        if (!want.has(key)) lines.push(`delete element ip ${t} ports { ${key.replace('/', ' . ')} }`, `delete chain ip ${t} ${chainOf(key)}`);
      for (const [key, dest] of want) {
        const old = cur.get(key);
        if (sameTo(dest, old)) continue;
        const proto = key.split('/')[0]!;
        // A chain left without its element (by hand) is emptied, not given a second rule.
        if (!old) lines.push(`add chain ip ${t} ${chainOf(key)}`);
        if (have) lines.push(`flush chain ip ${t} ${chainOf(key)}`);
        // No backend: no rule, and the connection finds nobody listening.
        if (dest.to.length) lines.push(`add rule ip ${t} ${chainOf(key)} meta l4proto ${proto} ${dnatText(dest.to, dest.port)}`);
        if (!old) lines.push(`add element ip ${t} ports { ${key.replace('/', ' . ')} : goto ${chainOf(key)} }`);
      }
      return lines.join('\n');
    },
    parse(json) {
      const items = ((JSON.parse(json) as { nftables?: Json[] }).nftables ?? []) as Json[];
      const spec: PortSpec = new Map();
      const chains = new Map(items.flatMap((i) => (i.chain ? [[String((i.chain as Json).name), i.chain as Json]] : [])));
      const rules = items.flatMap((i) => (i.rule ? [i.rule as Json] : []));
      const map = items.find((i) => (i.map as Json | undefined)?.name === 'ports')?.map as Json | undefined;
      const hooked = (name: string, hookName: string, mark: string): boolean =>
        chains.get(name)?.hook === hookName && rules.some((r) => r.chain === name && JSON.stringify(r.expr).includes(mark));
      let broken = !map || map.map !== 'verdict';
      if (frame.kind === 'sbox') broken ||= !hooked('pre', 'prerouting', '"data":"@ports"');
      else
        broken ||=
          !hooked('pre', 'prerouting', '"data":"@ports"') ||
          !hooked('out', 'output', '"data":"@ports"') ||
          chains.get('post')?.hook !== 'postrouting' ||
          !hooked('hairpin', 'prerouting', '"mark"') ||
          // the loopback rule and one per bridge (a table from before the bridges' rules is made again)
          rules.filter((r) => r.chain === 'post' && JSON.stringify(r.expr).includes('masquerade')).length !== 1 + HAIRPIN_BRIDGES.length;
      for (const e of (map?.elem ?? []) as unknown[]) {
        const [k, verdict] = e as [{ concat?: [string, number] }, { goto?: { target?: string } }];
        const [proto, port] = k?.concat ?? [];
        const key = portKey(String(proto), Number(port));
        const chain = verdict?.goto?.target;
        if ((proto !== 'tcp' && proto !== 'udp') || chain !== chainOf(key) || !chains.has(chain)) {
          broken = true;
          continue;
        }
        const mine = rules.filter((r) => r.chain === chain);
        if (mine.length > 1) broken = true;
        const d = mine.length ? dnatOf(mine[0]!) : { backends: [], port: 0 };
        spec.set(key, { to: d.backends, port: d.port });
      }
      return { spec, broken };
    },
    same: (a, b) => a.size === b.size && [...a].every(([k, v]) => sameTo(v, b.get(k))),
    merge: (goal, held) =>
      new Map([...goal].map(([k, v]) => [k, { port: v.port, to: [...new Set([...v.to, ...(held.get(k)?.port === v.port ? held.get(k)!.to : [])])].sort() }])),
  };
}

/** A task's ingress leg: its interface, and the mark of each ingress sandbox by its MAC. */
export interface IngressSpec {
  ifname: string;
  marks: Map<string, number>;
}

export const INGRESS_CODEC: NftCodec<IngressSpec> = {
  table: INGRESS_TABLE,
  script(have, want) {
    const t = INGRESS_TABLE;
    const lines: string[] = [];
    let cur = have;
    if (cur && cur.ifname !== want.ifname) {
      lines.push(`delete table ip ${t}`);
      cur = undefined;
    }
    if (!cur)
      lines.push(
        `add table ip ${t}`,
        `add map ip ${t} sboxes { type ether_addr : mark; }`,
        // The first packet of a connection from the mesh says which sandbox it came through.
        `add chain ip ${t} pre { type filter hook prerouting priority -150; policy accept; }`,
        `add rule ip ${t} pre iifname "${want.ifname}" ct state new ct mark set ether saddr map @sboxes`,
        // Its replies carry that mark, and the reply rules route them back there.
        `add chain ip ${t} out { type route hook output priority -150; policy accept; }`,
        `add rule ip ${t} out ct mark != 0 meta mark set ct mark`,
      );
    const old = cur?.marks ?? new Map<string, number>();
    for (const [mac, mark] of old) if (want.marks.get(mac) !== mark) lines.push(`delete element ip ${t} sboxes { ${mac} }`);
    for (const [mac, mark] of want.marks) if (old.get(mac) !== mark) lines.push(`add element ip ${t} sboxes { ${mac} : ${mark} }`);
    return lines.join('\n');
  },
  parse(json) {
    const items = ((JSON.parse(json) as { nftables?: Json[] }).nftables ?? []) as Json[];
    const rules = items.flatMap((i) => (i.rule ? [i.rule as Json] : []));
    const map = items.find((i) => (i.map as Json | undefined)?.name === 'sboxes')?.map as Json | undefined;
    const pre = rules.find((r) => r.chain === 'pre');
    const iif = ((pre?.expr as Json[] | undefined) ?? []).map((x) => x.match as Json | undefined).find((m) => (m?.left as Json | undefined)?.meta)?.right;
    const hasOut = rules.some((r) => r.chain === 'out' && JSON.stringify(r.expr).includes('"mangle"'));
    const marks = new Map<string, number>();
    for (const e of (map?.elem ?? []) as unknown[]) {
      const [mac, mark] = e as [string, number];
      if (typeof mac === 'string' && typeof mark === 'number') marks.set(mac, mark);
    }
    return { spec: { ifname: typeof iif === 'string' ? iif : '', marks }, broken: !map || !pre || typeof iif !== 'string' || !hasOut };
  },
  same: (a, b) => a.ifname === b.ifname && a.marks.size === b.marks.size && [...a.marks].every(([k, v]) => b.marks.get(k) === v),
};

/** An ingress sandbox as a task sees it: its address on ingress and its MAC. */
export interface Sbox {
  ip: string;
  mac: string;
}

/** The mark (and routing table) of replies to go back through `sbox`: its address as a number. */
export const markOf = (sbox: Sbox): number => parseIp(sbox.ip) >>> 0;

/**
 * The replies of every task that is on ingress: the marking table, and a rule and a route per
 * ingress sandbox of the swarm, kept as wanted and repaired like the tables.
 */
export class IngressReplies {
  private readonly marks: NftTables<IngressSpec>;
  private readonly wanted = new Map<string, { ifname: string; sboxes: Sbox[] }>();
  private readonly locks = new Map<string, Mutex>();
  /** rules and routes found missing or extra and put right */
  routeRepairs = 0;

  constructor(private readonly log: Logger) {
    this.marks = new NftTables(INGRESS_CODEC, log);
  }

  get repairs(): number {
    return this.marks.repairs + this.routeRepairs;
  }

  set(netns: string, ifname: string, sboxes: Sbox[]): Promise<void> {
    this.wanted.set(netns, { ifname, sboxes });
    return Promise.all([
      this.marks.set(netns, { ifname, marks: new Map(sboxes.map((s) => [s.mac, markOf(s)])) }),
      this.lock(netns).lock(() => this.routes(netns, false)),
    ]).then(() => undefined);
  }

  forget(netns: string): void {
    this.wanted.delete(netns);
    this.locks.delete(netns);
    this.marks.forget(netns);
  }

  async reconcile(): Promise<void> {
    await this.marks.reconcile();
    for (const netns of [...this.wanted.keys()])
      await this.lock(netns)
        .lock(() => this.routes(netns, true))
        .catch((e: unknown) => this.log.warn('ingress reply routes reconcile failed', { netns, error: errorMessage(e) }));
  }

  private lock(netns: string): Mutex {
    let m = this.locks.get(netns);
    if (!m) this.locks.set(netns, (m = new Mutex()));
    return m;
  }

  /** Reads the namespace's rules and reply routes and puts right what differs (counted when `counting`). */
  private async routes(netns: string, counting: boolean): Promise<void> {
    const want = this.wanted.get(netns);
    if (!want) return;
    const r = Rtnl.open(netns);
    try {
      const link = await r.getLink(want.ifname);
      if (!link) return;
      const rules = (await r.getRules()).filter((x) => x.priority === REPLY_RULE_PRIORITY);
      const wanted = new Map(want.sboxes.map((s) => [markOf(s), s]));
      const routes = await r.getRoutes('all');
      let fixed = 0;
      for (const x of rules)
        if (!wanted.has(x.fwmark) || x.table !== x.fwmark) {
          await r.deleteRule(x);
          fixed++;
        }
      for (const [mark, s] of wanted) {
        const rule: RuleInfo = { priority: REPLY_RULE_PRIORITY, fwmark: mark, table: mark };
        if (!rules.some((x) => x.fwmark === mark && x.table === mark)) {
          await r.addRule(rule);
          fixed++;
        }
        if (!routes.some((x) => x.table === mark && x.prefix === 0 && x.gateway === s.ip && x.oif === link.index)) {
          await r.replaceRoute({ dst: '0.0.0.0', prefix: 0, gateway: s.ip, oif: link.index, table: mark });
          fixed++;
        }
      }
      // A sandbox gone from the swarm: its table's route goes with its rule.
      for (const x of rules) if (!wanted.has(x.fwmark)) await r.deleteRoute({ dst: '0.0.0.0', prefix: 0, table: x.table }).catch(() => undefined);
      if (counting && fixed) {
        this.routeRepairs += fixed;
        this.log.warn('ingress reply routes changed behind our back: repaired', { netns, fixed });
      }
    } finally {
      r.close();
    }
  }
}
