// Egress, as Docker's docker_gwbridge: a bridge in the node's own namespace (172.18.0.1/16), a veth
// from it into every task that is on a non-internal overlay, the task's default route there, and
// its traffic masqueraded to the node's own address. Ports of the bridge cannot reach each other
// (Docker's enable_icc=false): tasks talk to each other over their overlays, never here. The same
// shape is Docker's local `bridge` network (docker0, 172.17.0.1/16), the only network of a task
// that names none, where tasks on one node may talk (enable_icc=true).
// Addresses are the node's own; after a restart they are read back from the task namespaces.
import { ConflictError, KernelError, errorMessage } from '../core/errors.js';
import { contains, formatIp, parseCidr, parseIp } from '../core/ipv4.js';
import type { Logger } from '../core/log.js';
import { listNetns, writeSysctl } from '../kernel/netns.js';
import { Rtnl } from '../kernel/rtnl.js';
import { nftAsync, nftForgetAsync } from '../kernel/thread.js';
import { Mutex } from '../core/mutex.js';

export interface LocalBridgeConfig {
  /** the bridge, in the node's namespace */
  name: string;
  gateway: string;
  subnet: string;
  /** the interface a task sees */
  ifname: string;
  /** the node's end of a task's veth: this prefix and 12 characters of the task ID */
  vethPrefix: string;
  /** whether its ports may reach each other */
  icc: boolean;
  /** the nftables tables of its rules, in the node's namespace */
  table: string;
  /** route_localnet: the node's own 127.0.0.1 may reach a published port through it */
  localnet?: boolean;
}

/**
 * The mark of a packet of a connection the node DNATed (a published port) arriving from one of its
 * bridges: a task reaching a published port through its own node. With br_netfilter such a packet
 * is bridged port to port to the mesh sandbox, which the isolation below lets through.
 */
export const HAIRPIN_MARK = 0x4000;

/** Docker's docker_gwbridge: egress for tasks on overlays. */
export const GWBRIDGE: LocalBridgeConfig = {
  name: 'docker_gwbridge',
  gateway: '172.18.0.1',
  subnet: '172.18.0.0/16',
  ifname: 'gw0',
  vethPrefix: 'vgw',
  icc: false,
  table: 'vxswarm_gw',
  localnet: true,
};

/** Docker's default `bridge` network (docker0): the network of a task that names none. */
export const DOCKER0: LocalBridgeConfig = {
  name: 'docker0',
  gateway: '172.17.0.1',
  subnet: '172.17.0.0/16',
  ifname: 'eth0',
  vethPrefix: 'vbr',
  icc: true,
  table: 'vxswarm_br',
};

/** The node's masquerade and, without icc, the bridge's port isolation, in the node's namespace. */
function rules(b: LocalBridgeConfig): string {
  return [
    `table ip ${b.table} {`,
    `  chain post { type nat hook postrouting priority 100; policy accept; ip saddr ${b.subnet} oifname != "${b.name}" masquerade; }`,
    // route_localnet lets the node's loopback out onto the bridge; nothing from the bridge may
    // reach the node's loopback services in return (CVE-2020-8558).
    ...(b.localnet ? [`  chain martians { type filter hook prerouting priority -300; policy accept; iifname "${b.name}" ip daddr 127.0.0.0/8 drop; }`] : []),
    '}',
    ...(b.icc
      ? []
      : [
          `table bridge ${b.table} {`,
          `  chain isolate { type filter hook forward priority 0; policy accept; meta mark & ${HAIRPIN_MARK} == ${HAIRPIN_MARK} accept; iifname "${b.vethPrefix}*" oifname "${b.vethPrefix}*" drop; }`,
          '}',
        ]),
  ].join('\n');
}

export class LocalBridge {
  /** task namespace → its address on the bridge */
  private readonly used = new Map<string, number>();
  private next: number;
  private readonly first: number;
  private readonly last: number;
  private readonly lock = new Mutex();
  private started: Promise<void> | undefined;

  constructor(
    readonly cfg: LocalBridgeConfig,
    /** prefixes of the namespaces that may have a leg here (tasks', the mesh sandbox's), read back on start */
    private readonly netnsPrefixes: string[],
    private readonly log: Logger,
  ) {
    const c = parseCidr(cfg.subnet);
    this.first = c.network + 2;
    this.last = c.network + 2 ** (32 - c.prefix) - 2;
    this.next = this.first;
  }

