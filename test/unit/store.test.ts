// The store's transactions over etcd's contract (in memory): nothing is visible before it
// commits, two managers writing at once never lose a write or break a uniqueness rule, a deposed
// leader's fenced writes fail, and Version.Index is the key's mod_revision.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemKv } from '../../src/cluster/etcd/memkv.js';
import { Store } from '../../src/cluster/manager/store.js';
import type { NetworkRecord, NodeRecord, TaskRecord } from '../../src/cluster/manager/types.js';
import { ConflictError } from '../../src/core/errors.js';

const node = (id: string, labels: Record<string, string> = {}): NodeRecord => ({
  id,
  hostname: id,
  role: 'worker',
  availability: 'active',
  addr: '172.31.1.9',
  state: 'ready',
  message: '',
  engineVersion: 't',
  labels,
  version: 0,
  createdAt: '',
  updatedAt: '',
});

const net = (id: string, name: string): NetworkRecord => ({
  id,
  name,
  driver: 'overlay',
  attachable: false,
  ingress: false,
  internal: false,
  labels: {},
  options: {},
  ipam: { driver: 'default', options: {}, configs: [] },
  vnis: [],
  version: 0,
  createdAt: '',
  updatedAt: '',
});

/** Creates a network unless one of that name exists, the way the manager does. */
function createNet(s: Store, id: string, name: string): Promise<NetworkRecord> {
  return s.tx(() => {
    if (s.getNetworkByName(name)) throw new ConflictError(`network with name ${name} already exists`);
    const n = net(id, name);
    s.putNetwork(n);
    return n;
  });
}

