// The manager store as raft's state machine: write sets recorded per transaction and replayed
// elsewhere to the same state, a refused write set rolls the transaction back, and the raft log
// and snapshots on SQLite.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger } from '../../src/core/log.js';
import { Manager } from '../../src/cluster/manager/manager.js';
import { StoreRaftLog } from '../../src/cluster/manager/raftlog.js';
import { STATE_TABLES, Store, type WriteOp } from '../../src/cluster/manager/store.js';

function dump(s: Store): Record<string, unknown[]> {
  return Object.fromEntries(STATE_TABLES.map((t) => [t, s.db.prepare(`SELECT * FROM ${t} ORDER BY 1, 2`).all()]));
}

async function managerWithJournal(): Promise<{ m: Manager; store: Store; sets: WriteOp[][] }> {
  const store = new Store(':memory:');
  const sets: WriteOp[][] = [];
  store.journal = { record: (ops) => void sets.push(ops), committed: () => undefined };
  const m = await Manager.init(
    store,
    { nodeId: 'self0000000000000000000000', hostname: 'node1', advertiseAddr: '172.31.1.5', managerAddr: '172.31.1.5:2377', engineVersion: 'test' },
    createLogger(),
  );
  m.close();
  return { m, store, sets };
}

test('every transaction records its write set; replayed on an empty store they give the same state', async () => {
  const { m, store, sets } = await managerWithJournal();
  m.createNetwork({ name: 'uber-net', subnets: [{ subnet: '10.0.0.0/24' }] });
  const { attachment } = m.attach('uber-net', 'self0000000000000000000000', 'ep1');
  m.attach('uber-net', 'self0000000000000000000000', 'ep2');
  m.detach(attachment.id);
  assert.ok(sets.length >= 5, `one write set per transaction (${sets.length})`);
  const copy = new Store(':memory:');
  copy.tx(() => {
    for (const ops of sets) copy.replay(ops);
  });
  assert.deepEqual(dump(copy), dump(store));
});

test('a write set the journal refuses (not the leader) rolls the whole transaction back', async () => {
  const { m, store } = await managerWithJournal();
  const before = dump(store);
  store.journal = {
    record: () => {
      throw new Error('not the leader');
    },
    committed: () => assert.fail('nothing was committed'),
  };
  assert.throws(() => m.createNetwork({ name: 'refused' }), /not the leader/);
  assert.deepEqual(dump(store), before);
});

test('the raft log on SQLite: append, truncate on conflict, apply, snapshot and restore, compact', async () => {
  const { store } = await managerWithJournal();
  const log = new StoreRaftLog(store);
  assert.equal(log.lastIndex(), 0);
  assert.equal(log.fresh(), false, 'a store that holds a cluster is not a joiner waiting for a snapshot');
  const op = (name: string): WriteOp[] => [['setMeta', `k-${name}`, name]];
  log.appendEntries([1, 2, 3].map((i) => ({ index: i, term: 1, data: op(String(i)) })));
  assert.equal(log.lastIndex(), 3);
  // A conflicting entry at 2 from a newer leader replaces 2 and 3.
  log.appendEntries([{ index: 2, term: 2, data: op('2b') }]);
  assert.equal(log.lastIndex(), 2);
  assert.equal(log.termAt(2), 2);
  log.apply(log.entries(1, 1 << 20));
  assert.equal(log.appliedIndex(), 2);
  assert.equal(store.getMeta('k-2b'), '2b');
  assert.equal(store.getMeta('k-3'), undefined);
  assert.equal(log.fresh(), false);
  const snap = log.snapshot();
  assert.deepEqual([snap.index, snap.term], [2, 2]);

  const other = new StoreRaftLog(new Store(':memory:'));
  assert.equal(other.fresh(), true);
  other.setAhead({ index: 9, term: 1 });
  other.restore(snap);
  assert.equal(other.ahead(), undefined, 'a restore clears the ahead mark');
  assert.deepEqual([other.snapIndex(), other.snapTerm(), other.appliedIndex(), other.lastIndex()], [2, 2, 2, 2]);
  assert.deepEqual(dump((other as unknown as { store: Store }).store), dump(store));

  log.appendEntries([{ index: 3, term: 2, data: op('3') }]);
  log.apply(log.entries(3, 1 << 20));
  log.compact(2);
  assert.deepEqual([log.snapIndex(), log.snapTerm(), log.lastIndex()], [2, 2, 3]);
  assert.equal(log.termAt(1), undefined, 'compacted away');
  assert.equal(log.entries(3, 1 << 20).length, 1);
});
