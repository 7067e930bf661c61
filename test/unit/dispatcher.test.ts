// Sessions with any manager, on the in-memory etcd: a node's session on a follower makes it ready
// on the leader, its assignments come down from the follower's own cache, and the session's end,
// or the follower's lease running out, marks it down.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemKv } from '../../src/cluster/etcd/memkv.js';
import type { EtcdMember } from '../../src/cluster/etcd/member.js';
import { createRootCA } from '../../src/cluster/manager/ca.js';
import { ControlPlane } from '../../src/cluster/manager/control.js';
import type { SessionPeer } from '../../src/cluster/manager/dispatcher.js';
import { Store } from '../../src/cluster/manager/store.js';
import type { NodeRecord } from '../../src/cluster/manager/types.js';
import { parseServiceSpec } from '../../src/api/shapes-workloads.js';
import { createLogger } from '../../src/core/log.js';
import { waitFor } from '../lab/swarm-helpers.js';
import { nodeRecord } from './fixtures.js';
import { generateWgKeyPair } from '../../src/kernel/wireguard.js';

const log = createLogger();
/** etcd's membership calls: one member, healthy (membership is tested on real etcd in the lab). */
const etcd = {
  members: () => Promise.resolve([]),
  writeCrl: () => Promise.resolve(),
  healthy: () => Promise.resolve(true),
  peerUrl: '',
} as unknown as EtcdMember;

async function plane(kv: MemKv, nodeId: string): Promise<ControlPlane> {
  return new ControlPlane({ nodeId, clusterId: '', store: await Store.open(kv, nodeId), kv, etcd, managerAddr: `${nodeId}:2377`, log });
}

function node(id: string, role: 'manager' | 'worker'): NodeRecord {
  const t = new Date().toISOString();
  return nodeRecord(id, { role, addr: '172.31.1.9', state: 'unknown', engineVersion: 't', version: 0, createdAt: t, updatedAt: t });
}

function peer(): SessionPeer & { got: Record<string, unknown>[]; closedAs: string[] } {
  const got: Record<string, unknown>[] = [];
  const closedAs: string[] = [];
  return { local: true, got, closedAs, send: (m) => void got.push(m), close: (how) => void closedAs.push(how) };
}

/** etcd that fails the next lease grants, as one back from a partition but not yet serving. */
class FlakyGrants extends MemKv {
  failGrants = 0;
  override leaseGrant(): Promise<string> {
    if (this.failGrants <= 0) return super.leaseGrant();
    this.failGrants--;
    return Promise.reject(new Error('etcdserver: request timed out (test)'));
  }
}