describe('store on etcd', () => {
  it('shows a write only once etcd has it; Version.Index is its mod_revision', async () => {
    const kv = new MemKv();
    const s = await Store.open(kv);
    const p = s.tx(() => s.putNode(node('a')));
    assert.equal(s.getNode('a'), undefined, 'not visible while in flight');
    await p;
    const a = s.getNode('a')!;
    assert.equal(a.version, kv.rev);
    const before = a.version;
    await s.tx(() => {
      const n = s.getNode('a')!;
      n.labels = { x: '1' };
      s.putNode(n);
    });
    assert.ok(s.getNode('a')!.version > before);
    s.close();
  });

  it('a throw rolls back its own writes only, even when queued with others into one etcd txn', async () => {
    const s = await Store.open(new MemKv());
    const results = await Promise.allSettled([
      s.tx(() => s.putNode(node('a'))),
      s.tx(() => {
        s.putNode(node('b'));
        throw new Error('no');
      }),
      s.tx(() => s.putNode(node('c'))),
    ]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'rejected', 'fulfilled'],
    );
    assert.deepEqual(
      s.listNodes().map((n) => n.id),
      ['a', 'c'],
    );
    s.close();
  });

  it('two managers updating one record at once: both changes land (the loser runs again on the newer state)', async () => {
    const kv = new MemKv();
    const [s1, s2] = [await Store.open(kv), await Store.open(kv)];
    await s1.tx(() => s1.putNode(node('a')));
    await s2.caughtUp(kv.rev);
    const addLabel = (s: Store, k: string): Promise<void> =>
      s.tx(() => {
        const n = s.getNode('a')!;
        n.labels = { ...n.labels, [k]: 'y' };
        s.putNode(n);
      });
    await Promise.all([addLabel(s1, 'one'), addLabel(s2, 'two'), addLabel(s1, 'three'), addLabel(s2, 'four')]);
    await s1.caughtUp(kv.rev);
    assert.deepEqual(Object.keys(s1.getNode('a')!.labels).sort(), ['four', 'one', 'three', 'two']);
    s1.close();
    s2.close();
  });

  it('two managers creating the same name at once: exactly one wins, the other is refused', async () => {
    const kv = new MemKv();
    const [s1, s2] = [await Store.open(kv), await Store.open(kv)];
    const r = await Promise.allSettled([createNet(s1, 'n1', 'web'), createNet(s2, 'n2', 'web')]);
    assert.equal(r.filter((x) => x.status === 'fulfilled').length, 1);
    const lost = r.find((x) => x.status === 'rejected') as PromiseRejectedResult;
    assert.ok(lost.reason instanceof ConflictError, String(lost.reason));
    await s1.caughtUp(kv.rev);
    assert.equal(s1.listNetworks().filter((n) => n.name === 'web').length, 1);
    s1.close();
    s2.close();
  });

  it('a listing is a read: a delete elsewhere between the read and the commit makes the writer look again', async () => {
    const kv = new MemKv();
    const [s1, s2] = [await Store.open(kv), await Store.open(kv)];
    await s1.tx(() => {
      s1.putNode(node('a'));
      s1.putNode(node('b'));
    });
    await s2.caughtUp(kv.rev);
    // Both start on the same state; s1 commits first; s2 wrote a count of what it listed.
    await Promise.all([s1.tx(() => s1.deleteNode('a')), s2.tx(() => s2.putNetwork(net('summary', `nodes-${s2.listNodes().length}`)))]);
    await s2.caughtUp(kv.rev);
    assert.equal(s2.getNetwork('summary')!.name, 'nodes-1', 'the count was made again after the delete');
    s1.close();
    s2.close();
  });

  it('a fenced write fails once another manager holds the election key', async () => {
    const kv = new MemKv();
    const s = await Store.open(kv);
    const key = '/vxswarm/leader';
    const lease = await kv.leaseGrant();
    const r = await kv.txn([], [{ put: key, value: '{}', lease }]);
    await s.caughtUp(r.rev);
    s.fence = { key, target: 'CREATE', result: 'EQUAL', rev: r.rev };
    await s.tx(() => s.putNode(node('a')));
    kv.expire(lease);
    await kv.txn([], [{ put: key, value: '{"node":"other"}' }]);
    await assert.rejects(
      s.tx(() => s.putNode(node('b'))),
      /no longer the leader/,
    );
    await s.caughtUp(kv.rev);
    assert.equal(s.getNode('b'), undefined);
    s.close();
  });

  it('etcd unreachable: a clear 503 and nothing changes', async () => {
    const kv = new MemKv();
    const s = await Store.open(kv);
    kv.down = true;
    await assert.rejects(
      s.tx(() => s.putNode(node('a'))),
      (e: unknown) => (e as { status?: number }).status === 503,
    );
    kv.down = false;
    assert.equal(s.getNode('a'), undefined);
    s.close();
  });

  it('a txn whose answer was lost, or whose request was lost, is sent again and commits exactly once', async () => {
    const kv = new MemKv();
    const s = await Store.open(kv, 'm1');
    // Committed, answer lost: the second send fails its compares and the writer key says it was ours.
    kv.faults = ['lost'];
    const a = await createNet(s, 'n1', 'alpha');
    assert.equal(a.id, 'n1');
    assert.deepEqual(
      s.listNetworks().map((n) => n.name),
      ['alpha'],
    );
    // Lost twice and refused once: nothing committed until the fourth send.
    kv.faults = ['dropped', 'refused', 'dropped'];
    await createNet(s, 'n2', 'beta');
    assert.deepEqual(
      s
        .listNetworks()
        .map((n) => n.name)
        .sort(),
      ['alpha', 'beta'],
    );
    assert.equal(kv.faults.length, 0);
    // A lost answer while another manager wrote the same name: exactly one of them has it.
    const other = await Store.open(kv, 'm2');
    kv.faults = ['lost'];
    const [mine, theirs] = await Promise.allSettled([createNet(s, 'n3', 'gamma'), createNet(other, 'n4', 'gamma')]);
    assert.equal([mine, theirs].filter((r) => r.status === 'fulfilled').length, 1);
    assert.equal(s.listNetworks().filter((n) => n.name === 'gamma').length, 1);
    s.close();
    other.close();
  });

  it('etcd never answers: the write fails within its deadline as "outcome unknown", and a later read shows what happened', async () => {
    const kv = new MemKv();
    const s = await Store.open(kv, 'm1');
    kv.faults = Array<'dropped'>(100).fill('dropped');
    const t0 = Date.now();
    await assert.rejects(createNet(s, 'n1', 'alpha'), /outcome is unknown/);
    assert.ok(Date.now() - t0 < 5000);
    kv.faults = [];
    assert.equal(s.getNetwork('n1'), undefined, 'dropped requests changed nothing');
    s.close();
  });

  it("listing a node's or a service's tasks follows each task's moves, inside a transaction too", async () => {
    const s = await Store.open(new MemKv());
    const task = (id: string, serviceId: string, nodeId: string): TaskRecord => ({ id, serviceId, nodeId }) as unknown as TaskRecord;
    await s.tx(() => {
      s.putTask(task('t1', 's1', ''));
      s.putTask(task('t2', 's1', 'n1'));
      s.putTask(task('t3', 's2', 'n1'));
    });
    const ids = (l: TaskRecord[]): string[] => l.map((t) => t.id);
    assert.deepEqual(ids(s.listTasks({ nodeId: 'n1' })), ['t2', 't3']);
    assert.deepEqual(ids(s.listTasks({ serviceId: 's1' })), ['t1', 't2']);
    await s.tx(() => {
      s.putTask(task('t1', 's1', 'n1'));
      s.deleteTask('t3');
      // the transaction sees its own moves
      assert.deepEqual(ids(s.listTasks({ nodeId: 'n1' })), ['t1', 't2']);
    });
    assert.deepEqual(ids(s.listTasks({ nodeId: 'n1' })), ['t1', 't2']);
    assert.deepEqual(ids(s.listTasks({ serviceId: 's2' })), []);
    assert.deepEqual(ids(s.listTasks({ nodeId: '' })), []);
    s.close();
  });

  it('a write outside a transaction is a programming error', async () => {
    const s = await Store.open(new MemKv());
    assert.throws(() => s.putNode(node('a')), /outside a transaction/);
    s.close();
  });
});
