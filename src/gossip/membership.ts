// SWIM membership with Lifeguard's refinements, after hashicorp/memberlist:
// - each probe interval, ping one member (round-robin over a shuffled list); on timeout ask
//   k others to ping it (indirect probe); with no ack at all, suspect it;
// - a suspect refutes with a higher incarnation; otherwise it is declared dead when its
//   suspicion timer fires; the timer shrinks from max to min as independent confirmations
//   arrive (Lifeguard), and a ping to a suspect carries the suspicion (buddy system);
// - local health: a node whose probes fail without nacks from the relays slows itself down
//   instead of accusing others;
// - updates piggyback on every packet and on a separate fast gossip tick, each retransmitted
//   retransmitLimit(n) times; a periodic TCP push-pull merges full state (anti-entropy).
// Every packet is sealed with the keyring when one is given.
import { EventEmitter } from 'node:events';
import { createLogger, type Logger } from '../core/log.js';
import { BroadcastQueue } from './broadcasts.js';
import { shuffle } from './random.js';
import type { Clock, Timer } from '../core/clock.js';
import type { Keyring } from './keyring.js';
import { retransmitLimit, scaleByHealth, suspicionTimeoutMs, suspicionTimeoutWithConfirmations } from './math.js';
import type { Transport } from './transport.js';

export type MemberState = 'alive' | 'suspect' | 'dead' | 'left';

export interface Member {
  name: string;
  addr: string;
  incarnation: number;
  state: MemberState;
  /** clock time of the last state change */
  since: number;
  meta: Record<string, string>;
}

export interface MembershipConfig {
  name: string;
  transport: Transport;
  clock: Clock;
  keyring?: Keyring;
  meta?: Record<string, string>;
  rng?: () => number;
  log?: Logger;
  /** first incarnation; a restarted process must start above its previous one (default: clock time) */
  incarnation?: number;
  probeIntervalMs?: number;
  probeTimeoutMs?: number;
  indirectChecks?: number;
  suspicionMult?: number;
  suspicionMaxMult?: number;
  retransmitMult?: number;
  gossipIntervalMs?: number;
  gossipNodes?: number;
  pushPullIntervalMs?: number;
  awarenessMax?: number;
  /** how long dead members are remembered (so stale gossip cannot resurrect them) */
  deadRetainMs?: number;
}

type Update =
  | { k: 'alive'; n: string; a: string; i: number; m: Record<string, string> }
  | { k: 'suspect'; n: string; i: number; f: string }
  | { k: 'dead'; n: string; i: number; f: string }
  | { k: 'user'; key: string; d: unknown };

type Msg =
  | { t: 'ping'; seq: number; to: string; from: string; addr: string; p: Update[] }
  | { t: 'ack'; seq: number; from: string; p: Update[] }
  | { t: 'nack'; seq: number; from: string }
  | { t: 'preq'; seq: number; target: string; taddr: string; from: string; addr: string; p: Update[] }
  | { t: 'gossip'; from: string; p: Update[] }
  | { t: 'user'; from: string; d: unknown; p: Update[] };

interface UserRequest {
  t: 'ureq';
  from: string;
  d: unknown;
}

interface PushPull {
  t: 'pp';
  join: boolean;
  from: string;
  members: Array<{ n: string; a: string; i: number; s: MemberState; m: Record<string, string> }>;
  user: unknown;
}

export interface MembershipDelegate {
  /** a node-level broadcast or direct user packet arrived */
  onUser?(from: string, data: unknown): void;
  /** state to ship in push-pull, and merging what a peer shipped */
  localState?(join: boolean): unknown;
  mergeState?(from: string, state: unknown, join: boolean): void;
  /** a request over the stream transport (e.g. a table bulk sync); the reply goes back */
  onUserRequest?(from: string, data: unknown): unknown;
}

const MAX_PIGGYBACK = 12;

interface Suspicion {
  timer: Timer;
  start: number;
  confirmations: Set<string>;
  min: number;
  max: number;
}

export interface MembershipStats {
  probes: number;
  probeFailures: number;
  suspicionsRaised: number;
  refutations: number;
  deaths: number;
  awareness: number;
  /** packets dropped: no key opened them, or they did not parse */
  rejected: number;
}

