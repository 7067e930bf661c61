// rtnetlink over NETLINK_ROUTE sockets bound to one network namespace.
// Every mutation uses create-or-replace flags. Requests issued together are batched into
// one sendmsg and matched to their ACKs by sequence number; at most WINDOW are outstanding
// (thousands at once overrun the socket's receive buffer).
// Dumps go over separate sockets, one dump per socket at a time: the kernel allows one dump
// per socket (EBUSY), and a dump's parts must not interleave with other replies.
import { createNetlink, Protocol, type NetlinkSocket } from 'netlink';
import { KernelError } from '../core/errors.js';
import { formatMac } from '../core/ids.js';
import { Mutex } from '../core/mutex.js';
import { bufferToIp, formatIp, ipToBuffer, parseIp } from '../core/ipv4.js';
import { errnoName } from './libc.js';
import { inNetns, openNetns } from './netns.js';
import { attr, macToBuffer, nested, parseAttrs, readStr, readU32, readU8, str, u16be, u32, u8, type Attr } from './nlattr.js';
import fs from 'node:fs';

// Requests are packed into batches (one sendmsg each) and at most WINDOW await their ACK.
// Each ACK costs ~1 KiB of receive buffer; an overrun loses ACKs (ENOBUFS), so the buffer is
// raised to RCVBUF (capped by net.core.rmem_max) and the window sized to fit the default too.
const BATCH = 128;
const WINDOW = 1024;
const RCVBUF = 4 << 20;
const SNDBUF = 1 << 20;
const F_REQUEST = 1,
  F_ACK = 4;

// Message types (linux/rtnetlink.h)
const RTM_NEWLINK = 16,
  RTM_DELLINK = 17,
  RTM_GETLINK = 18,
  RTM_SETLINK = 19;
const RTM_NEWADDR = 20,
  RTM_DELADDR = 21,
  RTM_GETADDR = 22;
const RTM_NEWROUTE = 24,
  RTM_DELROUTE = 25,
  RTM_GETROUTE = 26;
const RTM_NEWNEIGH = 28,
  RTM_DELNEIGH = 29,
  RTM_GETNEIGH = 30;
const RTM_NEWRULE = 32,
  RTM_DELRULE = 33,
  RTM_GETRULE = 34;
const NLMSG_ERROR = 2;
// Flags (linux/netlink.h)
const F_DUMP = 0x300,
  F_REPLACE = 0x100,
  F_EXCL = 0x200,
  F_CREATE = 0x400;
// Families
const AF_UNSPEC = 0,
  AF_INET = 2,
  AF_BRIDGE = 7;
// IFLA_*
const IFLA_ADDRESS = 1,
  IFLA_IFNAME = 3,
  IFLA_MTU = 4,
  IFLA_LINK = 5,
  IFLA_MASTER = 10,
  IFLA_LINKINFO = 18,
  IFLA_NET_NS_FD = 28;
const IFLA_INFO_KIND = 1,
  IFLA_INFO_DATA = 2;
const VETH_INFO_PEER = 1;
const IFLA_VXLAN_ID = 1,
  IFLA_VXLAN_LOCAL = 4,
  IFLA_VXLAN_TTL = 5,
  IFLA_VXLAN_LEARNING = 7,
  IFLA_VXLAN_PROXY = 11,
  IFLA_VXLAN_L2MISS = 13,
  IFLA_VXLAN_L3MISS = 14,
  IFLA_VXLAN_PORT = 15;
const IFLA_BR_STP_STATE = 5,
  IFLA_BR_MCAST_SNOOPING = 23,
  IFLA_BR_NF_CALL_IPTABLES = 36,
  IFLA_BR_NF_CALL_IP6TABLES = 37,
  IFLA_BR_NF_CALL_ARPTABLES = 38;
const IFF_UP = 1;
// IFA_* / RTA_* / NDA_*
const IFA_ADDRESS = 1,
  IFA_LOCAL = 2;
const RTA_DST = 1,
  RTA_OIF = 4,
  RTA_GATEWAY = 5,
  RTA_TABLE = 15;
