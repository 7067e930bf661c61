// nf_tables changes as raw netlink batches, for the hot path: one backend added to or removed from
// a service VIP. libnftables refetches its whole ruleset cache after every commit (ours included),
// which costs ~5 ms per change with 1,000 VIPs in a namespace; a batch of our own costs ~0.1 ms,
// whatever the table's size. Only the few objects the load balancer changes are encoded here, the
// way nft encodes them (checked against `strace` of nft 1.0.6), so `nft list` shows them as usual.
// Building tables from nothing and reading them back stay with libnftables (nft.ts).
import { createNetlink, Protocol, type NetlinkSocket } from 'netlink';
import { KernelError } from '../core/errors.js';
import { ipToBuffer, parseIp } from '../core/ipv4.js';
import { errnoName } from './libc.js';
import { inNetns } from './netns.js';
import { attr, nested, str, type Attr } from './nlattr.js';
import { rtnlStats } from './rtnl.js';

/** One change inside a table of family ip. */
export type NftOp =
  | { op: 'addChain'; table: string; chain: string }
  | { op: 'deleteChain'; table: string; chain: string }
  /** every rule of the chain goes (nft's `flush chain`) */
  | { op: 'flushChain'; table: string; chain: string }
  /** `dnat to B` or `dnat to numgen random mod N map { 0 : B0, … }` */
  | { op: 'addDnatRule'; table: string; chain: string; backends: string[] }
  /** `add element … { key : goto chain }` in an ipv4_addr : verdict map */
  | { op: 'addGotoElement'; table: string; map: string; key: string; chain: string }
  | { op: 'deleteElement'; table: string; set: string; key: string };

/** `dnat to …` as nft writes it: one backend, or one picked at random per connection; to `port` when given. */
export function dnatText(backends: string[], port?: number): string {
  const to = port ? `:${port}` : '';
  if (backends.length === 1) return `dnat to ${backends[0]}${to}`;
  return `dnat to numgen random mod ${backends.length} map { ${backends.map((b, i) => `${i} : ${b}`).join(', ')} }${to}`;
}

/** The op as an nft command (for a script that builds a table from nothing through libnftables). */
export function nftText(o: NftOp): string {
  switch (o.op) {
    case 'addChain':
      return `add chain ip ${o.table} ${o.chain}`;
    case 'deleteChain':
      return `delete chain ip ${o.table} ${o.chain}`;
    case 'flushChain':
      return `flush chain ip ${o.table} ${o.chain}`;
    case 'addDnatRule':
      return `add rule ip ${o.table} ${o.chain} ${dnatText(o.backends)}`;
    case 'addGotoElement':
      return `add element ip ${o.table} ${o.map} { ${o.key} : goto ${o.chain} }`;
    case 'deleteElement':
      return `delete element ip ${o.table} ${o.set} { ${o.key} }`;
  }
}

const NFNL_SUBSYS_NFTABLES = 10;
const NFNL_MSG_BATCH_BEGIN = 0x10,
  NFNL_MSG_BATCH_END = 0x11;
const NFT_MSG_NEWCHAIN = 3,
  NFT_MSG_DELCHAIN = 5,
  NFT_MSG_NEWRULE = 6,
  NFT_MSG_DELRULE = 8,
  NFT_MSG_NEWSET = 9,
  NFT_MSG_NEWSETELEM = 12,
  NFT_MSG_DELSETELEM = 14;
const F_REQUEST = 1,
  F_ACK = 4,
  F_CREATE = 0x400,
  F_APPEND = 0x800;
const NLMSG_ERROR = 2;
const NFPROTO_IPV4 = 2;
const NFTA_CHAIN_TABLE = 1,
  NFTA_CHAIN_NAME = 3;
const NFTA_RULE_TABLE = 1,
  NFTA_RULE_CHAIN = 2,
  NFTA_RULE_EXPRESSIONS = 4;
const NFTA_LIST_ELEM = 1,
  NFTA_EXPR_NAME = 1,
  NFTA_EXPR_DATA = 2;
