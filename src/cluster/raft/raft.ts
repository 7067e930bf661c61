// Raft consensus among the managers (leader election, log replication, snapshots), written
// from the paper and swarmkit's use of etcd/raft. Transport-free and clock-free: the same code
// runs in-memory under a fake clock in simulations and over the manager API in a real swarm.
//
// Two choices differ from textbook raft, both because the state machine is our SQLite store:
// - The leader applies its own writes at once, in the same SQLite transaction that appends them
//   to its log ("speculative"), and callers wait for the commit before answering. Its state is
//   then "ahead" of the commit index, under its term; so is a follower's that installed a leader's
//   snapshot holding such writes. State ahead under one term is reloaded by snapshot as soon as a
//   leader of another term speaks: those writes may never commit.
// - Membership is the set of manager nodes in the replicated store, one change at a time.
import { EventEmitter } from 'node:events';
import { VxError } from '../../core/errors.js';
import type { Clock, Timer } from '../../core/clock.js';
import type { Logger } from '../../core/log.js';

export interface Entry {
  index: number;
  term: number;
  /** opaque to raft: the store's write set, or null for a leader's no-op */
  data: unknown;
}

export interface RaftSnapshot {
  index: number;
  term: number;
  state: unknown;
}

export interface Member {
  id: string;
  /** manager API address, host:port */
  addr: string;
}

/**
 * The durable log and the state machine as one object: in our store both change in one
 * SQLite transaction, so a crash never leaves the log and the state out of step.
 */
export interface RaftStore {
  hardState(): { term: number; vote: string };
  setHardState(term: number, vote: string): void;
  snapIndex(): number;
  snapTerm(): number;
  lastIndex(): number;
  /** the term of entry `index`, snapIndex included; undefined if not held */
  termAt(index: number): number | undefined;
  /** entries from `from` up to lastIndex, at most about maxBytes of data (at least one) */
  entries(from: number, maxBytes: number): Entry[];
  /** drops entries ≥ entries[0].index and appends these */
  appendEntries(entries: Entry[]): void;
  /** appends a leader's no-op at `term`; returns its index */
  appendNoop(term: number): number;
  appliedIndex(): number;
  /** applies committed entries in order; the applied index moves in the same transaction */
  apply(entries: Entry[]): void;
  /** the state at appliedIndex */
  snapshot(): RaftSnapshot;
  /** replaces state and log with a snapshot */
  restore(s: RaftSnapshot): void;
  /** drops log entries up to `index` (which must be applied) */
  compact(index: number): void;
  /** never set up (a joining manager): needs a snapshot */
  fresh(): boolean;
  /** state applied beyond what is known committed: up to `index`, written by the leader of `term` (-1: reload) */
  ahead(): Ahead | undefined;
  setAhead(a: Ahead | undefined): void;
  /** which incarnation of the raft cluster this member belongs to (a forced new cluster starts another) */
  epoch(): string;
  setEpoch(epoch: string): void;
}

export interface Ahead {
  index: number;
  term: number;
}

export interface VoteRequest {
  /** the sender's raft incarnation: members of another one are not listened to */
  epoch?: string;
  term: number;
  candidate: string;
  lastIndex: number;
  lastTerm: number;
  /** a pre-vote (raft thesis 9.6): "would you vote for me at this term?", changing nothing */
  pre?: boolean;
  /** the leader handed over to this candidate: voters need not wait out the leader's lease */
  transfer?: boolean;
}
export interface VoteReply {
  term: number;
  granted: boolean;
}
export interface AppendRequest {
  /** the sender's raft incarnation: members of another one are not listened to */
  epoch?: string;
  term: number;
  leader: string;
  prevIndex: number;
  prevTerm: number;
  entries: Entry[];
  commit: number;
}
export interface AppendReply {
  term: number;
  success: boolean;
  lastIndex: number;
  needSnapshot?: boolean;
  /** the receiver belongs to another raft incarnation */
  foreign?: boolean;
}
export interface SnapshotRequest {
  /** the sender's raft incarnation: members of another one are not listened to */
  epoch?: string;
  term: number;
  leader: string;
  /** the leader's commit index: the snapshot may hold writes beyond it */
  commit: number;
  snapshot: RaftSnapshot;
}
export interface SnapshotReply {
  term: number;
}

