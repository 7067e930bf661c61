// Raft simulations: several managers in one process on an in-memory transport and a fake clock,
// with crashes, partitions, joins and compaction. The state machine is a list of values plus a
// member set, kept in memory the way the SQLite store keeps its tables.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../../src/core/clock.js';
import { createLogger } from '../../src/core/log.js';
import { seededRng } from '../../src/gossip/random.js';
import {
  Raft,
  type AppendReply,
  type AppendRequest,
  type Entry,
  type Member,
  type RaftSnapshot,
  type RaftStore,
  type RaftTransport,
  type SnapshotReply,
  type SnapshotRequest,
  type TimeoutNowRequest,
  type VoteReply,
  type VoteRequest,
} from '../../src/cluster/raft/raft.js';

type Op = { value: number } | { add: string };
interface State {
  values: number[];
  members: string[];
}

/** The durable part of a node: survives a crash (the Raft object does not). */
class MemStore implements RaftStore {
  hs = { term: 0, vote: '' };
  log: Entry[] = [];
  sIndex = 0;
  sTerm = 0;
  applied = 0;
  aheadOf: { index: number; term: number } | undefined;
  isFresh = true;
  state: State = { values: [], members: [] };

  hardState(): { term: number; vote: string } {
    return { ...this.hs };
  }
  setHardState(term: number, vote: string): void {
    this.hs = { term, vote };
  }
  snapIndex(): number {
    return this.sIndex;
  }
  snapTerm(): number {
    return this.sTerm;
  }
  lastIndex(): number {
    return this.log.length ? this.log[this.log.length - 1]!.index : this.sIndex;
  }
  termAt(index: number): number | undefined {
    if (index === this.sIndex) return this.sTerm;
    return this.log[index - this.sIndex - 1]?.term;
  }
  entries(from: number, maxBytes: number): Entry[] {
    const out: Entry[] = [];
    let bytes = 0;
    for (const e of this.log.slice(from - this.sIndex - 1)) {
      bytes += 64;
      if (out.length && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }
  appendEntries(entries: Entry[]): void {
    this.log = this.log.slice(0, entries[0]!.index - this.sIndex - 1).concat(entries.map((e) => ({ ...e })));
  }
  appendNoop(term: number): number {
    const index = this.lastIndex() + 1;
    this.log.push({ index, term, data: null });
    this.applied = index;
    return index;
  }
  /** the leader's write: appended and applied in one step, as the SQLite store does */
  propose(term: number, op: Op): number {
    const index = this.lastIndex() + 1;
    this.log.push({ index, term, data: op });
    this.applyOp(op);
    this.applied = index;
    this.isFresh = false;
    return index;
  }
  appliedIndex(): number {
    return this.applied;
  }
  apply(entries: Entry[]): void {
    for (const e of entries) {
      if (e.data) this.applyOp(e.data as Op);
      this.applied = e.index;
    }
  }
  private applyOp(op: Op): void {
    if ('value' in op) this.state.values.push(op.value);
    else if (!this.state.members.includes(op.add)) this.state.members.push(op.add);
  }
  snapshot(): RaftSnapshot {
    return { index: this.applied, term: this.termAt(this.applied)!, state: structuredClone(this.state) };
  }
  restore(s: RaftSnapshot): void {
    this.state = structuredClone(s.state as State);
    this.log = [];
    this.sIndex = s.index;
    this.sTerm = s.term;
    this.applied = s.index;
    this.aheadOf = undefined;
    this.isFresh = false;
  }
  compact(index: number): void {
    const term = this.termAt(index)!;
    this.log = this.log.slice(index - this.sIndex);
    this.sIndex = index;
    this.sTerm = term;
  }
  fresh(): boolean {
    return this.isFresh;
  }
  ep = '';
  epoch(): string {
    return this.ep;
  }
  setEpoch(e: string): void {
    this.ep = e;
  }
  ahead(): { index: number; term: number } | undefined {
    return this.aheadOf;
  }
  setAhead(a: { index: number; term: number } | undefined): void {
    this.aheadOf = a;
  }
}

/** Delivers RPCs after a random 1-5 ms; a cut link or a crashed node fails the call after 100 ms. */
class MemNet {
  readonly nodes = new Map<string, Raft>();
  readonly cut = new Set<string>();
  constructor(
    private readonly clock: FakeClock,
    private readonly rng: () => number,
  ) {}
  isolate(id: string, on: boolean): void {
    if (on) this.cut.add(id);
    else this.cut.delete(id);
  }
  private call<R>(from: string, to: Member, fn: (r: Raft) => R): Promise<R> {
    return new Promise((resolve, reject) => {
      const fail = (): void => void this.clock.after(100, () => reject(new Error('unreachable')));
      const down = (): boolean => this.cut.has(from) || this.cut.has(to.id) || !this.nodes.has(to.id) || !this.nodes.has(from);
      if (down()) return fail();
      this.clock.after(1 + Math.floor(this.rng() * 4), () => {
        const target = this.nodes.get(to.id);
        if (down() || !target) return fail();
        const reply = fn(target);
        this.clock.after(1 + Math.floor(this.rng() * 4), () => (down() ? reject(new Error('unreachable')) : resolve(reply)));
      });
    });
  }
  transport(from: string): RaftTransport {
    return {
      vote: (to, req: VoteRequest) => this.call<VoteReply>(from, to, (r) => r.handleVote(req)),
      append: (to, req: AppendRequest) => this.call<AppendReply>(from, to, (r) => r.handleAppend(structuredClone(req))),
      snapshot: (to, req: SnapshotRequest) => this.call<SnapshotReply>(from, to, (r) => r.handleSnapshot(structuredClone(req))),
      timeoutNow: (to, req: TimeoutNowRequest) => this.call<unknown>(from, to, (r) => r.handleTimeoutNow(req)),
    };
  }
}

class Sim {
  readonly clock = new FakeClock();
  readonly rng: () => number;
  readonly net: MemNet;
  readonly stores = new Map<string, MemStore>();
  readonly leadersByTerm = new Map<string, string>();
  constructor(
    readonly seed: number,
    readonly snapshotInterval = 10_000,
  ) {
    this.rng = seededRng(seed);
    this.net = new MemNet(this.clock, this.rng);
  }

  boot(id: string, bootstrap = false): Raft {
    let store = this.stores.get(id);
    if (!store) {
      store = new MemStore();
      this.stores.set(id, store);
    }
    const s = store;
    const r = new Raft({
      id,
      store: s,
      transport: this.net.transport(id),
      clock: this.clock,
      members: () => s.state.members.map((m) => ({ id: m, addr: `${m}:2377` })),
      log: createLogger({ node: id }),
      rng: this.rng,
      snapshotInterval: this.snapshotInterval,
    });
    r.on('role', (role: string) => {
      if (role !== 'leader') return;
      // One leader per term of one raft incarnation (a forced new cluster starts another).
      const key = `${s.epoch()}/${r.term}`;
      const other = this.leadersByTerm.get(key);
      assert.ok(other === undefined || other === id, `two leaders in term ${key}: ${other} and ${id}`);
      this.leadersByTerm.set(key, id);
    });
    this.net.nodes.set(id, r);
    if (bootstrap) {
      r.bootstrap();
      this.write(id, { add: id });
    } else r.start();
    return r;
  }

  crash(id: string): void {
    this.net.nodes.get(id)?.stop();
    this.net.nodes.delete(id);
  }

  write(id: string, op: Op): Promise<void> {
    const r = this.net.nodes.get(id)!;
    const term = r.leaderTerm();
    const index = this.stores.get(id)!.propose(term, op);
    r.appended();
    return r.waitCommitted(index);
  }

  /** A write that must commit: runs the clock until it does. */
  async commit(id: string, op: Op): Promise<void> {
    let err: unknown;
    let done = false;
    this.write(id, op).then(
      () => (done = true),
      (e: unknown) => ((err = e), (done = true)),
    );
    await this.until('a commit', () => done);
    if (err) throw err;
  }

  leaders(): string[] {
    return [...this.net.nodes.values()].filter((r) => r.isLeader() && !this.net.cut.has(r.id)).map((r) => r.id);
  }

  async until(what: string, cond: () => boolean, ms = 30_000): Promise<number> {
    const t0 = this.clock.now();
    while (!cond()) {
      if (this.clock.now() - t0 > ms) assert.fail(`timed out after ${ms} ms (simulated) waiting for ${what}`);
      await this.clock.advance(10);
    }
    return this.clock.now() - t0;
  }

  async settle(ms: number): Promise<void> {
    await this.clock.advance(ms);
  }

  /** Writes through the current leader and waits for the commit; returns false if it failed. */
  async tryWrite(value: number): Promise<boolean> {
    const l = this.leaders()[0];
    if (!l) return false;
    let ok: boolean | undefined;
    try {
      this.write(l, { value }).then(
        () => (ok = true),
        () => (ok = false),
      );
    } catch {
      return false;
    }
    await this.until('a write to finish', () => ok !== undefined, 60_000);
    return ok!;
  }
}

async function threeNodes(seed: number, snapshotInterval?: number): Promise<Sim> {
  const s = new Sim(seed, snapshotInterval);
  s.boot('n0', true);
  s.boot('n1');
  s.boot('n2');
  await s.commit('n0', { add: 'n1' });
  await s.commit('n0', { add: 'n2' });
  await s.until('all three to hold the membership', () => [...s.stores.values()].every((x) => x.state.members.length === 3));
  return s;
}

function values(s: Sim, id: string): number[] {
  return s.stores.get(id)!.state.values;
}

test('raft: a bootstrapped leader adds two fresh managers (by snapshot) and every write reaches all three in order', async () => {
  const s = await threeNodes(1);
  assert.deepEqual(s.leaders(), ['n0']);
  for (let i = 1; i <= 50; i++) await s.commit('n0', { value: i });
  await s.settle(1000);
  const want = Array.from({ length: 50 }, (_, i) => i + 1);
  for (const id of ['n0', 'n1', 'n2']) assert.deepEqual(values(s, id), want, `state of ${id}`);
  // A follower refuses writes: the store's transaction is rolled back on this throw.
  assert.throws(() => s.net.nodes.get('n1')!.leaderTerm(), /not the leader \(the leader is n0:2377\)/);
});

test('raft: the leader crashes; a new one is elected within the election timeout and the old one catches up on restart', async () => {
  const s = await threeNodes(2);
  for (let i = 1; i <= 10; i++) await s.commit('n0', { value: i });
  s.crash('n0');
  const took = await s.until('a new leader', () => s.leaders().length === 1);
  assert.ok(took <= 3500, `new leader after ${took} ms (simulated); election timeout is 1.5-3 s`);
  const l = s.leaders()[0]!;
  assert.notEqual(l, 'n0');
  for (let i = 11; i <= 20; i++) await s.commit(l, { value: i });
  s.boot('n0');
  await s.until('n0 to catch up', () => values(s, 'n0').length === 20);
  assert.deepEqual(values(s, 'n0'), values(s, l));
  assert.equal(s.leaders().length, 1, 'the restarted node did not depose the leader');
  assert.equal(s.leaders()[0], l);
});

test('raft: a leader cut off in a minority cannot commit, steps down, and drops its uncommitted write on healing', async () => {
  const s = await threeNodes(3);
  for (let i = 1; i <= 5; i++) await s.commit('n0', { value: i });
  s.net.isolate('n0', true);
  let lost: boolean | undefined;
  s.write('n0', { value: 666 }).then(
    () => (lost = false),
    () => (lost = true),
  );
  assert.deepEqual(values(s, 'n0').at(-1), 666, 'the leader applies its own write at once');
  await s.until('the majority to elect a leader', () => s.leaders().length === 1 && s.leaders()[0] !== 'n0');
  const l = s.leaders()[0]!;
  for (let i = 6; i <= 8; i++) await s.commit(l, { value: i });
  await s.until('the cut-off leader to step down', () => !s.net.nodes.get('n0')!.isLeader());
  await s.until('the write on the minority to fail', () => lost !== undefined);
  assert.equal(lost, true);
  s.net.isolate('n0', false);
  await s.until('n0 to converge', () => JSON.stringify(values(s, 'n0')) === JSON.stringify(values(s, l)));
  assert.deepEqual(values(s, 'n0'), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.ok(!values(s, 'n1').includes(666) && !values(s, 'n2').includes(666));
});

test('raft: a follower cut off for a minute keeps its term (pre-vote) and rejoins without deposing the leader', async () => {
  const s = await threeNodes(6);
  await s.commit('n0', { value: 1 });
  const term = s.net.nodes.get('n0')!.term;
  s.net.isolate('n2', true);
  await s.settle(60_000);
  assert.equal(s.net.nodes.get('n2')!.term, term, 'no term inflation while cut off');
  await s.commit('n0', { value: 2 });
  s.net.isolate('n2', false);
  await s.until('n2 to catch up', () => values(s, 'n2').length === 2);
  assert.deepEqual(s.leaders(), ['n0']);
  assert.equal(s.net.nodes.get('n0')!.term, term, 'the leader kept its term');
});

test('raft: a stopping leader hands over to an up-to-date follower within milliseconds, not an election timeout', async () => {
  const s = await threeNodes(7);
  for (let i = 1; i <= 5; i++) await s.commit('n0', { value: i });
  const term = s.net.nodes.get('n0')!.term;
  let handed: boolean | undefined;
  const t0 = s.clock.now();
  void s.net.nodes
    .get('n0')!
    .transferLeadership()
    .then((ok) => (handed = ok));
  const took = await s.until('the handover', () => handed !== undefined);
  assert.equal(handed, true);
  assert.ok(took < 200, `handover took ${took} ms (simulated); an election would take 1500+`);
  const l = s.leaders()[0]!;
  assert.notEqual(l, 'n0');
  assert.equal(s.net.nodes.get(l)!.term, term + 1);
  assert.ok(s.clock.now() - t0 < 1500);
  // No write was lost, and the new leader takes writes at once.
  await s.commit(l, { value: 6 });
  await s.until('all to converge', () => ['n0', 'n1', 'n2'].every((id) => values(s, id).length === 6));
  assert.throws(() => s.net.nodes.get('n0')!.leaderTerm(), /not the leader/);
});

test('raft: after losing its majority, a forced new cluster of one takes writes and the old members cannot disturb it', async () => {
  const s = await threeNodes(8);
  await s.commit('n0', { value: 1 });
  s.crash('n1');
  s.crash('n2');
  await s.until('n0 to step down without a majority', () => !s.net.nodes.get('n0')!.isLeader());
  // The daemon makes this node the only manager in the state, then forces the new cluster.
  const n0 = s.net.nodes.get('n0')!;
  s.stores.get('n0')!.state.members = ['n0'];
  n0.forceNewCluster('epoch-2');
  assert.ok(n0.isLeader());
  await s.commit('n0', { value: 2 });
  const term = n0.term;
  // The old members come back with their old state: a majority of the old configuration, they
  // elect one of themselves, but n0 does not listen to them and keeps leading its own cluster.
  s.boot('n1');
  s.boot('n2');
  await s.settle(10_000);
  assert.ok(n0.isLeader());
  assert.equal(n0.term, term);
  assert.deepEqual(values(s, 'n0'), [1, 2]);
  // Joined again from scratch, a node takes the new incarnation from its snapshot.
  s.crash('n1');
  s.crash('n2');
  s.stores.delete('n1');
  s.boot('n1');
  await s.commit('n0', { add: 'n1' });
  await s.until('n1 to hold the new state', () => values(s, 'n1').length === 2);
  assert.deepEqual(values(s, 'n1'), [1, 2]);
  assert.equal(s.stores.get('n1')!.epoch(), 'epoch-2');
});

test('raft: a follower that falls behind the compaction point gets a snapshot', async () => {
  const s = await threeNodes(4, 20);
  s.net.isolate('n2', true);
  for (let i = 1; i <= 100; i++) await s.commit('n0', { value: i });
  assert.ok(s.stores.get('n0')!.snapIndex() > 0, 'the leader compacted its log');
  assert.ok(s.stores.get('n0')!.log.length < 60, `log kept short (${s.stores.get('n0')!.log.length} entries)`);
  s.net.isolate('n2', false);
  await s.until('n2 to catch up', () => values(s, 'n2').length === 100);
  assert.deepEqual(values(s, 'n2'), values(s, 'n0'));
});

test('raft: five managers under random crashes and partitions: one leader per term, no acknowledged write lost, all converge', async () => {
  const s = new Sim(Number(process.env.RAFT_SEED ?? 5), 50);
  s.boot('n0', true);
  for (const id of ['n1', 'n2', 'n3', 'n4']) {
    s.boot(id);
    await s.commit('n0', { add: id });
  }
  const acked: number[] = [];
  const ids = ['n0', 'n1', 'n2', 'n3', 'n4'];
  let v = 0;
  for (let round = 0; round < 40; round++) {
    // At most two of five out at a time (crashed or cut off), so a majority can always form.
    const pick = ids[Math.floor(s.rng() * ids.length)]!;
    const out = ids.filter((id) => !s.net.nodes.has(id) || s.net.cut.has(id)).length;
    const isOut = !s.net.nodes.has(pick) || s.net.cut.has(pick);
    const action = s.rng();
    if (isOut) {
      if (!s.net.nodes.has(pick)) s.boot(pick);
      s.net.isolate(pick, false);
    } else if (out < 2 && action < 0.5) s.crash(pick);
    else if (out < 2 && action < 0.8) s.net.isolate(pick, true);
    for (let k = 0; k < 3; k++) {
      v++;
      if (await s.tryWrite(v)) acked.push(v);
    }
    await s.settle(500);
  }
  // Heal everything and let it converge.
  for (const id of ids) {
    s.net.isolate(id, false);
    if (!s.net.nodes.has(id)) s.boot(id);
  }
  await s.until('one leader', () => s.leaders().length === 1, 60_000);
  const l = s.leaders()[0]!;
  await s.commit(l, { value: -1 });
  await s.until('all five to converge', () => ids.every((id) => JSON.stringify(values(s, id)) === JSON.stringify(values(s, l))), 60_000);
  const final = values(s, l);
  for (const a of acked) assert.ok(final.includes(a), `acknowledged write ${a} survived`);
  assert.equal(new Set(final).size, final.length, 'no write applied twice');
  assert.ok(acked.length > 60, `most writes were acknowledged (${acked.length} of ${v})`);
});