  /** The veth name of a task's leg. */
  vethOf(taskId: string): string {
    return `${this.cfg.vethPrefix}${taskId.slice(0, 12)}`;
  }

  /** The bridge, forwarding, masquerade and isolation (idempotent); the addresses tasks already hold. */
  start(): Promise<void> {
    this.started ??= this.setup().catch((e: unknown) => {
      this.started = undefined;
      throw e;
    });
    return this.started;
  }

  /** set up on this node (start() done) */
  up = false;

  private async setup(): Promise<void> {
    const r = Rtnl.open();
    try {
      await r.ensureBridge(this.cfg.name, { mtu: 1500 });
      const br = await r.mustGetLink(this.cfg.name);
      await r.replaceAddress(br.index, this.cfg.gateway, parseCidr(this.cfg.subnet).prefix);
      if (!br.up) await r.setLink(br.index, { up: true });
    } finally {
      r.close();
    }
    writeSysctl(undefined, 'net.ipv4.ip_forward', '1');
    if (this.cfg.localnet) writeSysctl(undefined, `net.ipv4.conf.${this.cfg.name}.route_localnet`, '1');
    // Replaced whole on every start: ours alone, and nothing else refers to it.
    const t = this.cfg.table;
    await nftAsync('', `table ip ${t}\ndelete table ip ${t}\ntable bridge ${t}\ndelete table bridge ${t}\n${rules(this.cfg)}`);
    // Written once: the kernel thread need not keep the node's ruleset for it.
    await nftForgetAsync('');
    this.up = true;
    for (const ns of this.netnsPrefixes.flatMap((p) => listNetns(p))) {
      const c = Rtnl.open(ns);
      try {
        const link = (await c.getLinks()).find((l) => l.name === this.cfg.ifname && l.kind === 'veth');
        const a = link && (await c.getAddresses()).find((x) => x.index === link.index);
        if (a && contains(parseCidr(this.cfg.subnet), parseIp(a.ip))) this.used.set(ns, parseIp(a.ip));
      } catch (e) {
        this.log.debug('could not read a task namespace', { netns: ns, error: errorMessage(e) });
      } finally {
        c.close();
      }
    }
  }

  /** Gives task namespace `netns` its leg on the bridge and its default route there. */
  attach(netns: string, taskId: string): Promise<string> {
    const vethName = this.vethOf(taskId);
    return this.lock.lock(async () => {
      await this.start();
      const ip = this.used.get(netns) ?? this.allocate(netns);
      const r = Rtnl.open();
      try {
        await r.deleteLink(vethName).catch(() => false);
        await r.createVeth(vethName, { mtu: 1500, peerName: this.cfg.ifname, peerNetns: netns });
        const v = await r.mustGetLink(vethName);
        const br = await r.mustGetLink(this.cfg.name);
        await r.setLink(v.index, { master: br.index, up: true });
      } finally {
        r.close();
      }
      const c = Rtnl.open(netns);
      try {
        const links = await c.getLinks();
        const lo = links.find((l) => l.name === 'lo');
        if (lo && !lo.up) await c.setLink(lo.index, { up: true });
        const eth = links.find((l) => l.name === this.cfg.ifname);
        if (!eth) throw new KernelError('get link', `${this.cfg.ifname} in netns ${netns}`, 19, 'ENODEV');
        await c.replaceAddress(eth.index, formatIp(ip), parseCidr(this.cfg.subnet).prefix);
        await c.setLink(eth.index, { up: true });
        // The way out is here (an overlay endpoint of a task sets no default route).
        await c.replaceRoute({ dst: '0.0.0.0', prefix: 0, gateway: this.cfg.gateway });
      } finally {
        c.close();
      }
      return formatIp(ip);
    });
  }

  /** The address namespace `netns` holds on the bridge, if any. */
  addressOf(netns: string): string | undefined {
    const ip = this.used.get(netns);
    return ip === undefined ? undefined : formatIp(ip);
  }

  /** The namespace went (its veth with it): its address is free again. */
  release(netns: string): void {
    this.used.delete(netns);
  }

  private allocate(netns: string): number {
    const taken = new Set(this.used.values());
    for (let i = 0; i <= this.last - this.first; i++) {
      const ip = this.next;
      this.next = ip >= this.last ? this.first : ip + 1;
      if (!taken.has(ip)) {
        this.used.set(netns, ip);
        return ip;
      }
    }
    throw new ConflictError(`no address left on ${this.cfg.name} (${this.cfg.subnet}) for another task on this node`);
  }
}