/** The leader tells an up-to-date follower to start an election now (leadership transfer). */
export interface TimeoutNowRequest {
  /** the sender's raft incarnation: members of another one are not listened to */
  epoch?: string;
  term: number;
  leader: string;
}

export interface RaftTransport {
  vote(to: Member, req: VoteRequest): Promise<VoteReply>;
  append(to: Member, req: AppendRequest): Promise<AppendReply>;
  snapshot(to: Member, req: SnapshotRequest): Promise<SnapshotReply>;
  timeoutNow(to: Member, req: TimeoutNowRequest): Promise<unknown>;
}

export interface RaftTiming {
  heartbeatMs: number;
  electionMinMs: number;
  electionMaxMs: number;
}

/**
 * Swarmkit ticks every second and elects after 10 ticks (about 10 s to a new leader). We beat
 * 4 times a second and elect after 1.5-3 s without one: fast failover that still rides out a
 * busy event loop on a loaded 2-core host (a false election only costs a leader change).
 */
export const DEFAULT_TIMING: RaftTiming = { heartbeatMs: 250, electionMinMs: 1500, electionMaxMs: 3000 };
/** Swarmkit snapshots every 10,000 entries and keeps 500 for slow followers. */
export const SNAPSHOT_INTERVAL = 10_000;
export const KEEP_AFTER_SNAPSHOT = 500;
const MAX_APPEND_BYTES = 512 * 1024;

export type Role = 'follower' | 'candidate' | 'leader';

export class NotLeaderError extends VxError {
  constructor(readonly leader: Member | undefined) {
    super(
      leader
        ? `this manager is not the leader (the leader is ${leader.addr})`
        : "The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online.",
      503,
    );
  }
}

/**
 * A change this leader made but could not get onto a majority: like any consensus write that
 * times out, its outcome is unknown (it takes effect if a later leader holds it).
 */
export class UnconfirmedError extends VxError {
  constructor(why: string) {
    super(`the change was not confirmed by a majority of managers (${why}): it may still take effect if they come back`, 503);
  }
}

interface Peer {
  member: Member;
  next: number;
  match: number;
  inflight: boolean;
  needSnapshot: boolean;
  /** last time it answered this leader */
  lastContact: number;
}

interface Waiter {
  index: number;
  resolve: () => void;
  reject: (e: Error) => void;
  timer: Timer;
}

export interface RaftStatus {
  id: string;
  role: Role;
  term: number;
  leader: string;
  commit: number;
  applied: number;
  lastIndex: number;
  /** as the leader sees them: reachable = answered within the election timeout */
  peers: { id: string; addr: string; match: number; reachable: boolean }[];
}

export interface RaftOptions {
  id: string;
  store: RaftStore;
  transport: RaftTransport;
  clock: Clock;
  /** the voting members, from the applied state */
  members: () => Member[];
  log: Logger;
  timing?: RaftTiming;
  rng?: () => number;
  /** entries between compactions (tests make it small) */
  snapshotInterval?: number;
}

export class Raft extends EventEmitter {
  readonly id: string;
  private readonly store: RaftStore;
  private readonly transport: RaftTransport;
  private readonly clock: Clock;
  private readonly membersOf: () => Member[];
  private readonly log: Logger;
  private readonly timing: RaftTiming;
  private readonly rng: () => number;
  private readonly snapshotInterval: number;

  role: Role = 'follower';
  term = 0;
  private vote = '';
  leaderId = '';
  commit = 0;
  private lastLeaderContact = -Infinity;
  private electionTimer: Timer | undefined;
  private heartbeatTimer: Timer | undefined;
  private readonly peers = new Map<string, Peer>();
  /**
   * The voters a leader counts: the membership of its committed state. Its applied state runs
   * ahead (its own writes), and a member added there must not count until the addition commits,
   * else adding a second manager would wait for a joiner that cannot get a snapshot yet.
   */
  private voters: Member[] = [];
  private waiters: Waiter[] = [];
  private replicateQueued = false;
  private stopped = true;
  /** set while handing leadership over: no new writes */
  private transferring = false;

  constructor(o: RaftOptions) {
    super();
    this.id = o.id;
    this.store = o.store;
    this.transport = o.transport;
    this.clock = o.clock;
    this.membersOf = o.members;
    this.log = o.log;
    this.timing = o.timing ?? DEFAULT_TIMING;
    this.rng = o.rng ?? Math.random;
    this.snapshotInterval = o.snapshotInterval ?? SNAPSHOT_INTERVAL;
    const hs = this.store.hardState();
    this.term = hs.term;
    this.vote = hs.vote;
    // Everything applied is known committed, except state that is ahead.
    const a = this.store.ahead();
    this.commit = Math.max(this.store.snapIndex(), a ? Math.min(a.index - 1, this.store.appliedIndex()) : this.store.appliedIndex());
  }