describe('sessions with any manager', () => {
  it("a worker's session on a follower: ready on the leader, assignments from the follower's cache, down when it ends or the follower's lease runs out", async () => {
    const kv = new MemKv();
    const leader = await plane(kv, 'm1');
    await leader.init({ nodeId: 'm1', hostname: 'm1', advertiseAddr: '172.31.1.5', managerAddr: 'm1:2377', engineVersion: 't', ca: await createRootCA() });
    assert.ok(leader.leading);
    await leader.store.tx(() => {
      leader.store.putNode(node('m2', 'manager'));
      leader.store.putNode(node('w1', 'worker'));
    });
    const follower = await plane(kv, 'm2');
    await follower.store.caughtUp(leader.store.rev);
    await follower.openApi();
    const stateOf = (id: string): string => `${leader.store.getNode(id)!.state}/${leader.store.getNode(id)!.message}`;
    try {
      const p = peer();
      const h = await follower.dispatcher.open('w1', p);
      assert.equal(p.got[0]?.type, 'welcome');
      await waitFor('w1 ready on the leader', async () => (stateOf('w1') === 'ready/' ? true : undefined), 3000, 10);
      assert.equal(leader.store.getSession('w1')?.manager, 'm2');

      // A service for w1, written on the follower; the leader's loops place it; the follower sends it down.
      const spec = parseServiceSpec({
        Name: 'web',
        TaskTemplate: { ContainerSpec: { Image: 'busybox:local' }, Placement: { Constraints: ['node.hostname==w1'] } },
      });
      await follower.api.orchestrator.createService(spec);
      const set = await waitFor(
        'the assignment on the follower',
        async () => {
          const a = p.got.filter((m) => m.type === 'assignments').pop() as { tasks: { nodeId: string }[] } | undefined;
          return a?.tasks.length ? a.tasks : undefined;
        },
        3000,
        10,
      );
      assert.equal(set[0]!.nodeId, 'w1');

      // The session ends: its key goes, and the leader marks the node down at once.
      h.closed();
      await waitFor('w1 down', async () => (stateOf('w1') === 'down/heartbeat failure: session closed' ? true : undefined), 1000, 10);

      // Back on the follower; then the follower's lease runs out (it died or was cut off).
      await follower.dispatcher.open('w1', peer());
      await waitFor('w1 ready again', async () => (stateOf('w1') === 'ready/' ? true : undefined), 3000, 10);
      const { kvs } = await kv.range('/vxswarm/sessions/');
      assert.equal(kvs.length, 1);
      kv.expire(kvs[0]!.lease!);
      await waitFor('w1 down after the lease', async () => (leader.store.getNode('w1')!.state === 'down' ? true : undefined), 1000, 10);

      // A goodbye (a planned stop, as a restart): the node stays up until the grace's own lease ends.
      const leaving = peer();
      const hl = await follower.dispatcher.open('w1', leaving);
      await waitFor('w1 ready for the goodbye', async () => (stateOf('w1') === 'ready/' ? true : undefined), 3000, 10);
      hl.receive({ type: 'bye' });
      assert.deepEqual(leaving.closedAs, ['normal']);
      const bye = await waitFor(
        'the goodbye key',
        async () => {
          const k = (await kv.range('/vxswarm/sessions/')).kvs[0];
          return k && k.value.includes('goodbyeUntil') ? k : undefined;
        },
        1000,
        10,
      );
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(stateOf('w1'), 'ready/', 'still up within the grace');
      kv.expire(bye.lease!);
      await waitFor('w1 down after the grace', async () => (leader.store.getNode('w1')!.state === 'down' ? true : undefined), 1000, 10);

      // A node removed from the swarm has its session refused and ended.
      // Nothing more is sent down it: its tasks keep running as they were until the node hears
      // the refusal (an empty assignment first would stop them, racing the refusal).
      const again = peer();
      await follower.dispatcher.open('w1', again);
      await waitFor('assignments on the new session', async () => (again.got.some((m) => m.type === 'assignments') ? true : undefined), 3000, 10);
      const sentBefore = again.got.length;
      await leader.store.tx(() => leader.store.deleteNode('w1'));
      await waitFor('the session refused', async () => (again.closedAs.includes('refused') ? true : undefined), 1000, 10);
      // A change that moves w1's tasks elsewhere or ends them would otherwise reach it.
      await follower.api.orchestrator.removeService('web');
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(
        again.got.slice(sentBefore).map((m) => m.type),
        [],
        'nothing sent to a removed node',
      );
      await assert.rejects(follower.dispatcher.open('w1', peer()), (e: unknown) => (e as { status?: number }).status === 401);
    } finally {
      follower.close();
      leader.close();
      follower.store.close();
      leader.store.close();
    }
  });

  it('a lost lease whose new grant fails is granted again on a later tick: the keys come back and the nodes are ready again', async () => {
    const kv = new FlakyGrants();
    const leader = await plane(kv, 'm1');
    await leader.init({ nodeId: 'm1', hostname: 'm1', advertiseAddr: '172.31.1.5', managerAddr: 'm1:2377', engineVersion: 't', ca: await createRootCA() });
    await leader.store.tx(() => leader.store.putNode(node('m2', 'manager')));
    const follower = await plane(kv, 'm2');
    await follower.store.caughtUp(leader.store.rev);
    await follower.openApi();
    const stateOf = (id: string): string => leader.store.getNode(id)!.state;
    try {
      // The follower's own node, in-process, as after the partition the lab test makes.
      const own = peer();
      await follower.dispatcher.open('m2', own);
      await waitFor('m2 ready', async () => (stateOf('m2') === 'ready' ? true : undefined), 3000, 10);
      const { kvs } = await kv.range('/vxswarm/sessions/');
      kv.failGrants = 2;
      kv.expire(kvs[0]!.lease!);
      await waitFor('m2 down once its lease is gone', async () => (stateOf('m2') === 'down' ? true : undefined), 1000, 10);
      await waitFor('m2 ready again after two failed grants', async () => (stateOf('m2') === 'ready' ? true : undefined), 6000, 20);
      assert.equal(kv.failGrants, 0, 'both failed grants were tried');
      assert.deepEqual(own.closedAs, [], 'its session was never ended');
      assert.equal((await kv.range('/vxswarm/sessions/')).kvs.length, 1);
    } finally {
      follower.close();
      leader.close();
      follower.store.close();
      leader.store.close();
    }
  });

  it("encrypted networks: a node's peers are exactly the nodes with an endpoint on an encrypted network it has; keys and removals follow", async () => {
    const kv = new MemKv();
    const leader = await plane(kv, 'm1');
    await leader.init({ nodeId: 'm1', hostname: 'm1', advertiseAddr: '172.31.1.5', managerAddr: 'm1:2377', engineVersion: 't', ca: await createRootCA() });
    const m = leader.api.manager;
    try {
      await leader.store.tx(() => {
        for (const [id, ip] of [
          ['w1', '198.18.0.2'],
          ['w2', '198.18.0.3'],
          ['w3', '198.18.0.4'],
        ] as const)
          leader.store.putNode({ ...node(id, 'worker'), addr: `10.1.0.${id.slice(1)}`, tunnelIp: ip });
      });
      const keys = await Promise.all(['w1', 'w2', 'w3'].map(() => generateWgKeyPair()));
      await assert.rejects(m.setWireguardKey('w1', 'not-a-key'), /invalid WireGuard public key/);
      for (const [i, id] of ['w1', 'w2', 'w3'].entries()) await m.setWireguardKey(id, keys[i]!.publicKey);
      assert.equal(leader.store.getNode('w1')!.wgPublicKey, keys[0]!.publicKey);
      assert.equal(leader.store.getNode('m1')!.tunnelIp, '198.18.0.1', 'the first node has the first address');
      const sec = await m.createNetwork({ name: 'sec', options: { encrypted: '' } });
      const plain = await m.createNetwork({ name: 'plain' });
      // w1 and w2 on the encrypted network, w3 only on the plain one; each node a task's endpoint there.
      const svc = (name: string, nets: string[], nodeId: string): Promise<unknown> =>
        leader.api.orchestrator.createService(
          parseServiceSpec({
            Name: name,
            TaskTemplate: {
              ContainerSpec: { Image: 'busybox:local' },
              Networks: nets.map((Target) => ({ Target })),
              Placement: { Constraints: [`node.hostname==${nodeId}`] },
            },
          }),
        );
      await svc('s1', [sec.id, plain.id], 'w1');
      await svc('s2', [sec.id], 'w2');
      await svc('s3', [plain.id], 'w3');
      await leader.store.tx(() => {
        for (const n of ['w1', 'w2', 'w3']) leader.store.putNode({ ...leader.store.getNode(n)!, state: 'ready' });
      });
      const tunnelOf = (
        p: ReturnType<typeof peer>,
      ): { ip: string; peers: { nodeId: string; publicKey: string; addr: string; tunnelIp: string }[] } | undefined =>
        (p.got.filter((x) => x.type === 'assignments').pop() as { tunnel?: { ip: string; peers: [] } } | undefined)?.tunnel;
      const p1 = peer();
      const p3 = peer();
      await leader.dispatcher.open('w1', p1);
      await leader.dispatcher.open('w3', p3);
      const t1 = await waitFor('w1 told its peer w2', async () => (tunnelOf(p1)?.peers.length === 1 ? tunnelOf(p1) : undefined), 3000, 10);
      assert.deepEqual(t1, { ip: '198.18.0.2', peers: [{ nodeId: 'w2', publicKey: keys[1]!.publicKey, addr: '10.1.0.2', tunnelIp: '198.18.0.3' }] });
      await waitFor('w3 has tasks', async () => (tunnelOf(p3) ? true : undefined), 3000, 10);
      assert.deepEqual(tunnelOf(p3), { ip: '198.18.0.4', peers: [] }, 'w3 shares no encrypted network: no peers');
      // w2 rotates its key: w1 is told the new one.
      const k2 = await generateWgKeyPair();
      await m.setWireguardKey('w2', k2.publicKey);
      await waitFor('w1 told the new key', async () => (tunnelOf(p1)?.peers[0]?.publicKey === k2.publicKey ? true : undefined), 3000, 10);
      // w2 is removed from the swarm: out of w1's peers at once.
      await leader.store.tx(() => leader.store.putNode({ ...leader.store.getNode('w2')!, state: 'down' }));
      await m.removeNode('w2', true);
      await waitFor('w2 out of w1 peers', async () => (tunnelOf(p1)?.peers.length === 0 ? true : undefined), 3000, 10);
    } finally {
      leader.close();
      leader.store.close();
    }
  });
});