const NFTA_SET_TABLE = 1,
  NFTA_SET_NAME = 2,
  NFTA_SET_FLAGS = 3,
  NFTA_SET_KEY_TYPE = 4,
  NFTA_SET_KEY_LEN = 5,
  NFTA_SET_DATA_TYPE = 6,
  NFTA_SET_DATA_LEN = 7,
  NFTA_SET_DESC = 9,
  NFTA_SET_ID = 10,
  NFTA_SET_USERDATA = 13,
  NFTA_SET_DESC_SIZE = 1;
const NFT_SET_ANONYMOUS = 1,
  NFT_SET_CONSTANT = 2,
  NFT_SET_MAP = 8;
const NFTA_SET_ELEM_LIST_TABLE = 1,
  NFTA_SET_ELEM_LIST_SET = 2,
  NFTA_SET_ELEM_LIST_ELEMENTS = 3,
  NFTA_SET_ELEM_LIST_SET_ID = 4,
  NFTA_SET_ELEM_KEY = 1,
  NFTA_SET_ELEM_DATA = 2;
const NFTA_DATA_VALUE = 1,
  NFTA_DATA_VERDICT = 2,
  NFTA_VERDICT_CODE = 1,
  NFTA_VERDICT_CHAIN = 2,
  NFT_GOTO = -4;
// nft's datatypes (as it stores them in the set, for listing): integer, ipv4_addr
const TYPE_INTEGER = 4,
  TYPE_IPADDR = 7;
const NFT_REG_1 = 1;
const NFT_NG_RANDOM = 1,
  NFT_NAT_DNAT = 1;
/** nft's set userdata for a numgen-keyed ip map: key host-endian, data big-endian (libnftnl udata TLVs) */
const MAP_USERDATA = Buffer.from([0, 4, 1, 0, 0, 0, 1, 4, 2, 0, 0, 0, 6, 4, 0, 0, 0, 0]);

/** nf_tables wants its integers big-endian. */
function be32(type: number, v: number): Attr {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return attr(type, b);
}

function expr(name: string, data: Attr[]): Attr {
  return nested(NFTA_LIST_ELEM, [str(NFTA_EXPR_NAME, name), nested(NFTA_EXPR_DATA, data)]);
}

const value = (type: number, b: Buffer): Attr => nested(type, [attr(NFTA_DATA_VALUE, b)]);

function hostU32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
}

interface Msg {
  type: number;
  flags: number;
  attrs: Attr[];
}