  start(): void {
    this.stopped = false;
    const m = this.members();
    // The only member need not wait out an election timeout to lead again after a restart.
    if (m.length === 1 && m[0]!.id === this.id) this.campaign();
    else this.resetElectionTimer();
  }

  /** A new cluster's first manager: leader of term 1 at once, before the first write. */
  bootstrap(): void {
    this.stopped = false;
    this.setHardState(Math.max(1, this.term + 1), this.id);
    this.becomeLeader();
  }

  /**
   * Disaster recovery (`swarm init --force-new-cluster`): this member alone becomes the cluster,
   * as a new raft incarnation whose messages the old members' are not mistaken for. The caller
   * has already made this node the only manager in the state.
   */
  forceNewCluster(epoch: string): void {
    this.stop();
    this.store.setAhead(undefined);
    this.store.compact(this.store.appliedIndex());
    this.store.setEpoch(epoch);
    this.commit = this.store.appliedIndex();
    this.bootstrap();
  }

  stop(): void {
    this.stopped = true;
    this.electionTimer?.cancel();
    this.heartbeatTimer?.cancel();
    this.electionTimer = this.heartbeatTimer = undefined;
    this.failWaiters(new UnconfirmedError('this manager stopped leading'));
    if (this.role === 'leader') this.leaveAhead();
    this.role = 'follower';
  }

  members(): Member[] {
    return this.membersOf();
  }

  leader(): Member | undefined {
    if (!this.leaderId) return undefined;
    return this.members().find((m) => m.id === this.leaderId);
  }

  isLeader(): boolean {
    return this.role === 'leader';
  }

  /** The term a leader's write goes into its log with; throws on a follower (the write rolls back). */
  leaderTerm(): number {
    if (this.role !== 'leader' || this.transferring) throw new NotLeaderError(this.role === 'leader' ? undefined : this.leader());
    return this.term;
  }

  /** The leader appended entries: replicate them (coalesced) and, alone, commit at once. */
  appended(): void {
    if (this.role !== 'leader') return;
    this.advanceCommit();
    this.queueReplicate();
  }