const RT_TABLE_MAIN = 254,
  RTPROT_STATIC = 4,
  RTPROT_BOOT = 3,
  RT_SCOPE_UNIVERSE = 0,
  RT_SCOPE_LINK = 253,
  RTN_UNICAST = 1;
const NDA_DST = 1,
  NDA_LLADDR = 2;
// FRA_* (linux/fib_rules.h)
const FRA_PRIORITY = 6,
  FRA_FWMARK = 10,
  FRA_TABLE = 15,
  FRA_FWMASK = 16,
  FR_ACT_TO_TBL = 1;
export const NUD_PERMANENT = 0x80;
const NTF_SELF = 0x02;

export interface LinkInfo {
  index: number;
  name: string;
  kind?: string;
  mtu: number;
  up: boolean;
  mac?: string;
  master?: number;
  /** ifindex of the peer (veth) in its own namespace */
  link?: number;
  vxlan?: { vni: number; port: number; local?: string; learning: boolean; proxy: boolean };
}

export interface AddrInfo {
  index: number;
  ip: string;
  prefix: number;
}

export interface RouteInfo {
  dst: string;
  prefix: number;
  gateway?: string;
  oif?: number;
  protocol: number;
  table: number;
}

/** A policy routing rule: packets carrying `fwmark` look up `table`. */
export interface RuleInfo {
  priority: number;
  fwmark: number;
  table: number;
}

export interface NeighInfo {
  index: number;
  ip: string;
  mac?: string;
  state: number;
}

export interface FdbInfo {
  index: number;
  mac: string;
  dst?: string;
  state: number;
  self: boolean;
  master?: number;
}

export interface VxlanOptions {
  vni: number;
  port: number;
  /** underlay address the UDP socket binds to */
  local?: string;
  mtu: number;
  learning: boolean;
  proxy: boolean;
  /** create the device straight into this namespace (its socket stays in ours) */
  netns?: string;
}

export interface VethOptions {
  mtu: number;
  mac?: string;
  peerName: string;
  peerMac?: string;
  /** namespace for the peer end */
  peerNetns?: string;
}

function ifinfomsg(index = 0, flags = 0, change = 0, family = AF_UNSPEC): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(family, 0);
  b.writeInt32LE(index, 4);
  b.writeUInt32LE(flags, 8);
  b.writeUInt32LE(change, 12);
  return b;
}

function ifaddrmsg(index: number, prefix: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(AF_INET, 0);
  b.writeUInt8(prefix, 1);
  b.writeUInt8(RT_SCOPE_UNIVERSE, 3);
  b.writeUInt32LE(index, 4);
  return b;
}

function rtmsg(prefix: number, scope: number, protocol = RTPROT_STATIC, table = RT_TABLE_MAIN): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(AF_INET, 0);
  b.writeUInt8(prefix, 1);
  // A table past 255 is named by RTA_TABLE alone.
  b.writeUInt8(table > 255 ? 0 : table, 4);
  b.writeUInt8(protocol, 5);
  b.writeUInt8(scope, 6);
  b.writeUInt8(RTN_UNICAST, 7);
  return b;
}

/** struct fib_rule_hdr: IPv4, action "to table" (the table itself goes in FRA_TABLE). */
function fibRuleHdr(): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(AF_INET, 0);
  b.writeUInt8(FR_ACT_TO_TBL, 7);
  return b;
}

function ndmsg(family: number, index: number, state: number, flags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(family, 0);
  b.writeInt32LE(index, 4);
  b.writeUInt16LE(state, 8);
  b.writeUInt8(flags, 10);
  return b;
}

function withNetnsFd<T>(netns: string | undefined, fn: (fd: number | undefined) => Promise<T>): Promise<T> {
  if (netns === undefined) return fn(undefined);
  const fd = openNetns(netns);
  return fn(fd).finally(() => fs.closeSync(fd));
}

interface Pending {
  seq: number;
  msg: Buffer;
  op: string;
  object: string;
  replies: Buffer[];
  /** set on the last request of a batch: the requests its ACK completes */
  batch?: Pending[];
  resolve: (v: Buffer[]) => void;
  reject: (e: Error) => void;
}