export class Membership extends EventEmitter {
  readonly name: string;
  private readonly t: Transport;
  private readonly clock: Clock;
  private readonly rng: () => number;
  private readonly log: Logger;
  private readonly members = new Map<string, Member>();
  private readonly byAddr = new Map<string, string>();
  private readonly suspicions = new Map<string, Suspicion>();
  private readonly acks = new Map<number, (from: string) => void>();
  private readonly nacks = new Map<number, () => void>();
  private readonly queue = new BroadcastQueue<Update>();
  private probeOrder: string[] = [];
  private probeIndex = 0;
  private seq = 0;
  private incarnation: number;
  private awareness = 0;
  private timers: Timer[] = [];
  private running = false;
  private leaving = false;
  delegate: MembershipDelegate = {};
  readonly stats: MembershipStats = { probes: 0, probeFailures: 0, suspicionsRaised: 0, refutations: 0, deaths: 0, awareness: 0, rejected: 0 };

  readonly cfg: Required<Omit<MembershipConfig, 'keyring' | 'meta' | 'rng' | 'log' | 'incarnation' | 'transport' | 'clock' | 'name'>>;

  constructor(private readonly c: MembershipConfig) {
    super();
    this.name = c.name;
    this.t = c.transport;
    this.clock = c.clock;
    this.rng = c.rng ?? Math.random;
    this.log = c.log ?? createLogger({ component: 'gossip' });
    this.incarnation = c.incarnation ?? c.clock.now();
    this.cfg = {
      probeIntervalMs: c.probeIntervalMs ?? 200,
      probeTimeoutMs: c.probeTimeoutMs ?? 100,
      indirectChecks: c.indirectChecks ?? 3,
      suspicionMult: c.suspicionMult ?? 4,
      suspicionMaxMult: c.suspicionMaxMult ?? 6,
      retransmitMult: c.retransmitMult ?? 4,
      gossipIntervalMs: c.gossipIntervalMs ?? 100,
      gossipNodes: c.gossipNodes ?? 3,
      pushPullIntervalMs: c.pushPullIntervalMs ?? 15_000,
      awarenessMax: c.awarenessMax ?? 8,
      deadRetainMs: c.deadRetainMs ?? 60_000,
    };
    const self: Member = { name: this.name, addr: this.t.addr, incarnation: this.incarnation, state: 'alive', since: c.clock.now(), meta: c.meta ?? {} };
    this.members.set(this.name, self);
    this.byAddr.set(self.addr, self.name);
    this.t.onPacket((from, data) => this.onPacket(from, data));
    this.t.onRequest((from, data) => this.onRequest(from, data));
  }

  // ---------------------------------------------------------------- lifecycle

  start(): void {
    if (this.running) return;
    this.running = true;
    this.scheduleProbe();
    this.scheduleGossip();
    this.schedulePushPull();
  }

  /** Push-pull with each address; resolves with how many answered. */
  async join(addrs: string[]): Promise<number> {
    let ok = 0;
    await Promise.all(
      addrs
        .filter((a) => a !== this.t.addr)
        .map(async (a) => {
          try {
            await this.pushPull(a, true);
            ok++;
          } catch (e) {
            this.log.debug('gossip join failed', { addr: a, error: String(e) });
          }
        }),
    );
    return ok;
  }

  /** Announces a voluntary leave, then stops after the announcement had time to spread. */
  async leave(graceMs = 300): Promise<void> {
    this.leaving = true;
    const self = this.members.get(this.name)!;
    this.applyDead({ k: 'dead', n: this.name, i: self.incarnation, f: this.name });
    for (const m of this.pick(this.cfg.gossipNodes * 2, (x) => x.state === 'alive'))
      this.send(m.addr, { t: 'gossip', from: this.name, p: this.queue.take(MAX_PIGGYBACK, this.limit()) });
    await new Promise<void>((r) => this.clock.after(graceMs, r));
    this.shutdown();
  }

  shutdown(): void {
    this.running = false;
    for (const t of this.timers) t.cancel();
    this.timers = [];
    for (const s of this.suspicions.values()) s.timer.cancel();
    this.suspicions.clear();
  }

  // ---------------------------------------------------------------- queries