  /** Resolves once `index` (default: the last entry) is committed; rejects if leadership is lost first. */
  waitCommitted(index = this.store.lastIndex(), timeoutMs = this.timing.electionMaxMs * 2): Promise<void> {
    if (this.commit >= index) return Promise.resolve();
    if (this.role !== 'leader') return Promise.reject(new NotLeaderError(this.leader()));
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        index,
        resolve,
        reject,
        timer: this.clock.after(timeoutMs, () => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(new UnconfirmedError('too few managers answered in time: no raft quorum'));
        }),
      };
      this.waiters.push(w);
    });
  }

  status(): RaftStatus {
    const t = this.clock.now();
    return {
      id: this.id,
      role: this.role,
      term: this.term,
      leader: this.leaderId,
      commit: this.commit,
      applied: this.store.appliedIndex(),
      lastIndex: this.store.lastIndex(),
      peers: [...this.peers.values()].map((p) => ({
        id: p.member.id,
        addr: p.member.addr,
        match: p.match,
        reachable: t - p.lastContact < this.timing.electionMaxMs,
      })),
    };
  }

  // ---- RPC handlers ----

  handleVote(req: VoteRequest): VoteReply {
    if (this.foreign(req)) return { term: 0, granted: false };
    if (req.term < this.term || (req.pre && req.term === this.term)) return { term: this.term, granted: false };
    // A server that heard from a live leader lately ignores candidates (raft thesis 4.2.3):
    // a node cut off and back cannot depose a healthy leader.
    const leaderAlive = this.role === 'leader' || this.clock.now() - this.lastLeaderContact < this.timing.electionMinMs;
    if (leaderAlive && req.candidate !== this.leaderId && !req.transfer) return { term: this.term, granted: false };
    const lastTerm = this.store.termAt(this.store.lastIndex()) ?? 0;
    const upToDate = req.lastTerm > lastTerm || (req.lastTerm === lastTerm && req.lastIndex >= this.store.lastIndex());
    if (req.pre) return { term: this.term, granted: upToDate };
    // A higher term makes us a follower, but only a granted vote restarts our election timer:
    // a candidate that cannot win must not keep the others from electing.
    if (req.term > this.term) this.becomeFollower(req.term, '', false);
    if ((this.vote === '' || this.vote === req.candidate) && upToDate) {
      this.setHardState(this.term, req.candidate);
      this.resetElectionTimer();
      return { term: this.term, granted: true };
    }
    return { term: this.term, granted: false };
  }

  handleAppend(req: AppendRequest): AppendReply {
    if (this.foreign(req)) return { term: 0, success: false, lastIndex: 0, foreign: true };
    if (req.term < this.term) return { term: this.term, success: false, lastIndex: this.store.lastIndex() };
    this.heardFromLeader(req.term, req.leader);
    if (this.needsSnapshot(req.term)) return { term: this.term, success: false, lastIndex: this.store.lastIndex(), needSnapshot: true };
    let prevIndex = req.prevIndex;
    let prevTerm = req.prevTerm;
    let entries = req.entries;
    const snap = this.store.snapIndex();
    if (prevIndex < snap) {
      // Entries up to our snapshot are committed, so they match; skip them.
      entries = entries.filter((e) => e.index > snap);
      prevIndex = snap;
      prevTerm = this.store.snapTerm();
      if (entries.length && entries[0]!.index !== snap + 1) return { term: this.term, success: false, lastIndex: this.store.lastIndex() };
    }
    const have = this.store.termAt(prevIndex);
    if (have === undefined) return { term: this.term, success: false, lastIndex: this.store.lastIndex() };
    if (have !== prevTerm) return { term: this.term, success: false, lastIndex: Math.max(snap, prevIndex - 1) };
    let i = 0;
    for (; i < entries.length; i++) {
      const local = this.store.termAt(entries[i]!.index);
      if (local === undefined) break;
      if (local !== entries[i]!.term) {
        if (entries[i]!.index <= this.store.appliedIndex()) {
          // Only state that is ahead can conflict below the applied index; it must be reloaded.
          this.store.setAhead({ index: this.store.appliedIndex(), term: -1 });
          return { term: this.term, success: false, lastIndex: this.store.lastIndex(), needSnapshot: true };
        }
        break;
      }
    }
    if (i < entries.length) this.store.appendEntries(entries.slice(i));
    const lastNew = prevIndex + entries.length;
    if (req.commit > this.commit) {
      this.commit = Math.min(req.commit, lastNew);
      this.applyCommitted();
    }
    const a = this.store.ahead();
    if (a && req.commit >= a.index) this.store.setAhead(undefined);
    return { term: this.term, success: true, lastIndex: this.store.lastIndex() };
  }

  /** The leader hands over to us: campaign at once, skipping the pre-vote. */
  handleTimeoutNow(req: TimeoutNowRequest): Record<string, never> {
    if (this.foreign(req)) return {};
    if (req.term === this.term && req.leader === this.leaderId && this.role === 'follower' && !this.stopped) {
      this.log.info('raft: leadership handed to us', { term: this.term });
      this.elect(this.members(), true);
    }
    return {};
  }

  /**
   * Hands leadership to the most up-to-date other member before this one stops (a restart, an
   * upgrade): the swarm has a leader again in a round trip instead of an election timeout.
   * Resolves true once another member leads, false if none took over in time.
   */
  async transferLeadership(timeoutMs = this.timing.electionMinMs): Promise<boolean> {
    if (this.role !== 'leader' || this.peers.size === 0) return false;
    this.transferring = true;
    const deadline = this.clock.now() + timeoutMs;
    const sleep = (ms: number): Promise<void> => new Promise((r) => this.clock.after(ms, r));
    try {
      while (this.role === 'leader' && this.clock.now() < deadline) {
        const last = this.store.lastIndex();
        const target = [...this.peers.values()]
          .filter((p) => this.voters.some((v) => v.id === p.member.id) && this.clock.now() - p.lastContact < this.timing.electionMaxMs)
          .sort((a, b) => b.match - a.match)[0];
        if (!target) return false;
        if (target.match < last) {
          this.replicate(target, false);
          await sleep(10);
          continue;
        }
        await this.transport.timeoutNow(target.member, { epoch: this.store.epoch(), term: this.term, leader: this.id }).catch(() => undefined);
        for (let i = 0; i < 50 && this.role === 'leader'; i++) await sleep(10);
      }
      return this.role !== 'leader';
    } finally {
      this.transferring = false;
    }
  }

  handleSnapshot(req: SnapshotRequest): SnapshotReply {
    if (this.foreign(req)) return { term: 0 };
    if (req.term < this.term) return { term: this.term };
    this.heardFromLeader(req.term, req.leader);
    if (req.snapshot.index <= this.commit && !this.needsSnapshot(req.term)) return { term: this.term };
    this.store.restore(req.snapshot);
    // A joiner takes the incarnation of the cluster it joins.
    if (this.store.epoch() !== (req.epoch ?? '')) this.store.setEpoch(req.epoch ?? '');
    // Writes in it beyond the leader's commit index may still be lost if the leader is.
    if (req.snapshot.index > req.commit) this.store.setAhead({ index: req.snapshot.index, term: req.term });
    this.commit = Math.min(req.snapshot.index, Math.max(this.commit, req.commit));
    this.log.info('raft snapshot installed', { index: req.snapshot.index, term: req.snapshot.term });
    return { term: this.term };
  }

  /** A message from another raft incarnation (a forced new cluster left the sender out); a joiner has none yet. */
  private foreign(req: { epoch?: string }): boolean {
    return (req.epoch ?? '') !== this.store.epoch() && !this.store.fresh();
  }

  private needsSnapshot(leaderTerm: number): boolean {
    const a = this.store.ahead();
    return this.store.fresh() || (a !== undefined && a.term !== leaderTerm);
  }

  /** On stepping down: state beyond the commit index is ahead under the term that wrote it. */
  private leaveAhead(): void {
    this.store.setAhead(this.store.appliedIndex() > this.commit ? { index: this.store.appliedIndex(), term: this.term } : undefined);
  }

  // ---- roles ----

  private heardFromLeader(term: number, leader: string): void {
    if (term > this.term || this.role !== 'follower') this.becomeFollower(term, leader);
    this.leaderId = leader;
    this.lastLeaderContact = this.clock.now();
    this.resetElectionTimer();
  }

  private becomeFollower(term: number, leader: string, resetTimer = true): void {
    const was = this.role;
    if (term > this.term) this.setHardState(term, '');
    if (was === 'leader') {
      this.heartbeatTimer?.cancel();
      this.heartbeatTimer = undefined;
      this.peers.clear();
      this.failWaiters(new UnconfirmedError('this manager stopped leading'));
      this.leaveAhead();
    }
    this.role = 'follower';
    this.leaderId = leader;
    if (resetTimer || !this.electionTimer) this.resetElectionTimer();
    if (was !== 'follower') {
      this.log.info('raft: now a follower', { term: this.term, leader });
      this.emit('role', 'follower');
    }
  }

  /**
   * Pre-vote first: only when a majority would vote for us do we raise our term. A node cut off
   * from the others therefore keeps its term, and rejoining does not depose a working leader.
   */
  private campaign(): void {
    if (this.stopped) return;
    const members = this.members();
    // Only a voter with state campaigns (a joiner waits for its snapshot; a demoted one stays out).
    const a = this.store.ahead();
    this.resetElectionTimer();
    if (this.store.fresh() || a?.term === -1 || !members.some((m) => m.id === this.id)) return;
    const term = this.term;
    this.canvass(
      members,
      this.voteRequest(term + 1, { pre: true }),
      false,
      () => this.term === term && this.role !== 'leader',
      () => this.elect(this.members()),
    );
  }

  private elect(members: Member[], transfer = false): void {
    if (this.stopped) return;
    this.role = 'candidate';
    this.leaderId = '';
    this.setHardState(this.term + 1, this.id);
    const term = this.term;
    this.log.info('raft: campaigning', { term });
    this.emit('role', 'candidate');
    this.resetElectionTimer();
    this.canvass(
      members,
      this.voteRequest(term, transfer ? { transfer: true } : {}),
      true,
      () => this.role === 'candidate' && this.term === term,
      () => this.becomeLeader(),
    );
  }

  private voteRequest(term: number, extra: Partial<VoteRequest>): VoteRequest {
    const lastIndex = this.store.lastIndex();
    return { epoch: this.store.epoch(), term, candidate: this.id, lastIndex, lastTerm: this.store.termAt(lastIndex) ?? 0, ...extra };
  }

  /**
   * Asks every other member for its (pre-)vote; `won` runs once, when a majority counting us has
   * granted it and `still()` says the campaign is the current one. A reply from a higher term
   * makes us its follower (a pre-vote's does not restart our election timer).
   */
  private canvass(members: Member[], req: VoteRequest, resetTimer: boolean, still: () => boolean, won: () => void): void {
    const need = quorum(members.length);
    const granted = new Set([this.id]);
    if (granted.size >= need) return won();
    let done = false;
    for (const m of members) {
      if (m.id === this.id) continue;
      this.transport.vote(m, req).then(
        (r) => {
          if (r.term > this.term) return this.becomeFollower(r.term, '', resetTimer);
          if (done || !r.granted || !still()) return;
          granted.add(m.id);
          if (granted.size >= need) {
            done = true;
            won();
          }
        },
        () => undefined,
      );
    }
  }

  private becomeLeader(): void {
    this.role = 'leader';
    this.leaderId = this.id;
    this.electionTimer?.cancel();
    this.electionTimer = undefined;
    this.peers.clear();
    // Entries we hold beyond the commit index will be committed by us: apply them now, so our
    // own writes land on top of them. While we lead, our state is ahead under our term (kept on
    // disk so a crash reloads it from the next leader); stepping down sets it exactly.
    this.store.setAhead({ index: Number.MAX_SAFE_INTEGER, term: this.term });
    const last = this.store.lastIndex();
    if (this.store.appliedIndex() < last) this.applyUpTo(last);
    this.store.appendNoop(this.term);
    this.log.info('raft: elected leader', { term: this.term });
    this.emit('role', 'leader');
    this.voters = this.members();
    this.syncPeers();
    this.advanceCommit();
    this.heartbeat();
  }

  private heartbeat(): void {
    if (this.role !== 'leader' || this.stopped) return;
    this.syncPeers();
    const t = this.clock.now();
    // Check quorum: a leader that has not heard from a majority for an election timeout steps
    // down, so a partitioned leader stops accepting writes that can never commit.
    const voters = this.voters;
    const live = 1 + [...this.peers.values()].filter((p) => t - p.lastContact < this.timing.electionMaxMs && voters.some((v) => v.id === p.member.id)).length;
    if (voters.length > 1 && live < quorum(voters.length)) {
      this.log.warn('raft: lost contact with a majority of managers: stepping down', { term: this.term });
      this.becomeFollower(this.term, '');
      return;
    }
    this.lastLeaderContact = t;
    for (const p of this.peers.values()) this.replicate(p, true);
    this.heartbeatTimer = this.clock.after(this.timing.heartbeatMs, () => this.heartbeat());
  }

  private syncPeers(): void {
    const members = [...this.members(), ...this.voters];
    const ids = new Set(members.map((m) => m.id));
    for (const id of this.peers.keys()) if (!ids.has(id)) this.peers.delete(id);
    for (const m of members) {
      if (m.id === this.id) continue;
      const p = this.peers.get(m.id);
      if (p) p.member = m;
      else
        this.peers.set(m.id, {
          member: m,
          next: this.store.lastIndex() + 1,
          match: 0,
          inflight: false,
          needSnapshot: false,
          lastContact: this.clock.now(),
        });
    }
  }

  private queueReplicate(): void {
    if (this.replicateQueued) return;
    this.replicateQueued = true;
    queueMicrotask(() => {
      this.replicateQueued = false;
      if (this.role !== 'leader') return;
      this.syncPeers();
      for (const p of this.peers.values()) this.replicate(p, false);
    });
  }

  private replicate(p: Peer, heartbeat: boolean): void {
    if (p.inflight || this.role !== 'leader') return;
    if (p.needSnapshot || p.next <= this.store.snapIndex()) return this.sendSnapshot(p);
    const last = this.store.lastIndex();
    if (!heartbeat && p.next > last) return;
    const prevIndex = p.next - 1;
    const prevTerm = this.store.termAt(prevIndex);
    if (prevTerm === undefined) return this.sendSnapshot(p);
    const entries = p.next <= last ? this.store.entries(p.next, MAX_APPEND_BYTES) : [];
    const term = this.term;
    p.inflight = true;
    this.transport.append(p.member, { epoch: this.store.epoch(), term, leader: this.id, prevIndex, prevTerm, entries, commit: this.commit }).then(
      (r) => {
        p.inflight = false;
        if (r.term > this.term) return this.becomeFollower(r.term, '');
        if (this.role !== 'leader' || this.term !== term) return;
        p.lastContact = this.clock.now();
        if (r.foreign) return;
        if (r.success) {
          p.match = Math.max(p.match, prevIndex + entries.length);
          p.next = p.match + 1;
          this.advanceCommit();
        } else if (r.needSnapshot) {
          p.needSnapshot = true;
        } else {
          p.next = Math.max(1, Math.min(p.next - 1, r.lastIndex + 1));
        }
        if (p.needSnapshot || p.next <= this.store.lastIndex()) this.replicate(p, false);
      },
      () => {
        p.inflight = false;
      },
    );
  }

  private sendSnapshot(p: Peer): void {
    // Our state may hold writes not yet committed; the receiver learns that from `commit`.
    const snapshot = this.store.snapshot();
    const term = this.term;
    p.inflight = true;
    this.transport.snapshot(p.member, { epoch: this.store.epoch(), term, leader: this.id, commit: this.commit, snapshot }).then(
      (r) => {
        p.inflight = false;
        if (r.term > this.term) return this.becomeFollower(r.term, '');
        if (this.role !== 'leader' || this.term !== term) return;
        p.lastContact = this.clock.now();
        p.needSnapshot = false;
        p.match = Math.max(p.match, snapshot.index);
        p.next = p.match + 1;
        this.log.info('raft: sent a snapshot', { to: p.member.id, index: snapshot.index });
        this.advanceCommit();
        this.replicate(p, false);
      },
      () => {
        p.inflight = false;
      },
    );
  }

  private advanceCommit(): void {
    if (this.role !== 'leader') return;
    const voters = this.voters.length ? this.voters : [{ id: this.id, addr: '' }];
    const matches = voters.map((m) => (m.id === this.id ? this.store.lastIndex() : (this.peers.get(m.id)?.match ?? 0))).sort((a, b) => b - a);
    const n = matches[quorum(voters.length) - 1] ?? 0;
    // Only entries of the current term commit by counting (raft §5.4.2); older ones ride along.
    if (n > this.commit && this.store.termAt(n) === this.term) {
      this.commit = n;
      if (this.store.appliedIndex() < n) this.applyUpTo(n);
      if (this.store.appliedIndex() <= this.commit) {
        this.voters = this.members();
        this.syncPeers();
      }
      this.maybeCompact();
      const done = this.waiters.filter((w) => w.index <= n);
      this.waiters = this.waiters.filter((w) => w.index > n);
      for (const w of done) {
        w.timer.cancel();
        w.resolve();
      }
      if (this.voters.length && !this.voters.some((v) => v.id === this.id)) {
        // Demoted, and the change is committed (its caller has its answer): stop leading.
        this.log.info('raft: no longer a member: stepping down', { term: this.term });
        this.becomeFollower(this.term, '');
      }
    }
  }

  private applyCommitted(): void {
    if (this.store.appliedIndex() >= this.commit) return;
    this.applyUpTo(this.commit);
    this.maybeCompact();
  }

  private applyUpTo(index: number): void {
    while (this.store.appliedIndex() < index) {
      const batch = this.store.entries(this.store.appliedIndex() + 1, MAX_APPEND_BYTES).filter((e) => e.index <= index);
      if (!batch.length) break;
      this.store.apply(batch);
    }
  }

  private maybeCompact(): void {
    const applied = Math.min(this.store.appliedIndex(), this.commit);
    const keep = Math.min(KEEP_AFTER_SNAPSHOT, Math.floor(this.snapshotInterval / 2));
    if (applied - this.store.snapIndex() >= this.snapshotInterval + keep) this.store.compact(applied - keep);
  }

  private resetElectionTimer(): void {
    this.electionTimer?.cancel();
    if (this.stopped || this.role === 'leader') return;
    const { electionMinMs: lo, electionMaxMs: hi } = this.timing;
    this.electionTimer = this.clock.after(lo + Math.floor(this.rng() * (hi - lo)), () => this.campaign());
  }

  private setHardState(term: number, vote: string): void {
    this.term = term;
    this.vote = vote;
    this.store.setHardState(term, vote);
  }

  private failWaiters(e: Error): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) {
      w.timer.cancel();
      w.reject(e);
    }
  }
}

export function quorum(voters: number): number {
  return Math.floor(voters / 2) + 1;
}