/** The messages of one op; `nextId` numbers the anonymous sets of the batch. */
export function encodeOp(o: NftOp, nextId: () => number): Msg[] {
  const t = (m: number): number => (NFNL_SUBSYS_NFTABLES << 8) | m;
  switch (o.op) {
    case 'addChain':
      return [{ type: t(NFT_MSG_NEWCHAIN), flags: F_CREATE, attrs: [str(NFTA_CHAIN_TABLE, o.table), str(NFTA_CHAIN_NAME, o.chain)] }];
    case 'deleteChain':
      return [{ type: t(NFT_MSG_DELCHAIN), flags: 0, attrs: [str(NFTA_CHAIN_TABLE, o.table), str(NFTA_CHAIN_NAME, o.chain)] }];
    case 'flushChain':
      return [{ type: t(NFT_MSG_DELRULE), flags: 0, attrs: [str(NFTA_RULE_TABLE, o.table), str(NFTA_RULE_CHAIN, o.chain)] }];
    case 'addGotoElement': {
      const verdict = nested(NFTA_SET_ELEM_DATA, [nested(NFTA_DATA_VERDICT, [be32(NFTA_VERDICT_CODE, NFT_GOTO), str(NFTA_VERDICT_CHAIN, o.chain)])]);
      const elem = nested(NFTA_LIST_ELEM, [value(NFTA_SET_ELEM_KEY, ipToBuffer(parseIp(o.key))), verdict]);
      return [
        {
          type: t(NFT_MSG_NEWSETELEM),
          flags: F_CREATE,
          attrs: [str(NFTA_SET_ELEM_LIST_TABLE, o.table), str(NFTA_SET_ELEM_LIST_SET, o.map), nested(NFTA_SET_ELEM_LIST_ELEMENTS, [elem])],
        },
      ];
    }
    case 'deleteElement': {
      const elem = nested(NFTA_LIST_ELEM, [value(NFTA_SET_ELEM_KEY, ipToBuffer(parseIp(o.key)))]);
      return [
        {
          type: t(NFT_MSG_DELSETELEM),
          flags: 0,
          attrs: [str(NFTA_SET_ELEM_LIST_TABLE, o.table), str(NFTA_SET_ELEM_LIST_SET, o.set), nested(NFTA_SET_ELEM_LIST_ELEMENTS, [elem])],
        },
      ];
    }
    case 'addDnatRule': {
      if (o.backends.length === 0) throw new KernelError('nft', o.chain, 22, 'EINVAL', 'a dnat rule needs a backend');
      const rule = (exprs: Attr[]): Msg => ({
        type: t(NFT_MSG_NEWRULE),
        flags: F_CREATE | F_APPEND,
        attrs: [str(NFTA_RULE_TABLE, o.table), str(NFTA_RULE_CHAIN, o.chain), nested(NFTA_RULE_EXPRESSIONS, exprs)],
      });
      const dnat = expr('nat', [be32(1, NFT_NAT_DNAT), be32(2, NFPROTO_IPV4), be32(3, NFT_REG_1)]);
      if (o.backends.length === 1) return [rule([expr('immediate', [be32(1, NFT_REG_1), value(2, ipToBuffer(parseIp(o.backends[0]!)))]), dnat])];
      // An anonymous constant map, slot → backend, bound to the rule (it goes with the rule).
      const id = nextId();
      const name = '__map%d';
      const set: Msg = {
        type: t(NFT_MSG_NEWSET),
        flags: F_CREATE,
        attrs: [
          str(NFTA_SET_TABLE, o.table),
          str(NFTA_SET_NAME, name),
          be32(NFTA_SET_FLAGS, NFT_SET_ANONYMOUS | NFT_SET_CONSTANT | NFT_SET_MAP),
          be32(NFTA_SET_KEY_TYPE, TYPE_INTEGER),
          be32(NFTA_SET_KEY_LEN, 4),
          be32(NFTA_SET_DATA_TYPE, TYPE_IPADDR),
          be32(NFTA_SET_DATA_LEN, 4),
          be32(NFTA_SET_ID, id),
          nested(NFTA_SET_DESC, [be32(NFTA_SET_DESC_SIZE, o.backends.length)]),
          attr(NFTA_SET_USERDATA, MAP_USERDATA),
        ],
      };
      const elems: Msg = {
        type: t(NFT_MSG_NEWSETELEM),
        flags: F_CREATE,
        attrs: [
          str(NFTA_SET_ELEM_LIST_TABLE, o.table),
          str(NFTA_SET_ELEM_LIST_SET, name),
          be32(NFTA_SET_ELEM_LIST_SET_ID, id),
          nested(
            NFTA_SET_ELEM_LIST_ELEMENTS,
            // numbered from 1, as nft numbers them (the kernel reads a list's entries in order, whatever their type)
            o.backends.map((b, i) => nested(i + 1, [value(NFTA_SET_ELEM_KEY, hostU32(i)), value(NFTA_SET_ELEM_DATA, ipToBuffer(parseIp(b)))])),
          ),
        ],
      };
      const numgen = expr('numgen', [be32(1, NFT_REG_1), be32(2, o.backends.length), be32(3, NFT_NG_RANDOM), be32(4, 0)]);
      const lookup = expr('lookup', [be32(2, NFT_REG_1), be32(3, NFT_REG_1), str(1, name), be32(4, id)]);
      return [set, elems, rule([numgen, lookup, dnat])];
    }
  }
}