  get self(): Member {
    return this.members.get(this.name)!;
  }

  /** Members believed alive or suspect, including ourselves. */
  live(): Member[] {
    return [...this.members.values()].filter((m) => m.state === 'alive' || m.state === 'suspect');
  }

  all(): Member[] {
    return [...this.members.values()];
  }

  get(name: string): Member | undefined {
    return this.members.get(name);
  }

  get healthScore(): number {
    return this.awareness;
  }

  // ---------------------------------------------------------------- user traffic (networkdb)

  /** Best-effort packet to one member (our pending updates ride along). */
  sendUser(to: string, data: unknown): boolean {
    const m = this.members.get(to);
    if (!m || m.state === 'dead' || m.state === 'left') return false;
    this.send(m.addr, { t: 'user', from: this.name, d: data, p: this.queue.take(4, this.limit()) });
    return true;
  }

  /** A node-level update for everybody, piggybacked like membership changes. */
  broadcastUser(key: string, data: unknown): void {
    this.queue.push(`u:${key}`, { k: 'user', key, d: data });
  }

  /**
   * Declares a member dead on outside evidence (the manager saw its daemon's session close).
   * If it is in fact alive it refutes with a higher incarnation, as with any accusation.
   */
  markDead(name: string): void {
    const m = this.members.get(name);
    if (!m || name === this.name || m.state === 'dead' || m.state === 'left') return;
    this.applyDead({ k: 'dead', n: name, i: m.incarnation, f: this.name });
  }

  /** A request/response to one member over the stream transport (large payloads). */
  async requestUser(to: string, data: unknown, timeoutMs = 5000): Promise<unknown> {
    const m = this.members.get(to);
    if (!m || m.state === 'dead' || m.state === 'left') throw new Error(`member ${to} is not alive`);
    const reply = await this.t.request(m.addr, this.encode({ t: 'ureq', from: this.name, d: data }), timeoutMs);
    const r = this.decode<{ d: unknown }>(reply);
    if (!r) throw new Error(`unreadable reply from ${to}`);
    return r.d;
  }

  /** Full-state request to one member over the stream transport. */
  async pushPullWith(name: string): Promise<void> {
    const m = this.members.get(name);
    if (m) await this.pushPull(m.addr, false);
  }

  // ---------------------------------------------------------------- wire

  private encode(msg: Msg | PushPull | UserRequest | { d: unknown }): Buffer {
    const plain = Buffer.from(JSON.stringify(msg));
    return this.c.keyring ? this.c.keyring.seal(plain) : plain;
  }

  private decode<T>(data: Buffer): T | undefined {
    const plain = this.c.keyring ? this.c.keyring.open(data) : data;
    if (!plain) {
      this.stats.rejected++;
      this.emit('rejected', 'no key opens the packet');
      return undefined;
    }
    try {
      return JSON.parse(plain.toString('utf8')) as T;
    } catch {
      this.stats.rejected++;
      this.emit('rejected', 'malformed packet');
      return undefined;
    }
  }

  private send(addr: string, msg: Msg): void {
    this.t.sendPacket(addr, this.encode(msg));
  }

  private limit(): number {
    return retransmitLimit(this.cfg.retransmitMult, this.live().length);
  }

  private piggy(): Update[] {
    return this.queue.take(MAX_PIGGYBACK, this.limit());
  }

  private onPacket(fromAddr: string, data: Buffer): void {
    if (!this.running) return;
    const msg = this.decode<Msg>(data);
    if (!msg || typeof msg !== 'object' || typeof (msg as { t?: unknown }).t !== 'string') return;
    if ('p' in msg && Array.isArray(msg.p)) for (const u of msg.p) this.applyUpdate(u);
    switch (msg.t) {
      case 'ping':
        if (msg.to !== this.name) return; // misdirected: an old address now used by someone else
        this.send(msg.addr || fromAddr, { t: 'ack', seq: msg.seq, from: this.name, p: this.piggy() });
        return;
      case 'ack':
        this.acks.get(msg.seq)?.(msg.from);
        return;
      case 'nack':
        this.nacks.get(msg.seq)?.();
        return;
      case 'preq':
        void this.relayProbe(msg);
        return;
      case 'user':
        this.delegate.onUser?.(msg.from, msg.d);
        return;
      case 'gossip':
        return;
    }
  }

