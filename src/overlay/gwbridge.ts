// Egress, as Docker's docker_gwbridge: a bridge in the node's own namespace (172.18.0.1/16), a veth
// from it into every task that is on a non-internal overlay, the task's default route there, and
// its traffic masqueraded to the node's own address. Ports of the bridge cannot reach each other
// (Docker's enable_icc=false): tasks talk to each other over their overlays, never here.
// Addresses are the node's own; after a restart they are read back from the task namespaces.
import { ConflictError, KernelError, errorMessage } from '../core/errors.js';
import { formatIp, parseIp } from '../core/ipv4.js';
import type { Logger } from '../core/log.js';
import { listNetns, writeSysctl } from '../kernel/netns.js';
import { Rtnl } from '../kernel/rtnl.js';
import { nftAsync } from '../kernel/thread.js';
import { Mutex } from '../core/mutex.js';

export const GWBRIDGE = 'docker_gwbridge';
export const GW_SUBNET = '172.18.0.0/16';
export const GW_GATEWAY = '172.18.0.1';
const PREFIX = 16;
/** the interface a task sees (eth0, eth1, … are its overlays) */
export const GW_IFNAME = 'gw0';
const FIRST = parseIp('172.18.0.2');
const LAST = parseIp('172.18.255.254');

/** the node's end of a task's veth: this prefix and 12 characters of the task ID */
export const VETH_PREFIX = 'vgw';

/** The node's masquerade and the bridge's port isolation, in the node's namespace. */
const RULES = `table ip vxswarm_gw {
  chain post { type nat hook postrouting priority 100; policy accept; ip saddr ${GW_SUBNET} oifname != "${GWBRIDGE}" masquerade; }
}
table bridge vxswarm_gw {
  chain isolate { type filter hook forward priority 0; policy accept; iifname "${VETH_PREFIX}*" oifname "${VETH_PREFIX}*" drop; }
}`;

export class GwBridge {
  /** task namespace → its address on the bridge */
  private readonly used = new Map<string, number>();
  private next = FIRST;
  private readonly lock = new Mutex();
  private started: Promise<void> | undefined;

  constructor(
    /** prefix of this node's task namespaces (`<prefix>c-…`), read back on start */
    private readonly taskNetnsPrefix: string,
    private readonly log: Logger,
  ) {}

  /** The bridge, forwarding, masquerade and isolation (idempotent); the addresses tasks already hold. */
  start(): Promise<void> {
    this.started ??= this.setup().catch((e: unknown) => {
      this.started = undefined;
      throw e;
    });
    return this.started;
  }

  private async setup(): Promise<void> {
    const r = Rtnl.open();
    try {
      await r.ensureBridge(GWBRIDGE, { mtu: 1500 });
      const br = await r.mustGetLink(GWBRIDGE);
      await r.replaceAddress(br.index, GW_GATEWAY, PREFIX);
      if (!br.up) await r.setLink(br.index, { up: true });
    } finally {
      r.close();
    }
    writeSysctl(undefined, 'net.ipv4.ip_forward', '1');
    // Replaced whole on every start: ours alone, and nothing else refers to it.
    await nftAsync('', `table ip vxswarm_gw\ndelete table ip vxswarm_gw\ntable bridge vxswarm_gw\ndelete table bridge vxswarm_gw\n${RULES}`);
    for (const ns of listNetns(this.taskNetnsPrefix)) {
      const c = Rtnl.open(ns);
      try {
        const link = (await c.getLinks()).find((l) => l.name === GW_IFNAME);
        const a = link && (await c.getAddresses()).find((x) => x.index === link.index);
        if (a) this.used.set(ns, parseIp(a.ip));
      } catch (e) {
        this.log.debug('could not read a task namespace', { netns: ns, error: errorMessage(e) });
      } finally {
        c.close();
      }
    }
  }

  /** Gives task namespace `netns` its leg on the bridge and its default route there. */
  attach(netns: string, vethName: string): Promise<string> {
    return this.lock.lock(async () => {
      await this.start();
      const ip = this.used.get(netns) ?? this.allocate(netns);
      const r = Rtnl.open();
      try {
        await r.deleteLink(vethName).catch(() => false);
        await r.createVeth(vethName, { mtu: 1500, peerName: GW_IFNAME, peerNetns: netns });
        const v = await r.mustGetLink(vethName);
        const br = await r.mustGetLink(GWBRIDGE);
        await r.setLink(v.index, { master: br.index, up: true });
      } finally {
        r.close();
      }
      const c = Rtnl.open(netns);
      try {
        const eth = (await c.getLinks()).find((l) => l.name === GW_IFNAME);
        if (!eth) throw new KernelError('get link', `${GW_IFNAME} in netns ${netns}`, 19, 'ENODEV');
        await c.replaceAddress(eth.index, formatIp(ip), PREFIX);
        await c.setLink(eth.index, { up: true });
        // Replaces the overlay's default route, if one was set: the way out is here.
        await c.replaceRoute({ dst: '0.0.0.0', prefix: 0, gateway: GW_GATEWAY });
      } finally {
        c.close();
      }
      return formatIp(ip);
    });
  }

  /** The namespace went (its veth with it): its address is free again. */
  release(netns: string): void {
    this.used.delete(netns);
  }

  private allocate(netns: string): number {
    const taken = new Set(this.used.values());
    for (let i = 0; i <= LAST - FIRST; i++) {
      const ip = this.next;
      this.next = ip >= LAST ? FIRST : ip + 1;
      if (!taken.has(ip)) {
        this.used.set(netns, ip);
        return ip;
      }
    }
    throw new ConflictError(`no address left on ${GWBRIDGE} (${GW_SUBNET}) for another task on this node`);
  }
}