function nlmsg(type: number, flags: number, seq: number, payload: Buffer[]): Buffer {
  const body = Buffer.concat(payload);
  const h = Buffer.alloc(16);
  h.writeUInt32LE(16 + body.length, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(flags, 6);
  h.writeUInt32LE(seq, 8);
  return Buffer.concat([h, body]);
}

/** Every request and every error of every socket of this process (metrics). */
export const rtnlStats = { requests: 0, errors: 0 };

export class Rtnl {
  private readonly dumpLocks = [new Mutex(), new Mutex()];
  private dumpTurn = 0;
  private queue: Pending[] = [];
  private head = 0;
  private readonly inflight = new Map<number, Pending>();
  private seq = 0x10000000;
  private flushScheduled = false;
  private closed = false;

  private constructor(
    private readonly sock: NetlinkSocket,
    private readonly dumpSocks: NetlinkSocket[],
    /** namespace name, or undefined for the process's own */
    readonly netns: string | undefined,
  ) {
    // Our own requests never register with the library, so every reply reaches us here.
    sock.on('message', (msgs) => this.onReplies(msgs));
    sock.on('invalid', (_err, msgs) => this.onReplies(Array.isArray(msgs) ? msgs : []));
    // ENOBUFS: ACKs were lost, so no request in flight can know how it ended (an unheard 'error' would end the process)
    sock.on('error', (e: NodeJS.ErrnoException) => {
      const err = new KernelError('netlink', this.where('socket'), Math.abs(e.errno ?? 105), e.code ?? 'ENOBUFS', e.message);
      for (const p of this.inflight.values()) p.reject(err);
      this.inflight.clear();
      this.pump();
    });
  }

  /** Opens sockets living in `netns` (the process's namespace when undefined). */
  static open(netns?: string): Rtnl {
    const make = (): NetlinkSocket => createNetlink(Protocol.ROUTE, { recvBufferSize: RCVBUF, sendBufferSize: SNDBUF });
    const [sock, d1, d2] = inNetns(netns, () => [make(), make(), make()] as const);
    return new Rtnl(sock, [d1, d2], netns);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const err = new KernelError('netlink', this.where('socket'), 9, 'EBADF', 'socket closed');
    for (const p of [...this.queue.slice(this.head), ...this.inflight.values()]) p.reject(err);
    this.queue = [];
    this.head = 0;
    this.inflight.clear();
    this.sock.close();
    for (const d of this.dumpSocks) d.close();
  }

  private where(object: string): string {
    return this.netns ? `${object} in netns ${this.netns}` : object;
  }

  private request(op: string, object: string, type: number, flags: number, payload: Buffer[]): Promise<Buffer[]> {
    rtnlStats.requests++;
    return this.send(op, object, type, flags, payload).catch((e: unknown) => {
      rtnlStats.errors++;
      throw e;
    });
  }

  private send(op: string, object: string, type: number, flags: number, payload: Buffer[]): Promise<Buffer[]> {
    if ((flags & F_DUMP) === F_DUMP) {
      // Two dump sockets, one dump each at a time, so a neighbour and an FDB dump run side by side.
      const i = this.dumpTurn++ % this.dumpSocks.length;
      return this.dumpLocks[i]!.lock(() => this.dump(this.dumpSocks[i]!, op, object, type, flags, payload));
    }
    if (this.closed) return Promise.reject(new KernelError(op, this.where(object), 9, 'EBADF', 'socket closed'));
    return new Promise<Buffer[]>((resolve, reject) => {
      this.seq = this.seq >= 0x7fffffff ? 0x10000000 : this.seq + 1;
      this.queue.push({ seq: this.seq, msg: nlmsg(type, flags | F_REQUEST, this.seq, payload), op, object, replies: [], resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        queueMicrotask(() => {
          this.flushScheduled = false;
          this.pump();
        });
      }
    });
  }

  private pump(): void {
    while (this.head < this.queue.length && this.inflight.size < WINDOW && !this.closed) {
      // Read by index: splicing the front of a 40k-entry queue per batch is quadratic.
      const batch = this.queue.slice(this.head, this.head + Math.min(BATCH, WINDOW - this.inflight.size));
      this.head += batch.length;
      if (this.head === this.queue.length) {
        this.queue = [];
        this.head = 0;
      }
      for (const p of batch) this.inflight.set(p.seq, p);
      // Only the last request asks for an ACK: the kernel handles a batch in order and reports
      // every failure anyway, so that one ACK completes all requests without an error of their own.
      const last = batch[batch.length - 1]!;
      last.msg.writeUInt16LE(last.msg.readUInt16LE(6) | F_ACK, 6);
      last.batch = batch;
      this.sock.socket.send(Buffer.concat(batch.map((p) => p.msg)), {}, (error) => {
        if (!error) return;
        for (const p of batch) {
          if (!this.inflight.delete(p.seq)) continue;
          p.reject(new KernelError(p.op, this.where(p.object), Math.abs(error.errno ?? 5), error.code ?? 'EIO', error.message));
        }
        this.pump();
      });
    }
    this.sock.ref(this.inflight.size > 0);
  }

  private onReplies(msgs: Array<{ type: number; seq: number; data: Buffer }>): void {
    for (const m of msgs) {
      const p = this.inflight.get(m.seq);
      if (!p) continue;
      if (m.type !== NLMSG_ERROR) {
        p.replies.push(m.data);
        continue;
      }
      this.inflight.delete(m.seq);
      const errno = -m.data.readInt32LE(0);
      if (errno !== 0) p.reject(new KernelError(p.op, this.where(p.object), errno, errnoName(errno)));
      else if (!p.batch) p.resolve(p.replies);
      for (const q of p.batch ?? []) {
        if (q !== p && !this.inflight.delete(q.seq)) continue;
        if (q !== p || errno === 0) q.resolve(q.replies);
      }
    }
    this.pump();
  }

  private async dump(sock: NetlinkSocket, op: string, object: string, type: number, flags: number, payload: Buffer[]): Promise<Buffer[]> {
    const [msgs] = await sock.request(type, payload, { flags, checkError: false });
    const out: Buffer[] = [];
    for (const m of msgs) {
      if (m.type === NLMSG_ERROR) {
        const errno = -m.data.readInt32LE(0);
        if (errno !== 0) throw new KernelError(op, this.where(object), errno, errnoName(errno));
        continue;
      }
      out.push(m.data);
    }
    return out;
  }

  // ---- links ----

  async getLinks(): Promise<LinkInfo[]> {
    const msgs = await this.request('dump links', 'all', RTM_GETLINK, F_DUMP, [ifinfomsg()]);
    return msgs.map(parseLink);
  }

  async getLink(name: string): Promise<LinkInfo | undefined> {
    try {
      const [m] = await this.request('get link', name, RTM_GETLINK, 0, [ifinfomsg(), str(IFLA_IFNAME, name)]);
      return m ? parseLink(m) : undefined;
    } catch (e) {
      if (e instanceof KernelError && (e.code === 'ENODEV' || e.code === 'ENOENT')) return undefined;
      throw e;
    }
  }

  async mustGetLink(name: string): Promise<LinkInfo> {
    const l = await this.getLink(name);
    if (!l) throw new KernelError('get link', this.where(name), 19, 'ENODEV');
    return l;
  }

  private async newLink(name: string, kind: string, attrs: Attr[], data: Attr[] | undefined, exclusive: boolean): Promise<void> {
    const linkinfo = nested(IFLA_LINKINFO, [str(IFLA_INFO_KIND, kind), ...(data ? [nested(IFLA_INFO_DATA, data)] : [])]);
    await this.request(`create ${kind}`, name, RTM_NEWLINK, F_CREATE | (exclusive ? F_EXCL : 0), [ifinfomsg(), str(IFLA_IFNAME, name), ...attrs, linkinfo]);
  }

  /** Creates a bridge, or updates an existing one of that name. Bridge netfilter hooks off: no iptables in the data path. */
  async ensureBridge(name: string, opts: { mtu: number; mac?: string }): Promise<void> {
    const attrs = [u32(IFLA_MTU, opts.mtu), ...(opts.mac ? [attr(IFLA_ADDRESS, macToBuffer(opts.mac))] : [])];
    const data = [
      u32(IFLA_BR_STP_STATE, 0),
      u8(IFLA_BR_MCAST_SNOOPING, 0),
      u8(IFLA_BR_NF_CALL_IPTABLES, 0),
      u8(IFLA_BR_NF_CALL_IP6TABLES, 0),
      u8(IFLA_BR_NF_CALL_ARPTABLES, 0),
    ];
    await this.replaceIfKindDiffers(name, 'bridge');
    await this.newLink(name, 'bridge', attrs, data, false);
  }

  /** Creates a VXLAN device (learning off, proxy ARP on, no default destination). */
  async createVxlan(name: string, o: VxlanOptions): Promise<void> {
    const data = [
      u32(IFLA_VXLAN_ID, o.vni),
      u16be(IFLA_VXLAN_PORT, o.port),
      u8(IFLA_VXLAN_LEARNING, o.learning ? 1 : 0),
      u8(IFLA_VXLAN_PROXY, o.proxy ? 1 : 0),
      u8(IFLA_VXLAN_L2MISS, 0),
      u8(IFLA_VXLAN_L3MISS, 0),
      u8(IFLA_VXLAN_TTL, 0),
      ...(o.local ? [attr(IFLA_VXLAN_LOCAL, ipToBuffer(parseIpStrict(o.local)))] : []),
    ];
    await withNetnsFd(o.netns, (fd) => this.newLink(name, 'vxlan', [u32(IFLA_MTU, o.mtu), ...(fd !== undefined ? [u32(IFLA_NET_NS_FD, fd)] : [])], data, true));
  }

  /** Creates a veth pair; the peer may go straight into another namespace under its final name. */
  async createVeth(name: string, o: VethOptions): Promise<void> {
    await withNetnsFd(o.peerNetns, async (fd) => {
      const peer = Buffer.concat([
        ifinfomsg(),
        str(IFLA_IFNAME, o.peerName),
        u32(IFLA_MTU, o.mtu),
        ...(o.peerMac ? [attr(IFLA_ADDRESS, macToBuffer(o.peerMac))] : []),
        ...(fd !== undefined ? [u32(IFLA_NET_NS_FD, fd)] : []),
      ]);
      const attrs = [u32(IFLA_MTU, o.mtu), ...(o.mac ? [attr(IFLA_ADDRESS, macToBuffer(o.mac))] : [])];
      await this.newLink(name, 'veth', attrs, [attr(VETH_INFO_PEER, peer)], true);
    });
  }

  async setLink(index: number, o: { up?: boolean; mtu?: number; master?: number; name?: string; mac?: string; netns?: string }): Promise<void> {
    const flags = o.up ? IFF_UP : 0;
    const change = o.up === undefined ? 0 : IFF_UP;
    await withNetnsFd(o.netns, (fd) => {
      const attrs = [
        ...(o.mtu !== undefined ? [u32(IFLA_MTU, o.mtu)] : []),
        ...(o.master !== undefined ? [u32(IFLA_MASTER, o.master)] : []),
        ...(o.name !== undefined ? [str(IFLA_IFNAME, o.name)] : []),
        ...(o.mac !== undefined ? [attr(IFLA_ADDRESS, macToBuffer(o.mac))] : []),
        ...(fd !== undefined ? [u32(IFLA_NET_NS_FD, fd)] : []),
      ];
      return this.request('set link', `ifindex ${index}`, RTM_SETLINK, 0, [ifinfomsg(index, flags, change), ...attrs]);
    });
  }

  async setUp(name: string): Promise<void> {
    const l = await this.mustGetLink(name);
    await this.setLink(l.index, { up: true });
  }

  /** Deletes a link by name or index; a missing link is not an error. */
  async deleteLink(nameOrIndex: string | number): Promise<boolean> {
    try {
      const payload = typeof nameOrIndex === 'number' ? [ifinfomsg(nameOrIndex)] : [ifinfomsg(), str(IFLA_IFNAME, nameOrIndex)];
      await this.request('delete link', String(nameOrIndex), RTM_DELLINK, 0, payload);
      return true;
    } catch (e) {
      if (e instanceof KernelError && (e.code === 'ENODEV' || e.code === 'ENOENT')) return false;
      throw e;
    }
  }

  private async replaceIfKindDiffers(name: string, kind: string): Promise<void> {
    const existing = await this.getLink(name);
    if (existing && existing.kind !== kind) await this.deleteLink(existing.index);
  }

  // ---- addresses ----

  async replaceAddress(index: number, ip: string, prefix: number): Promise<void> {
    const a = ipToBuffer(parseIpStrict(ip));
    await this.request('add address', `${ip}/${prefix} on ifindex ${index}`, RTM_NEWADDR, F_CREATE | F_REPLACE, [
      ifaddrmsg(index, prefix),
      attr(IFA_LOCAL, a),
      attr(IFA_ADDRESS, a),
    ]);
  }

  async deleteAddress(index: number, ip: string, prefix: number): Promise<void> {
    const a = ipToBuffer(parseIpStrict(ip));
    await this.request('delete address', `${ip}/${prefix}`, RTM_DELADDR, 0, [ifaddrmsg(index, prefix), attr(IFA_LOCAL, a)]);
  }

  async getAddresses(): Promise<AddrInfo[]> {
    const msgs = await this.request('dump addresses', 'all', RTM_GETADDR, F_DUMP, [ifaddrmsg(0, 0)]);
    const out: AddrInfo[] = [];
    for (const m of msgs) {
      if (m.readUInt8(0) !== AF_INET) continue;
      const attrs = parseAttrs(m, 8);
      const a = attrs.get(IFA_LOCAL) ?? attrs.get(IFA_ADDRESS);
      if (a) out.push({ index: m.readUInt32LE(4), ip: formatIp(bufferToIp(a)), prefix: m.readUInt8(1) });
    }
    return out;
  }

  // ---- routes ----

  /** Adds or replaces a route (in the main table unless `table`); without a gateway it is a link-scope route on `oif`. */
  async replaceRoute(r: { dst: string; prefix: number; gateway?: string; oif?: number; table?: number }): Promise<void> {
    const table = r.table ?? RT_TABLE_MAIN;
    const attrs = [
      u32(RTA_TABLE, table),
      ...(r.prefix > 0 ? [attr(RTA_DST, ipToBuffer(parseIpStrict(r.dst)))] : []),
      ...(r.gateway ? [attr(RTA_GATEWAY, ipToBuffer(parseIpStrict(r.gateway)))] : []),
      ...(r.oif !== undefined ? [u32(RTA_OIF, r.oif)] : []),
    ];
    const scope = r.gateway ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
    await this.request(
      'add route',
      `${r.dst}/${r.prefix}${r.gateway ? ` via ${r.gateway}` : ''}${r.table ? ` table ${r.table}` : ''}`,
      RTM_NEWROUTE,
      F_CREATE | F_REPLACE,
      [rtmsg(r.prefix, scope, RTPROT_STATIC, table), ...attrs],
    );
  }

  async deleteRoute(r: { dst: string; prefix: number; table?: number }): Promise<void> {
    const table = r.table ?? RT_TABLE_MAIN;
    const attrs = [u32(RTA_TABLE, table), ...(r.prefix > 0 ? [attr(RTA_DST, ipToBuffer(parseIpStrict(r.dst)))] : [])];
    await this.request('delete route', `${r.dst}/${r.prefix}`, RTM_DELROUTE, 0, [rtmsg(r.prefix, RT_SCOPE_UNIVERSE, RTPROT_BOOT, table), ...attrs]);
  }

  /** The routes of one table (the main one unless said), or of all. */
  async getRoutes(table: number | 'all' = RT_TABLE_MAIN): Promise<RouteInfo[]> {
    const msgs = await this.request('dump routes', 'all', RTM_GETROUTE, F_DUMP, [rtmsg(0, 0, 0)]);
    const out: RouteInfo[] = [];
    for (const m of msgs) {
      if (m.readUInt8(0) !== AF_INET) continue;
      const attrs = parseAttrs(m, 12);
      const t = readU32(attrs.get(RTA_TABLE)) ?? m.readUInt8(4);
      if (table !== 'all' && t !== table) continue;
      const dst = attrs.get(RTA_DST);
      const gw = attrs.get(RTA_GATEWAY);
      out.push({
        dst: dst ? formatIp(bufferToIp(dst)) : '0.0.0.0',
        prefix: m.readUInt8(1),
        ...(gw ? { gateway: formatIp(bufferToIp(gw)) } : {}),
        ...(attrs.has(RTA_OIF) ? { oif: readU32(attrs.get(RTA_OIF))! } : {}),
        protocol: m.readUInt8(5),
        table: t,
      });
    }
    return out;
  }

  // ---- policy routing rules ----

  /** Adds `fwmark <mark> lookup <table>` at `priority`; one already there is fine. */
  async addRule(r: RuleInfo): Promise<void> {
    try {
      await this.request('add rule', `fwmark ${r.fwmark} lookup ${r.table}`, RTM_NEWRULE, F_CREATE | F_EXCL, [
        fibRuleHdr(),
        u32(FRA_PRIORITY, r.priority),
        u32(FRA_FWMARK, r.fwmark),
        u32(FRA_FWMASK, 0xffffffff),
        u32(FRA_TABLE, r.table),
      ]);
    } catch (e) {
      if (!(e instanceof KernelError && e.code === 'EEXIST')) throw e;
    }
  }

  async deleteRule(r: RuleInfo): Promise<void> {
    await this.request('delete rule', `fwmark ${r.fwmark} lookup ${r.table}`, RTM_DELRULE, 0, [
      fibRuleHdr(),
      u32(FRA_PRIORITY, r.priority),
      u32(FRA_FWMARK, r.fwmark),
      u32(FRA_FWMASK, 0xffffffff),
      u32(FRA_TABLE, r.table),
    ]);
  }

  /** The IPv4 rules that match a firewall mark. */
  async getRules(): Promise<RuleInfo[]> {
    const msgs = await this.request('dump rules', 'all', RTM_GETRULE, F_DUMP, [fibRuleHdr()]);
    const out: RuleInfo[] = [];
    for (const m of msgs) {
      if (m.readUInt8(0) !== AF_INET || m.readUInt8(7) !== FR_ACT_TO_TBL) continue;
      const a = parseAttrs(m, 12);
      const fwmark = readU32(a.get(FRA_FWMARK));
      if (fwmark === undefined) continue;
      out.push({ priority: readU32(a.get(FRA_PRIORITY)) ?? 0, fwmark, table: readU32(a.get(FRA_TABLE)) ?? m.readUInt8(4) });
    }
    return out;
  }

  // ---- neighbours (ARP) ----

  async replaceNeigh(index: number, ip: string, mac: string): Promise<void> {
    await this.request('add neighbour', `${ip} lladdr ${mac} on ifindex ${index}`, RTM_NEWNEIGH, F_CREATE | F_REPLACE, [
      ndmsg(AF_INET, index, NUD_PERMANENT, 0),
      attr(NDA_DST, ipToBuffer(parseIpStrict(ip))),
      attr(NDA_LLADDR, macToBuffer(mac)),
    ]);
  }

  async deleteNeigh(index: number, ip: string): Promise<boolean> {
    try {
      await this.request('delete neighbour', `${ip} on ifindex ${index}`, RTM_DELNEIGH, 0, [
        ndmsg(AF_INET, index, 0, 0),
        attr(NDA_DST, ipToBuffer(parseIpStrict(ip))),
      ]);
      return true;
    } catch (e) {
      if (e instanceof KernelError && e.code === 'ENOENT') return false;
      throw e;
    }
  }

  async getNeighs(index?: number): Promise<NeighInfo[]> {
    const msgs = await this.request('dump neighbours', 'all', RTM_GETNEIGH, F_DUMP, [ndmsg(AF_INET, 0, 0, 0)]);
    const out: NeighInfo[] = [];
    for (const m of msgs) {
      if (m.readUInt8(0) !== AF_INET) continue;
      const idx = m.readInt32LE(4);
      if (index !== undefined && idx !== index) continue;
      const attrs = parseAttrs(m, 12);
      const dst = attrs.get(NDA_DST);
      const ll = attrs.get(NDA_LLADDR);
      if (!dst || dst.length !== 4) continue;
      out.push({ index: idx, ip: formatIp(bufferToIp(dst)), ...(ll ? { mac: formatMac(ll) } : {}), state: m.readUInt16LE(8) });
    }
    return out;
  }

  // ---- bridge FDB ----

  /** `bridge fdb replace MAC dev IDX dst DST self permanent` */
  async replaceFdb(index: number, mac: string, dst: string): Promise<void> {
    await this.request('add fdb entry', `${mac} dst ${dst} on ifindex ${index}`, RTM_NEWNEIGH, F_CREATE | F_REPLACE, [
      ndmsg(AF_BRIDGE, index, NUD_PERMANENT, NTF_SELF),
      attr(NDA_LLADDR, macToBuffer(mac)),
      attr(NDA_DST, ipToBuffer(parseIpStrict(dst))),
    ]);
  }

  async deleteFdb(index: number, mac: string, dst?: string): Promise<boolean> {
    try {
      await this.request('delete fdb entry', `${mac} on ifindex ${index}`, RTM_DELNEIGH, 0, [
        ndmsg(AF_BRIDGE, index, 0, NTF_SELF),
        attr(NDA_LLADDR, macToBuffer(mac)),
        ...(dst ? [attr(NDA_DST, ipToBuffer(parseIpStrict(dst)))] : []),
      ]);
      return true;
    } catch (e) {
      if (e instanceof KernelError && e.code === 'ENOENT') return false;
      throw e;
    }
  }

  async getFdb(index?: number): Promise<FdbInfo[]> {
    const msgs = await this.request('dump fdb', 'all', RTM_GETNEIGH, F_DUMP, [ndmsg(AF_BRIDGE, 0, 0, 0)]);
    const out: FdbInfo[] = [];
    for (const m of msgs) {
      if (m.readUInt8(0) !== AF_BRIDGE) continue;
      const idx = m.readInt32LE(4);
      if (index !== undefined && idx !== index) continue;
      const attrs = parseAttrs(m, 12);
      const ll = attrs.get(NDA_LLADDR);
      const dst = attrs.get(NDA_DST);
      if (!ll) continue;
      out.push({
        index: idx,
        mac: formatMac(ll),
        ...(dst && dst.length === 4 ? { dst: formatIp(bufferToIp(dst)) } : {}),
        state: m.readUInt16LE(8),
        self: (m.readUInt8(10) & NTF_SELF) !== 0,
      });
    }
    return out;
  }
}

/** Our callers validate addresses first; one that slips through is a kernel-call error here. */
function parseIpStrict(ip: string): number {
  try {
    return parseIp(ip);
  } catch {
    throw new KernelError('parse', ip, 22, 'EINVAL', 'not an IPv4 address');
  }
}

function parseLink(m: Buffer): LinkInfo {
  const attrs = parseAttrs(m, 16);
  const flags = m.readUInt32LE(8);
  const info: LinkInfo = {
    index: m.readInt32LE(4),
    name: readStr(attrs.get(IFLA_IFNAME)) ?? '',
    mtu: readU32(attrs.get(IFLA_MTU)) ?? 0,
    up: (flags & IFF_UP) !== 0,
  };
  const mac = attrs.get(IFLA_ADDRESS);
  if (mac && mac.length === 6) info.mac = formatMac(mac);
  const master = readU32(attrs.get(IFLA_MASTER));
  if (master !== undefined) info.master = master;
  const link = readU32(attrs.get(IFLA_LINK));
  if (link !== undefined) info.link = link;
  const li = attrs.get(IFLA_LINKINFO);
  if (li) {
    const lia = parseAttrs(li);
    const kind = readStr(lia.get(IFLA_INFO_KIND));
    if (kind) info.kind = kind;
    const data = lia.get(IFLA_INFO_DATA);
    if (kind === 'vxlan' && data) {
      const d = parseAttrs(data);
      const local = d.get(IFLA_VXLAN_LOCAL);
      const port = d.get(IFLA_VXLAN_PORT);
      info.vxlan = {
        vni: readU32(d.get(IFLA_VXLAN_ID)) ?? 0,
        port: port ? port.readUInt16BE(0) : 0,
        ...(local ? { local: formatIp(bufferToIp(local)) } : {}),
        learning: readU8(d.get(IFLA_VXLAN_LEARNING)) === 1,
        proxy: readU8(d.get(IFLA_VXLAN_PROXY)) === 1,
      };
    }
  }
  return info;
}