  private async onRequest(_from: string, data: Buffer): Promise<Buffer> {
    if (!this.running) return Buffer.alloc(0);
    const req = this.decode<PushPull | UserRequest>(data);
    if (req?.t === 'ureq') return this.encode({ d: (await this.delegate.onUserRequest?.(req.from, req.d)) ?? null });
    if (!req || req.t !== 'pp') return Buffer.alloc(0);
    this.mergePushPull(req);
    return this.encode(this.localPushPull(false));
  }

  // ---------------------------------------------------------------- probing

  private scheduleProbe(): void {
    if (!this.running) return;
    const interval = scaleByHealth(this.cfg.probeIntervalMs, this.awareness);
    this.timers.push(this.clock.after(interval, () => void this.probe().finally(() => this.scheduleProbe())));
  }

  private nextProbeTarget(): Member | undefined {
    for (let tries = 0; tries < 2; tries++) {
      while (this.probeIndex < this.probeOrder.length) {
        const m = this.members.get(this.probeOrder[this.probeIndex++]!);
        if (m && m.name !== this.name && (m.state === 'alive' || m.state === 'suspect')) return m;
      }
      this.probeOrder = shuffle(
        [...this.members.keys()].filter((n) => n !== this.name),
        this.rng,
      );
      this.probeIndex = 0;
    }
    return undefined;
  }

  private waitAck(seq: number, ms: number): Promise<string | undefined> {
    return new Promise((resolve) => {
      const timer = this.clock.after(ms, () => {
        this.acks.delete(seq);
        resolve(undefined);
      });
      this.acks.set(seq, (from) => {
        timer.cancel();
        this.acks.delete(seq);
        resolve(from);
      });
    });
  }

  private async probe(): Promise<void> {
    const target = this.nextProbeTarget();
    if (!target) return;
    this.stats.probes++;
    const seq = ++this.seq;
    const timeout = scaleByHealth(this.cfg.probeTimeoutMs, this.awareness);
    const p = this.piggy();
    // Buddy system: tell a suspect it is suspected, so it can refute at once.
    if (target.state === 'suspect') p.unshift({ k: 'suspect', n: target.name, i: target.incarnation, f: this.name });
    const acked = this.waitAck(seq, timeout);
    this.send(target.addr, { t: 'ping', seq, to: target.name, from: this.name, addr: this.t.addr, p });
    if (await acked) {
      this.health(-1);
      return;
    }
    // Indirect probe through k others; they answer nack when they got no ack either.
    const relays = this.pick(this.cfg.indirectChecks, (m) => m.state === 'alive' && m.name !== target.name);
    const rest = Math.max(timeout, scaleByHealth(this.cfg.probeIntervalMs, this.awareness) - timeout);
    let nacks = 0;
    const indirect = this.waitAck(seq, rest);
    this.nacks.set(seq, () => nacks++);
    for (const r of relays) this.send(r.addr, { t: 'preq', seq, target: target.name, taddr: target.addr, from: this.name, addr: this.t.addr, p: this.piggy() });
    const ok = await indirect;
    this.nacks.delete(seq);
    if (ok) {
      this.health(-1);
      return;
    }
    this.stats.probeFailures++;
    // Lifeguard: relays that did not even nack suggest the problem is ours.
    this.health(relays.length ? relays.length - nacks : 1);
    const cur = this.members.get(target.name);
    if (cur && (cur.state === 'alive' || cur.state === 'suspect')) this.applySuspect({ k: 'suspect', n: cur.name, i: cur.incarnation, f: this.name });
  }

  private async relayProbe(req: Extract<Msg, { t: 'preq' }>): Promise<void> {
    const seq = ++this.seq;
    const acked = this.waitAck(seq, this.cfg.probeTimeoutMs);
    this.send(req.taddr, { t: 'ping', seq, to: req.target, from: this.name, addr: this.t.addr, p: this.piggy() });
    if (await acked) this.send(req.addr, { t: 'ack', seq: req.seq, from: req.target, p: [] });
    else this.send(req.addr, { t: 'nack', seq: req.seq, from: this.name });
  }