function header(type: number, flags: number, seq: number, family: number, resId: number, body: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt32LE(20 + body.length, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(flags, 6);
  h.writeUInt32LE(seq, 8);
  h.writeUInt8(family, 16);
  h.writeUInt8(0, 17);
  h.writeUInt16BE(resId, 18);
  return Buffer.concat([h, body]);
}

interface Waiter {
  /** the batch's messages not answered yet */
  left: Set<number>;
  error?: KernelError;
  done(e?: Error): void;
}

/** A NETLINK_NETFILTER socket made inside one namespace, kept for its changes. */
export class NftSocket {
  private seq = 1;
  private setId = 1;
  private readonly waiting = new Map<number, Waiter>();
  private closed = false;

  private constructor(
    private readonly sock: NetlinkSocket,
    private readonly netns: string,
  ) {
    sock.on('message', (msgs) => this.onReplies(msgs));
    sock.on('invalid', (_err, msgs) => this.onReplies(Array.isArray(msgs) ? msgs : []));
    // ENOBUFS (answers lost): what the kernel did is unknown to every batch still waiting
    sock.on('error', (e: NodeJS.ErrnoException) => this.failAll(new KernelError('nft', netns, Math.abs(e.errno ?? 105), e.code ?? 'ENOBUFS', e.message)));
  }

  private failAll(e: KernelError): void {
    for (const w of new Set(this.waiting.values())) w.done(e);
  }

  /** A socket in namespace `netns` ('' for the daemon's own). */
  static open(netns: string): NftSocket {
    return new NftSocket(
      inNetns(netns || undefined, () => createNetlink(Protocol.NETFILTER, { recvBufferSize: 1 << 20, sendBufferSize: 1 << 20 })),
      netns,
    );
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.failAll(new KernelError('nft', this.netns, 9, 'EBADF', 'socket closed'));
    this.sock.close();
  }

  /** Runs `ops` as one transaction: all of it or nothing. */
  commit(ops: NftOp[]): Promise<void> {
    if (this.closed) return Promise.reject(new KernelError('nft', this.netns, 9, 'EBADF', 'socket closed'));
    const msgs = ops.flatMap((o) => encodeOp(o, () => this.setId++));
    if (msgs.length === 0) return Promise.resolve();
    const begin = this.seq++;
    const parts: Buffer[] = [header(NFNL_MSG_BATCH_BEGIN, F_REQUEST, begin, 0, NFNL_SUBSYS_NFTABLES, Buffer.alloc(0))];
    const left = new Set<number>();
    for (const m of msgs) {
      const s = this.seq++;
      left.add(s);
      parts.push(header(m.type, m.flags | F_REQUEST | F_ACK, s, NFPROTO_IPV4, 0, Buffer.concat(m.attrs)));
    }
    const end = this.seq++;
    parts.push(header(NFNL_MSG_BATCH_END, F_REQUEST, end, 0, NFNL_SUBSYS_NFTABLES, Buffer.alloc(0)));
    if (this.seq > 0x7fff0000) this.seq = 1;
    rtnlStats.requests += msgs.length;
    return new Promise<void>((resolve, reject) => {
      // Every message asked for an ACK, answered (0 or its error) once the batch is done; a batch
      // refused as a whole (no memory, a malformed header) is answered on its begin or end instead.
      const seqs = [begin, ...left, end];
      const done = (e?: Error): void => {
        clearTimeout(timer);
        for (const s of seqs) this.waiting.delete(s);
        this.sock.ref(this.waiting.size > 0);
        if (e) {
          rtnlStats.errors++;
          reject(e);
        } else resolve();
      };
      const timer = setTimeout(() => done(new KernelError('nft', this.netns, 110, 'ETIMEDOUT', 'no answer to an nf_tables batch')), 10_000);
      const w: Waiter = { left, done };
      for (const s of seqs) this.waiting.set(s, w);
      this.sock.ref(true);
      this.sock.socket.send(Buffer.concat(parts), {}, (error) => {
        if (error) done(new KernelError('nft', this.netns, Math.abs(error.errno ?? 5), error.code ?? 'EIO', error.message));
      });
    });
  }

  private onReplies(msgs: Array<{ type: number; seq: number; data: Buffer }>): void {
    for (const m of msgs) {
      const w = this.waiting.get(m.seq);
      if (!w || m.type !== NLMSG_ERROR) continue;
      const errno = -m.data.readInt32LE(0);
      const error = errno !== 0 ? new KernelError('nft', this.netns, errno, errnoName(errno)) : undefined;
      // an answer on the batch's begin or end: the whole batch was refused
      if (!w.left.delete(m.seq)) {
        if (error) w.done(error);
        continue;
      }
      w.error ??= error;
      if (w.left.size === 0) w.done(w.error);
    }
  }
}