  private health(delta: number): void {
    this.awareness = Math.max(0, Math.min(this.cfg.awarenessMax - 1, this.awareness + delta));
    this.stats.awareness = this.awareness;
  }

  // ---------------------------------------------------------------- gossip and push-pull

  private scheduleGossip(): void {
    if (!this.running) return;
    this.timers.push(
      this.clock.after(this.cfg.gossipIntervalMs, () => {
        if (this.queue.size) {
          const now = this.clock.now();
          // Recently dead members hear it too, so a falsely accused node learns and refutes.
          const targets = this.pick(this.cfg.gossipNodes, (m) => m.state === 'alive' || m.state === 'suspect' || now - m.since < this.cfg.probeIntervalMs * 5);
          for (const m of targets) {
            const p = this.piggy();
            if (!p.length) break;
            this.send(m.addr, { t: 'gossip', from: this.name, p });
          }
        }
        this.reapDead();
        this.scheduleGossip();
      }),
    );
  }

  private schedulePushPull(): void {
    if (!this.running) return;
    const jitter = this.cfg.pushPullIntervalMs * (0.5 + this.rng());
    this.timers.push(
      this.clock.after(jitter, () => {
        const [m] = this.pick(1, (x) => x.state === 'alive');
        if (m) void this.pushPull(m.addr, false).catch(() => undefined);
        // Also try one member we believe dead: after a partition heals, this is how the two
        // sides find each other (each learns it was declared dead, refutes, and is revived).
        const [d] = this.pick(1, (x) => x.state === 'dead');
        if (d) void this.pushPull(d.addr, false).catch(() => undefined);
        this.schedulePushPull();
      }),
    );
  }

  private localPushPull(join: boolean): PushPull {
    return {
      t: 'pp',
      join,
      from: this.name,
      members: [...this.members.values()].map((m) => ({ n: m.name, a: m.addr, i: m.incarnation, s: m.state, m: m.meta })),
      user: this.delegate.localState?.(join),
    };
  }

  private async pushPull(addr: string, join: boolean): Promise<void> {
    const reply = await this.t.request(addr, this.encode(this.localPushPull(join)), 5000);
    const pp = this.decode<PushPull>(reply);
    if (!pp || pp.t !== 'pp') throw new Error('bad push-pull reply');
    this.mergePushPull(pp);
  }

  private mergePushPull(pp: PushPull): void {
    for (const r of pp.members ?? []) {
      // A node speaking for itself in a direct exchange is proof of life, whatever we thought.
      const local = this.members.get(r.n);
      if (r.n === pp.from && r.s === 'alive' && local && (local.state === 'dead' || local.state === 'suspect') && r.i === local.incarnation)
        local.incarnation = r.i - 1;
      if (r.s === 'alive') this.applyAlive({ k: 'alive', n: r.n, a: r.a, i: r.i, m: r.m ?? {} });
      else if (r.s === 'left') this.applyDead({ k: 'dead', n: r.n, i: r.i, f: r.n });
      // A peer's belief that a node is dead or suspect only makes us suspect it: we may know better.
      else if (this.members.has(r.n)) this.applySuspect({ k: 'suspect', n: r.n, i: r.i, f: pp.from });
    }
    if (pp.user !== undefined) this.delegate.mergeState?.(pp.from, pp.user, pp.join);
  }

  // ---------------------------------------------------------------- state changes

  private applyUpdate(u: Update): void {
    if (!u || typeof u !== 'object') return;
    if (u.k === 'alive') this.applyAlive(u);
    else if (u.k === 'suspect') this.applySuspect(u);
    else if (u.k === 'dead') this.applyDead(u);
    else if (u.k === 'user') this.delegate.onUser?.('', u.d);
  }

  private applyAlive(u: Extract<Update, { k: 'alive' }>): void {
    if (u.n === this.name) {
      // Someone vouches for an incarnation of ours at least as new as our own: stay ahead of it.
      if (u.i > this.incarnation) this.refute(u.i);
      return;
    }
    const m = this.members.get(u.n);
    if (m && u.i <= m.incarnation && !(m.state === 'dead' && u.i > m.incarnation)) return;
    const wasDown = !m || m.state === 'dead' || m.state === 'left';
    if (m && m.addr !== u.a) this.byAddr.delete(m.addr);
    const next: Member = { name: u.n, addr: u.a, incarnation: u.i, state: 'alive', since: this.clock.now(), meta: u.m ?? {} };
    this.members.set(u.n, next);
    this.byAddr.set(u.a, u.n);
    this.cancelSuspicion(u.n);
    this.queue.push(u.n, u);
    if (wasDown) this.emit('join', next);
    else this.emit('update', next);
  }

  private applySuspect(u: Extract<Update, { k: 'suspect' }>): void {
    const m = this.members.get(u.n);
    if (!m || u.i < m.incarnation || m.state === 'dead' || m.state === 'left') return;
    if (u.n === this.name) {
      if (!this.leaving) this.refute(u.i);
      return;
    }
    const s = this.suspicions.get(u.n);
    if (s && m.state === 'suspect') {
      if (u.f !== this.name && !s.confirmations.has(u.f)) {
        s.confirmations.add(u.f);
        this.rearm(u.n, m.incarnation, s);
        this.queue.push(u.n, u);
      }
      return;
    }
    m.state = 'suspect';
    m.incarnation = u.i;
    m.since = this.clock.now();
    this.stats.suspicionsRaised++;
    const n = this.live().length;
    const min = suspicionTimeoutMs(this.cfg.suspicionMult, n, this.cfg.probeIntervalMs);
    const sus: Suspicion = {
      timer: { cancel: () => undefined },
      start: this.clock.now(),
      confirmations: new Set(u.f !== this.name ? [u.f] : []),
      min,
      max: min * this.cfg.suspicionMaxMult,
    };
    this.suspicions.set(u.n, sus);
    this.rearm(u.n, m.incarnation, sus);
    this.queue.push(u.n, u);
    this.emit('suspect', m);
  }

  private rearm(name: string, incarnation: number, s: Suspicion): void {
    s.timer.cancel();
    const timeout = suspicionTimeoutWithConfirmations(s.confirmations.size, this.cfg.indirectChecks, s.min, s.max);
    const left = Math.max(0, timeout - (this.clock.now() - s.start));
    s.timer = this.clock.after(left, () => {
      const m = this.members.get(name);
      if (m?.state === 'suspect' && m.incarnation === incarnation) this.applyDead({ k: 'dead', n: name, i: incarnation, f: this.name });
    });
  }

  private cancelSuspicion(name: string): void {
    this.suspicions.get(name)?.timer.cancel();
    this.suspicions.delete(name);
  }

  private applyDead(u: Extract<Update, { k: 'dead' }>): void {
    const m = this.members.get(u.n);
    if (!m || u.i < m.incarnation || m.state === 'dead' || m.state === 'left') return;
    if (u.n === this.name && !this.leaving) {
      this.refute(u.i);
      return;
    }
    this.cancelSuspicion(u.n);
    m.state = u.f === u.n ? 'left' : 'dead';
    m.incarnation = u.i;
    m.since = this.clock.now();
    this.queue.push(u.n, u);
    if (u.n === this.name) return;
    this.stats.deaths++;
    this.emit(m.state === 'left' ? 'leave' : 'dead', m);
  }

  private refute(accusedIncarnation: number): void {
    this.incarnation = Math.max(this.incarnation, accusedIncarnation) + 1;
    const self = this.members.get(this.name)!;
    self.incarnation = this.incarnation;
    self.state = 'alive';
    this.stats.refutations++;
    this.queue.push(this.name, { k: 'alive', n: this.name, a: this.t.addr, i: this.incarnation, m: self.meta });
    this.health(1);
  }

  private reapDead(): void {
    const now = this.clock.now();
    for (const m of this.members.values()) {
      if ((m.state === 'dead' || m.state === 'left') && now - m.since > this.cfg.deadRetainMs) {
        this.members.delete(m.name);
        if (this.byAddr.get(m.addr) === m.name) this.byAddr.delete(m.addr);
      }
    }
  }

  /** Up to n random members (not ourselves) passing `ok`. */
  private pick(n: number, ok: (m: Member) => boolean): Member[] {
    const c = [...this.members.values()].filter((m) => m.name !== this.name && ok(m));
    return shuffle(c, this.rng).slice(0, n);
  }
}
