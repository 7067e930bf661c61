import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseServiceSpec, serviceJson, serviceSpecJson, taskJson } from '../../src/api/shapes-workloads.js';
import { humanDuration } from '../../src/core/human.js';
import { createLogger } from '../../src/core/log.js';
import { parseIp } from '../../src/core/ipv4.js';
import { MAX_LOCAL_ATTACHMENTS, Manager } from '../../src/cluster/manager/manager.js';
import { Orchestrator } from '../../src/cluster/manager/orchestrator.js';
import { Store } from '../../src/cluster/manager/store.js';
import { MemKv } from '../../src/cluster/etcd/memkv.js';
import { createRootCA } from '../../src/cluster/manager/ca.js';
import { matches, parseConstraint, place } from '../../src/cluster/manager/scheduler.js';
import type { TaskRecord } from '../../src/cluster/manager/types.js';
import { parseRef } from '../../src/runtime/reference.js';
import { nodeRecord } from './fixtures.js';
import { buildOciSpec, hostsFile, mergeEnv, parseUser } from '../../src/runtime/spec.js';

const node = nodeRecord;

describe('scheduler', () => {
  it('spreads: fewest tasks of the service, then fewest overall, then node ID', () => {
    const nodes = [node('a'), node('b'), node('c')];
    const load = { service: new Map([['a', 1]]), total: new Map([['b', 5]]) };
    assert.deepEqual(place(nodes, [], load), { nodeId: 'c' });
    load.service.set('c', 1);
    assert.deepEqual(place(nodes, [], load), { nodeId: 'b' });
  });
  it('skips nodes that are down, drained or fail constraints, and says why when none fits', () => {
    const nodes = [node('a', { state: 'down' }), node('b', { availability: 'drain' }), node('c', { labels: { zone: 'x' } })];
    const none = { service: new Map(), total: new Map() };
    assert.deepEqual(place(nodes, [parseConstraint('node.labels.zone==x')], none), { nodeId: 'c' });
    assert.deepEqual(place(nodes, [parseConstraint('node.labels.zone==mars')], none), {
      error: 'no suitable node (scheduling constraints not satisfied on 1 node; 2 nodes not available for new tasks)',
    });
  });
  it('parses constraints and refuses unknown keys or operators', () => {
    assert.deepEqual(parseConstraint(' node.role == manager '), { key: 'node.role', op: '==', value: 'manager' });
    assert.ok(matches(node('m', { role: 'manager' }), [parseConstraint('node.role==MANAGER')]));
    assert.ok(matches(node('w'), [parseConstraint('node.labels.gpu!=yes')]));
    assert.throws(() => parseConstraint('node.color==red'), /unknown key/);
    assert.throws(() => parseConstraint('node.role=manager'), /invalid constraint/);
  });
});

describe('service spec (Docker JSON ↔ ours)', () => {
  const body = {
    Name: 'test',
    TaskTemplate: {
      ContainerSpec: { Image: 'busybox:local', Args: ['sleep', 'infinity'], Env: ['A=1'], StopGracePeriod: 2e9 },
      Networks: [{ Target: 'net1', Aliases: ['t'] }],
      Placement: { Constraints: ['node.role==worker'] },
      RestartPolicy: { Condition: 'on-failure', MaxAttempts: 3 },
      Resources: { Limits: { MemoryBytes: 64 << 20 } },
    },
    Mode: { Replicated: { Replicas: 3 } },
  };
  it('round-trips the fields a CLI sends', () => {
    const s = parseServiceSpec(body);
    assert.equal(s.replicas, 3);
    assert.equal(s.stopGraceMs, 2000);
    assert.deepEqual(s.restart, { condition: 'on-failure', delayMs: 5000, maxAttempts: 3 });
    const back = serviceSpecJson(s) as { TaskTemplate: { ContainerSpec: Record<string, unknown>; Networks: unknown[] }; Mode: unknown };
    assert.deepEqual(back.TaskTemplate.ContainerSpec.Args, ['sleep', 'infinity']);
    assert.deepEqual(back.TaskTemplate.Networks, [{ Target: 'net1', Aliases: ['t'] }]);
    assert.deepEqual(back.Mode, { Replicated: { Replicas: 3 } });
  });
  it('refuses wrong types with the field named', () => {
    assert.throws(() => parseServiceSpec({ ...body, Mode: { Replicated: { Replicas: 'two' } } }), /Replicas/);
    assert.throws(() => parseServiceSpec({ ...body, Mode: { Global: {}, Replicated: { Replicas: 2 } } }), /a service has one mode, not Replicated and Global/);
    assert.throws(() => parseServiceSpec({ Name: 'x', TaskTemplate: { ContainerSpec: {} } }), /image reference must be provided/);
    assert.throws(() => parseServiceSpec({ ...body, TaskTemplate: { ...body.TaskTemplate, RestartPolicy: { Condition: 'always' } } }), /Condition/);
  });
  it("formats durations as Docker's HumanDuration", () => {
    assert.equal(humanDuration(500), 'Less than a second');
    assert.equal(humanDuration(1500), '1 second');
    assert.equal(humanDuration(59_999), '59 seconds');
    assert.equal(humanDuration(119_000), 'About a minute');
    assert.equal(humanDuration(3 * 3600_000), '3 hours');
  });
});

describe('runtime pieces', () => {
  it('image references normalise like Docker', () => {
    assert.equal(parseRef('busybox').familiar, 'busybox:latest');
    assert.equal(parseRef('busybox').repo, 'library/busybox');
    assert.equal(parseRef('docker.io/library/ubuntu:22.04').familiar, 'ubuntu:22.04');
    const r = parseRef('127.0.0.1:5000/team/bb:v1');
    assert.deepEqual([r.registry, r.repo, r.tag, r.familiar], ['127.0.0.1:5000', 'team/bb', 'v1', '127.0.0.1:5000/team/bb:v1']);
    assert.throws(() => parseRef('Bad/Name'), /invalid reference format/);
    assert.throws(() => parseRef('x@sha256:123'), /bad digest/);
  });
  it('the OCI spec joins the given netns, has NET_RAW, binds the /etc files, sets limits', () => {
    const spec = buildOciSpec({
      args: ['sleep', '1'],
      env: [],
      cwd: '/',
      rootfs: '/r',
      hostname: 'h',
      netnsPath: '/run/netns/c1',
      cgroupsPath: '/p/c1',
      etc: { hosts: '/e/hosts', hostname: '/e/hostname', resolvConf: '/e/resolv' },
      memoryLimit: 1 << 26,
      nanoCpus: 5e8,
    }) as {
      process: { capabilities: { bounding: string[] }; env: string[] };
      linux: { namespaces: { type: string; path?: string }[]; resources: { memory?: { limit: number }; cpu?: { quota: number; period: number } } };
      mounts: { destination: string }[];
    };
    assert.ok(spec.process.capabilities.bounding.includes('CAP_NET_RAW'));
    assert.ok(!spec.process.capabilities.bounding.includes('CAP_SYS_ADMIN'));
    assert.deepEqual(
      spec.linux.namespaces.find((n) => n.type === 'network'),
      { type: 'network', path: '/run/netns/c1' },
    );
    assert.equal(spec.linux.resources.memory?.limit, 1 << 26);
    assert.deepEqual(spec.linux.resources.cpu, { quota: 50_000, period: 100_000 }, '--limit-cpu 0.5: half of every 100 ms');
    assert.ok(spec.mounts.some((m) => m.destination === '/etc/resolv.conf'));
    assert.ok(spec.process.env.some((e) => e.startsWith('PATH=')));
  });
  it('env merges by name; users are numeric; hosts lists the container', () => {
    assert.deepEqual(mergeEnv(['A=1', 'PATH=/x'], ['A=2']), ['A=2', 'PATH=/x']);
    assert.deepEqual(parseUser('1000:100'), { uid: 1000, gid: 100 });
    assert.throws(() => parseUser('nobody'), /numeric/);
    assert.match(hostsFile('abc', ['10.0.0.3']), /10\.0\.0\.3\tabc\n$/);
  });
});

/** A manager on an in-memory etcd (node n1) and its orchestrator; add nodes with store.putNode in a store.tx. */
async function managerOf() {
  const store = await Store.open(new MemKv());
  const m = await Manager.init(
    store,
    { nodeId: 'n1', hostname: 'n1', advertiseAddr: '172.31.1.5', managerAddr: '172.31.1.5:2377', engineVersion: 'test', ca: await createRootCA() },
    createLogger(),
  );
  m.close();
  const o = new Orchestrator(m, createLogger());
  // No passes of its own: each test runs them where it says (o.reconcile), so every run is the same.
  o.close();
  return { m, store, o };
}

describe('global services', () => {
  it('one task per eligible node, placed on it from the start; drained nodes lose theirs, new nodes get one', async () => {
    const { m, store, o } = await managerOf();
    await store.tx(() => store.putNode(node('n2')));
    await store.tx(() => store.putNode(node('n3', { labels: { gpu: 'no' } })));
    const spec = parseServiceSpec({ Name: 'agent', Mode: { Global: {} }, TaskTemplate: { ContainerSpec: { Image: 'busybox:local' } } });
    assert.equal(spec.mode, 'global');
    assert.deepEqual(serviceSpecJson(spec).Mode, { Global: {} });
    const s = await o.createService(spec);
    await o.reconcile();
    const live = (): string[] =>
      o
        .listTasks({ serviceId: s.id })
        .filter((t) => t.desiredState === 'running')
        .map((t) => t.nodeId)
        .sort();
    assert.deepEqual(live(), ['n1', 'n2', 'n3']);
    for (const t of o.listTasks({ serviceId: s.id })) {
      assert.equal(t.slot, 0);
      assert.equal(t.state, 'assigned');
    }
    assert.equal(o.desiredTasks(s), 3);
    await m.updateNode('n2', undefined, { availability: 'drain' });
    await o.reconcile();
    assert.deepEqual(live(), ['n1', 'n3']);
    assert.equal(o.desiredTasks(s), 2);
    await store.tx(() => store.putNode(node('n4')));
    await o.reconcile();
    await o.reconcile();
    assert.deepEqual(live(), ['n1', 'n3', 'n4']);
    await assert.rejects(o.updateService(s.id, undefined, { ...spec, mode: 'replicated', replicas: 2 }), /service mode change is not allowed/);
    o.close();
  });
  it('a replicated task on a node being drained is moved: stopped there, then started elsewhere', async () => {
    const { m, store, o } = await managerOf();
    await store.tx(() => store.putNode(node('n2')));
    const s = await o.createService(
      parseServiceSpec({ Name: 'web', Mode: { Replicated: { Replicas: 1 } }, TaskTemplate: { ContainerSpec: { Image: 'busybox:local' } } }),
    );
    await o.reconcile();
    const [first] = o.listTasks({ serviceId: s.id });
    const other = first!.nodeId === 'n1' ? 'n2' : 'n1';
    await m.updateNode(first!.nodeId, undefined, { availability: 'drain' });
    await o.reconcile();
    assert.equal(o.listTasks({ serviceId: s.id }).find((t) => t.id === first!.id)!.desiredState, 'shutdown');
    await o.reportStatus(first!.nodeId, first!.id, { state: 'shutdown', message: 'stopped' });
    await o.reconcile();
    const live = o.listTasks({ serviceId: s.id }).filter((t) => t.desiredState === 'running');
    assert.deepEqual(
      live.map((t) => [t.slot, t.nodeId]),
      [[1, other]],
    );
    o.close();
  });
});

describe('jobs', () => {
  /** Nodes run what they are assigned: the task exits with `code` (0: complete). */
  const finish = async (o: Orchestrator, serviceId: string, code: (t: TaskRecord) => number = () => 0): Promise<void> => {
    for (const t of o.listTasks({ serviceId }))
      if (t.desiredState === 'running' && t.state === 'assigned') {
        await o.reportStatus(t.nodeId, t.id, { state: 'running', message: 'started' });
        const c = code(t);
        await o.reportStatus(t.nodeId, t.id, { state: c === 0 ? 'complete' : 'failed', message: 'finished', exitCode: c });
      } else if (t.desiredState !== 'running' && !['shutdown', 'failed', 'complete'].includes(t.state))
        await o.reportStatus(t.nodeId, t.id, { state: 'shutdown', message: '' });
    await o.reconcile();
  };

  it('replicated-job: TotalCompletions completions, at most MaxConcurrent at once, a completed task never started again; --force runs it again', async () => {
    const { store, o } = await managerOf();
    await store.tx(() => store.putNode(node('n2')));
    const body = {
      Name: 'batch',
      Mode: { ReplicatedJob: { MaxConcurrent: 2, TotalCompletions: 5 } },
      TaskTemplate: { ContainerSpec: { Image: 'busybox:local' } },
    };
    const spec = parseServiceSpec(body);
    assert.deepEqual([spec.mode, spec.replicas, spec.maxConcurrent, spec.restart.condition], ['replicated-job', 5, 2, 'on-failure']);
    assert.deepEqual(serviceSpecJson(spec).Mode, { ReplicatedJob: { MaxConcurrent: 2, TotalCompletions: 5 } });
    const s = await o.createService(spec);
    await o.reconcile();
    const current = () => o.listTasks({ serviceId: s.id }).filter((t) => t.specVersion === o.findService(s.id).specVersion);
    const active = () => current().filter((t) => t.desiredState === 'running' && !['complete', 'failed'].includes(t.state));
    assert.equal(active().length, 2, 'two at once');
    assert.equal(o.desiredTasks(s), 2);
    for (let i = 0; i < 5; i++) {
      assert.ok(active().length <= 2);
      await finish(o, s.id);
    }
    assert.equal(current().filter((t) => t.state === 'complete').length, 5);
    assert.deepEqual([...new Set(current().map((t) => t.slot))].sort(), [1, 2, 3, 4, 5]);
    await o.reconcile();
    await o.reconcile();
    assert.equal(current().length, 5, 'nothing started again once complete');
    const json = serviceJson(o.findService(s.id), () => 24, o.listTasks(), undefined, o.desiredTasks(s)) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    assert.deepEqual(json.ServiceStatus, { RunningTasks: 0, DesiredTasks: 2, CompletedTasks: 5 });
    assert.equal(json.JobStatus.JobIteration.Index, 1);
    const t0 = taskJson(
      current()[0]!,
      () => 'x',
      () => 24,
    ) as { DesiredState: string };
    assert.equal(t0.DesiredState, 'complete');
    // service update --force: a new iteration, run in full again
    const cur = o.findService(s.id);
    await o.updateService(s.id, undefined, { ...cur.spec, forceUpdate: 1 });
    await o.reconcile();
    assert.equal(o.findService(s.id).specVersion, 2);
    assert.equal(active().length, 2);
    assert.equal((serviceJson(o.findService(s.id), () => 24) as { JobStatus: { JobIteration: { Index: number } } }).JobStatus.JobIteration.Index, 2);
    o.close();
  });

  it('a failed job task is restarted by its policy, counting against MaxConcurrent; condition none leaves it failed', async () => {
    const { o } = await managerOf();
    const mk = (name: string, cond?: string) =>
      o.createService(
        parseServiceSpec({
          Name: name,
          Mode: { ReplicatedJob: { MaxConcurrent: 1, TotalCompletions: 2 } },
          TaskTemplate: { ContainerSpec: { Image: 'busybox:local' }, RestartPolicy: { Delay: 0, ...(cond ? { Condition: cond } : {}) } },
        }),
      );
    const s = await mk('retry');
    await o.reconcile();
    let n = 0;
    await finish(o, s.id, () => (n++ === 0 ? 1 : 0));
    const slot1 = o.listTasks({ serviceId: s.id }).filter((t) => t.slot === 1);
    assert.deepEqual(slot1.map((t) => t.state).sort(), ['assigned', 'failed'], 'restarted in the same slot, alone (MaxConcurrent 1)');
    await finish(o, s.id);
    await finish(o, s.id);
    assert.equal(o.listTasks({ serviceId: s.id }).filter((t) => t.state === 'complete').length, 2);
    const none = await mk('once', 'none');
    await o.reconcile();
    await finish(o, none.id, () => 1);
    await o.reconcile();
    assert.deepEqual(
      o.listTasks({ serviceId: none.id }).map((t) => t.state),
      ['failed'],
      'no restart, and no other slot while the failed one holds the only place',
    );
    o.close();
  });

  it('global-job: one completion on every eligible node, a node joining later runs it too', async () => {
    const { store, o } = await managerOf();
    await store.tx(() => store.putNode(node('n2')));
    const s = await o.createService(parseServiceSpec({ Name: 'prep', Mode: { GlobalJob: {} }, TaskTemplate: { ContainerSpec: { Image: 'busybox:local' } } }));
    assert.deepEqual(serviceSpecJson(o.findService(s.id).spec).Mode, { GlobalJob: {} });
    await o.reconcile();
    assert.equal(o.desiredTasks(s), 2);
    await finish(o, s.id);
    assert.equal(o.desiredTasks(s), 0);
    await store.tx(() => store.putNode(node('n3')));
    await o.reconcile();
    await finish(o, s.id);
    assert.deepEqual(
      o
        .listTasks({ serviceId: s.id })
        .map((t) => [t.nodeId, t.state])
        .sort(),
      [
        ['n1', 'complete'],
        ['n2', 'complete'],
        ['n3', 'complete'],
      ],
    );
    o.close();
  });
});

describe('rolling updates (UpdateConfig)', () => {
  async function setup(updateConfig: Record<string, unknown>, replicas: number) {
    const { store, o } = await managerOf();
    await store.tx(() => store.putNode(node('n2')));
    const body = (image: string) => ({
      Name: 'web',
      Mode: { Replicated: { Replicas: replicas } },
      UpdateConfig: updateConfig,
      TaskTemplate: { ContainerSpec: { Image: image } },
    });
    const s = await o.createService(parseServiceSpec(body('img:1')));
    /** Nodes do what they are told: assigned tasks run, tasks told to stop stop. */
    const nodesAct = async (fail = false): Promise<void> => {
      for (const t of o.listTasks({ serviceId: s.id })) {
        if (t.desiredState === 'running' && t.state === 'assigned')
          await o.reportStatus(t.nodeId, t.id, { state: fail && t.spec.image === 'img:2' ? 'failed' : 'running', message: '' });
        else if (t.desiredState !== 'running' && !['shutdown', 'failed', 'complete'].includes(t.state))
          await o.reportStatus(t.nodeId, t.id, { state: 'shutdown', message: '' });
      }
      await o.reconcile();
    };
    await o.reconcile();
    await nodesAct();
    const live = (image: string) => o.listTasks({ serviceId: s.id }).filter((t) => t.desiredState === 'running' && t.spec.image === image);
    const update = () => o.updateService(s.id, undefined, parseServiceSpec(body('img:2')));
    return { o, s, nodesAct, live, update, status: () => o.findService(s.id).updateStatus };
  }

  it('stop-first, parallelism 2: two slots at a time, never more than two replicas short, then completed', async () => {
    const x = await setup({ Parallelism: 2 }, 4);
    assert.equal(x.live('img:1').length, 4);
    await x.update();
    await x.o.reconcile();
    assert.equal(x.live('img:1').length, 2, 'two old tasks told to stop');
    for (let i = 0; i < 10 && x.live('img:2').filter((t) => t.state === 'running').length < 4; i++) {
      await x.nodesAct();
      assert.ok(x.live('img:1').length + x.live('img:2').length >= 2);
    }
    assert.equal(x.live('img:2').filter((t) => t.state === 'running').length, 4);
    await x.o.reconcile();
    assert.equal(x.status()?.state, 'completed');
    x.o.close();
  });

  it('start-first: the new task runs before the old one stops', async () => {
    const x = await setup({ Order: 'start-first' }, 1);
    await x.update();
    await x.o.reconcile();
    assert.equal(x.live('img:1').length, 1, 'the old task keeps running');
    assert.equal(x.live('img:2').length, 1, 'next to its replacement');
    await x.nodesAct(); // the new one runs...
    assert.equal(x.live('img:1').length, 0, '...then the old one is stopped');
    assert.equal(x.live('img:2')[0]!.state, 'running');
    x.o.close();
  });

  it('a failing new task pauses the update (FailureAction pause); continue goes on', async () => {
    const x = await setup({ Parallelism: 1 }, 3);
    await x.update();
    for (let i = 0; i < 6; i++) await x.nodesAct(true);
    assert.equal(x.status()?.state, 'paused');
    assert.match(x.status()!.message, /update paused due to failure or early termination of task/);
    assert.equal(x.live('img:1').length, 2, 'the other two slots keep the old spec');
    x.o.close();
    const y = await setup({ Parallelism: 1, FailureAction: 'continue' }, 3);
    await y.update();
    for (let i = 0; i < 12; i++) await y.nodesAct(true);
    assert.equal(y.live('img:1').length, 0, 'every slot was replaced');
    assert.notEqual(y.status()?.state, 'paused');
    y.o.close();
  });

  it('changing only the update policy or the replicas redeploys nothing', async () => {
    const x = await setup({ Parallelism: 1 }, 2);
    const before = x.o.findService(x.s.id).specVersion;
    const spec = parseServiceSpec({
      Name: 'web',
      Mode: { Replicated: { Replicas: 3 } },
      UpdateConfig: { Parallelism: 2, Order: 'start-first' },
      TaskTemplate: { ContainerSpec: { Image: 'img:1' } },
    });
    await x.o.updateService(x.s.id, undefined, spec);
    assert.equal(x.o.findService(x.s.id).specVersion, before);
    x.o.close();
  });

  it('rollback: by hand, and as the failure action of an update whose new tasks fail', async () => {
    const x = await setup({ Parallelism: 0 }, 2);
    await x.update();
    for (let i = 0; i < 6; i++) await x.nodesAct();
    assert.equal(x.live('img:2').filter((t) => t.state === 'running').length, 2);
    await x.o.rollbackService(x.s.id, undefined);
    for (let i = 0; i < 8; i++) await x.nodesAct();
    assert.equal(x.live('img:1').filter((t) => t.state === 'running').length, 2);
    assert.equal(x.status()?.state, 'rollback_completed');
    await assert.rejects(x.o.rollbackService(x.s.id, 1), /update out of sequence/);
    x.o.close();

    const y = await setup({ Parallelism: 1, FailureAction: 'rollback' }, 2);
    await y.update();
    for (let i = 0; i < 10; i++) await y.nodesAct(true);
    assert.equal(y.live('img:1').filter((t) => t.state === 'running').length, 2, 'back on the old image');
    assert.equal(y.live('img:2').length, 0);
    assert.equal(y.status()?.state, 'rollback_completed');
    assert.equal(y.o.findService(y.s.id).spec.image, 'img:1');
    y.o.close();
  });

  it('refuses what it cannot do: an unknown failure action, an unknown order, negative parallelism', () => {
    const spec = (uc: Record<string, unknown>) => () => parseServiceSpec({ Name: 'x', UpdateConfig: uc, TaskTemplate: { ContainerSpec: { Image: 'i' } } });
    assert.throws(spec({ FailureAction: 'bogus' }), /pause, continue or rollback/);
    assert.throws(spec({ Order: 'sideways' }), /stop-first or start-first/);
    assert.throws(spec({ Parallelism: -1 }), /must not be negative/);
  });
});

describe("a node's whole state when its session starts", () => {
  const spec = (name: string, replicas: number, networks: string[] = []) =>
    parseServiceSpec({
      Name: name,
      Mode: { Replicated: { Replicas: replicas } },
      TaskTemplate: { ContainerSpec: { Image: 'busybox:local' }, Networks: networks.map((Target) => ({ Target })) },
    });
  const none = { tasks: [], starting: [], attachments: [] };

  it('finishes every task its node no longer has and gives their addresses back; leaves newer and merely assigned ones', async () => {
    const { m, store, o } = await managerOf();
    await m.createNetwork({ name: 'uber-net' });
    await store.tx(() => store.putNode(node('n2')));
    const s = await o.createService(spec('web', 4, ['uber-net']));
    await o.reconcile();
    const mine = (): ReturnType<typeof o.listTasks> => o.listTasks({ serviceId: s.id }).filter((t) => t.nodeId === 'n2');
    const [a, b] = mine();
    assert.ok(a && b, 'two tasks on n2');
    await o.reportStatus('n2', a.id, { state: 'running', message: 'started' });
    // scaled down while n2 was gone: b is told to stop, but n2 never heard
    await o.reportStatus('n2', b.id, { state: 'running', message: 'started' });
    await o.updateService(s.id, undefined, { ...s.spec, replicas: 4 });
    const bRec = store.getTask(b.id)!;
    bRec.desiredState = 'shutdown';
    await store.tx(() => store.putTask(bRec));
    const ipsBefore = store.countIps(m.findNetwork('uber-net').id);
    await new Promise((r) => setTimeout(r, 5));
    const r = await o.nodeReport('n2', none, Date.now());
    assert.deepEqual(r, { finished: 2, released: 0 });
    assert.equal(store.getTask(a.id)!.state, 'failed');
    assert.match(store.getTask(a.id)!.err, /task lost/);
    assert.equal(store.getTask(b.id)!.state, 'shutdown');
    await o.reconcile();
    assert.equal(store.getTask(a.id)!.networks.length, 0, 'addresses released');
    assert.ok(store.countIps(m.findNetwork('uber-net').id) < ipsBefore + 1);
    // a task that changed after the session began, or one still only assigned, stays
    const fresh = o.listTasks({ serviceId: s.id }).filter((t) => t.nodeId === 'n2' && t.state === 'assigned');
    assert.ok(fresh.length > 0);
    assert.deepEqual(await o.nodeReport('n2', none, 0), { finished: 0, released: 0 });
    for (const t of fresh) assert.equal(store.getTask(t.id)!.state, 'assigned');
    o.close();
  });

  it('a task withdrawn before its node heard of it is finished by the manager after a grace', async () => {
    const { store, o } = await managerOf();
    await store.tx(() => store.putNode(node('n2')));
    const s = await o.createService(spec('brief', 2));
    await o.reconcile();
    await o.removeService(s.id);
    await o.reconcile();
    assert.equal(o.listTasks({ serviceId: s.id }).length, 2, 'within the grace its node may still report');
    // The nodes never said a word: 'assigned' long enough ago.
    await store.tx(() => {
      for (const t of store.listTasks({ serviceId: s.id })) store.putTask({ ...t, timestamp: new Date(Date.now() - 6000).toISOString() });
    });
    await o.reconcile();
    assert.deepEqual(o.listTasks({ serviceId: s.id }), [], 'finished and gone');
    o.close();
  });

  it('a container that exited while its daemon was down reports its exit', async () => {
    const { store, o } = await managerOf();
    await store.tx(() => store.putNode(node('n2')));
    const s = await o.createService(spec('job', 1));
    await o.reconcile();
    const [t] = o.listTasks({ serviceId: s.id });
    await o.reportStatus(t!.nodeId, t!.id, { state: 'running', message: 'started' });
    await new Promise((r) => setTimeout(r, 5));
    await o.nodeReport(t!.nodeId, { tasks: [{ id: t!.id, status: 'exited', exitCode: 3, containerId: 'c1' }], starting: [], attachments: [] }, Date.now());
    assert.equal(store.getTask(t!.id)!.state, 'failed');
    assert.equal(store.getTask(t!.id)!.exitCode, 3);
    o.close();
  });

  it('node-local endpoints: only on attachable networks, bounded per node, released when the node no longer has them, and only by it', async () => {
    const { m, store } = await managerOf();
    await store.tx(() => store.putNode(node('n2')));
    await m.createNetwork({ name: 'plain' });
    await m.createNetwork({ name: 'att', attachable: true, subnets: [{ subnet: '10.50.0.0/24' }] });
    await assert.rejects(m.attachLocal('plain', 'n2', 'e'), /not manually attachable/);
    const held = [];
    for (let i = 0; i < MAX_LOCAL_ATTACHMENTS; i++) held.push((await m.attachLocal('att', 'n2', `e${i}`)).attachment);
    await assert.rejects(m.attachLocal('att', 'n2', 'one-more'), /limit per node is 64/);
    // the manager's own node can still allocate on the network
    assert.ok((await m.attachLocal('att', 'n1', 'mine')).attachment.ip);
    await assert.rejects(m.detach(held[0]!.id, 'n1'), /not one of this node's own/);
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(await m.releaseLostAttachments('n2', [held[0]!.id], Date.now()), MAX_LOCAL_ATTACHMENTS - 1);
    assert.deepEqual(
      m.listAttachments({ nodeId: 'n2' }).map((a) => a.id),
      [held[0]!.id],
    );
    // what was made after the session began is newer than the report: kept
    const late = (await m.attachLocal('att', 'n2', 'late')).attachment;
    assert.equal(await m.releaseLostAttachments('n2', [], Date.parse(late.createdAt) - 1), 1);
    assert.ok(m.listAttachments({ nodeId: 'n2' }).some((a) => a.id === late.id));
  });

  it('a node making an endpoint as its session starts keeps every address: the one not yet listed is not released', async () => {
    const { m, store, o } = await managerOf();
    await store.tx(() => store.putNode(node('n2')));
    await m.createNetwork({ name: 'att', attachable: true, subnets: [{ subnet: '10.51.0.0/24' }] });
    const inFlight = (await m.attachLocal('att', 'n2', 'in-flight')).attachment;
    await new Promise((r) => setTimeout(r, 5));
    const since = Date.now();
    assert.deepEqual(await o.nodeReport('n2', { tasks: [], starting: [], attachments: [], creating: 1 }, since), { finished: 0, released: 0 });
    assert.ok(m.listAttachments({ nodeId: 'n2' }).some((a) => a.id === inFlight.id));
    assert.equal((await o.nodeReport('n2', { tasks: [], starting: [], attachments: [] }, since)).released, 1, 'lost for real: released next time');
    store.close();
  });
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>;

describe('no service field accepted and dropped', () => {
  const base = (): Json => ({
    // what `docker service create --name test --network uber-net --replicas 2 ubuntu sleep infinity` sends
    Name: 'test',
    Labels: {},
    TaskTemplate: {
      ContainerSpec: { Image: 'ubuntu:latest', Args: ['sleep', 'infinity'], Init: false, DNSConfig: {} },
      Resources: { Limits: {}, Reservations: {} },
      Placement: { Platforms: [{ Architecture: 'amd64', OS: 'linux' }] },
      Networks: [{ Target: 'zw4xlzuogvma0np7tdfj8ixtu' }],
      ForceUpdate: 0,
    },
    Mode: { Replicated: { Replicas: 2 } },
    EndpointSpec: { Mode: 'vip' },
  });
  it('takes what the docker CLI sends, and our own inspect output back (service update)', () => {
    const s = parseServiceSpec(base());
    assert.equal(s.replicas, 2);
    assert.deepEqual(parseServiceSpec(serviceSpecJson(s)), s);
  });
  it('refuses each field it would ignore, naming it', () => {
    const cases: Array<[string, (b: Json) => void, RegExp]> = [
      [
        '--mount bind-propagation=shared',
        (b) => (b.TaskTemplate.ContainerSpec.Mounts = [{ Type: 'bind', Source: '/x', Target: '/y', BindOptions: { Propagation: 'shared' } }]),
        /TaskTemplate\.ContainerSpec\.Mounts\[0\]\.BindOptions\.Propagation is not supported yet/,
      ],
      ['--mount type=npipe', (b) => (b.TaskTemplate.ContainerSpec.Mounts = [{ Type: 'npipe', Source: 'x', Target: '/y' }]), /mount type unknown: npipe/],
      ['--mount relative bind', (b) => (b.TaskTemplate.ContainerSpec.Mounts = [{ Type: 'bind', Source: 'x', Target: '/y' }]), /mount path must be absolute/],
      [
        '--mount twice at one target',
        (b) =>
          (b.TaskTemplate.ContainerSpec.Mounts = [
            { Type: 'tmpfs', Target: '/y' },
            { Type: 'volume', Source: 'data', Target: '/y' },
          ]),
        /duplicate mount point: \/y/,
      ],
      ['--mount tmpfs with a source', (b) => (b.TaskTemplate.ContainerSpec.Mounts = [{ Type: 'tmpfs', Source: 'x', Target: '/y' }]), /must not be specified/],
      ['--limit-cpu 0.001', (b) => (b.TaskTemplate.Resources.Limits.NanoCPUs = 1e6), /the smallest CPU limit is 0\.01 CPU/],
      [
        'generic resources',
        (b) => (b.TaskTemplate.Resources.Reservations = { GenericResources: [{ DiscreteResourceSpec: { Kind: 'gpu', Value: 1 } }] }),
        /Resources\.Reservations\.GenericResources/,
      ],
      ['--placement-pref other', (b) => (b.TaskTemplate.Placement.Preferences = [{ Binpack: { On: 'memory' } }]), /Placement\.Preferences\[0\]\.Binpack/],
      ['two modes', (b) => (b.Mode = { Replicated: { Replicas: 1 }, ReplicatedJob: {} }), /a service has one mode, not Replicated and ReplicatedJob/],
      ['a job field', (b) => (b.Mode = { ReplicatedJob: { Deadline: 5 } }), /Mode\.ReplicatedJob\.Deadline is not supported yet/],
      [
        '--publish 8080:80/sctp',
        (b) => (b.EndpointSpec.Ports = [{ Protocol: 'sctp', TargetPort: 80, PublishedPort: 8080 }]),
        /sctp ports are not supported yet/,
      ],
      ['--publish 70000:80', (b) => (b.EndpointSpec.Ports = [{ Protocol: 'tcp', TargetPort: 80, PublishedPort: 70000 }]), /invalid published port 70000/],
      ['--publish 8080:0', (b) => (b.EndpointSpec.Ports = [{ Protocol: 'tcp', TargetPort: 0, PublishedPort: 8080 }]), /invalid target port 0/],
      ['--publish mode=bogus', (b) => (b.EndpointSpec.Ports = [{ TargetPort: 80, PublishMode: 'bogus' }]), /invalid publish mode "bogus"/],
      ['--endpoint-mode bogus', (b) => (b.EndpointSpec.Mode = 'bogus'), /invalid endpoint mode "bogus": vip or dnsrr/],
      ['--secret', (b) => (b.TaskTemplate.ContainerSpec.Secrets = [{ SecretName: 's' }]), /ContainerSpec\.Secrets/],
      ['--log-driver', (b) => (b.TaskTemplate.LogDriver = { Name: 'syslog' }), /TaskTemplate\.LogDriver/],
      ['--rollback-parallelism', (b) => (b.RollbackConfig = { Parallelism: 3 }), /RollbackConfig\.Parallelism is not supported yet/],
      ['--update-monitor', (b) => (b.UpdateConfig = { Monitor: 1e9 }), /UpdateConfig\.Monitor/],
      ['another platform', (b) => (b.TaskTemplate.Placement.Platforms = [{ Architecture: 'arm64', OS: 'linux' }]), /no node of this swarm runs linux\/arm64/],
      ['network driver options', (b) => (b.TaskTemplate.Networks[0].DriverOpts = { a: 'b' }), /Networks\[0\]\.DriverOpts/],
    ];
    for (const [what, change, re] of cases) {
      const b = base();
      change(b);
      assert.throws(() => parseServiceSpec(b), re, what);
    }
  });
  it('service update --force redeploys: ForceUpdate is kept and shown', () => {
    const b = base();
    b.TaskTemplate.ForceUpdate = 1;
    const s = parseServiceSpec(b);
    assert.equal(s.forceUpdate, 1);
    assert.equal((serviceSpecJson(s).TaskTemplate as Record<string, unknown>).ForceUpdate, 1);
  });
});

describe('published ports (EndpointSpec.Ports)', () => {
  const json = (name: string, ports: Json[], extra: Json = {}): Json => ({
    Name: name,
    TaskTemplate: { ContainerSpec: { Image: 'busybox:local' } },
    Mode: { Replicated: { Replicas: 2 } },
    EndpointSpec: { Ports: ports },
    ...extra,
  });
  const p = (published: number, target = 80, o: Json = {}): Json => ({ Protocol: 'tcp', TargetPort: target, PublishedPort: published, ...o });

  it('stores and shows them; a port left out is assigned from 30000 and kept across updates; tasks join ingress first', async () => {
    const { m, store, o } = await managerOf();
    const net = await m.createNetwork({ name: 'net-a', subnets: [{ subnet: '10.60.0.0/24' }] });
    const ingress = m.listNetworks().find((n) => n.ingress)!;
    const s = await o.createService(
      parseServiceSpec({
        ...json('web', [p(8080), p(0, 81, { Protocol: 'udp' })]),
        TaskTemplate: { ContainerSpec: { Image: 'busybox:local' }, Networks: [{ Target: 'net-a' }] },
      }),
    );
    assert.deepEqual(
      s.ports?.map((x) => `${x.publishMode}:${x.publishedPort}->${x.targetPort}/${x.protocol}`),
      ['ingress:8080->80/tcp', 'ingress:30000->81/udp'],
    );
    const shown = serviceJson(o.findService('web'), () => 24) as Json;
    assert.deepEqual(shown.Endpoint.Ports, [
      { Protocol: 'tcp', TargetPort: 80, PublishedPort: 8080, PublishMode: 'ingress' },
      { Protocol: 'udp', TargetPort: 81, PublishedPort: 30000, PublishMode: 'ingress' },
    ]);
    // The spec says what was asked: no number for the assigned one (as Docker's).
    assert.deepEqual(shown.Spec.EndpointSpec.Ports[1], { Protocol: 'udp', TargetPort: 81, PublishMode: 'ingress' });
    assert.deepEqual(parseServiceSpec(shown.Spec), o.findService('web').spec, 'the inspect output goes back in unchanged');
    await o.reconcile();
    for (const t of o.listTasks({ serviceId: s.id }))
      assert.deepEqual(
        t.networks.map((n) => n.networkId),
        [ingress.id, net.id],
      );
    // Every node has its ingress sandbox's address.
    assert.deepEqual(
      m
        .listAttachments({ networkId: ingress.id })
        .filter((a) => a.name === 'ingress-sbox')
        .map((a) => a.nodeId),
      ['n1'],
    );
    // Numbers are per protocol; an update keeps the assigned port.
    const s2 = await o.createService(parseServiceSpec(json('api', [p(0), p(0, 81)])));
    assert.deepEqual(
      s2.ports?.map((x) => x.publishedPort),
      [30000, 30001],
    );
    await o.updateService('web', o.findService('web').version, parseServiceSpec({ ...shown.Spec, Labels: { a: 'b' } }));
    assert.equal(o.findService('web').ports?.[1]?.publishedPort, 30000);
    // --publish-rm: the port is free again, and the tasks are redeployed (they leave ingress).
    const version = o.findService('web').specVersion;
    await o.updateService('web', o.findService('web').version, parseServiceSpec({ ...shown.Spec, EndpointSpec: { Ports: [p(8080)] } }));
    assert.deepEqual(
      o.findService('web').ports?.map((x) => x.publishedPort),
      [8080],
    );
    assert.equal(o.findService('web').specVersion, version + 1, 'a port change redeploys, as Docker does');
    const again = await o.createService(parseServiceSpec(json('udp30000', [p(30000, 80, { Protocol: 'udp' })])));
    assert.equal(again.ports?.[0]?.publishedPort, 30000);
    store.close();
  });

  it('refuses a port another service holds (naming it), one listed twice, dnsrr with ingress, host mode without a number; nothing changes', async () => {
    const { store, o } = await managerOf();
    const web = await o.createService(parseServiceSpec(json('web', [p(8080)])));
    const hostSvc = await o.createService(parseServiceSpec(json('hosted', [p(8081, 80, { PublishMode: 'host' })])));
    const cases: Array<[Json, RegExp]> = [
      [json('x', [p(8080)]), /port '8080' is already in use by service 'web' \([a-z0-9]+\) as an ingress port/],
      [json('x', [p(8081)]), /port '8081' is already in use by service 'hosted' .* as a host-mode port/],
      [json('x', [p(8080, 80, { PublishMode: 'host' })]), /already in use by service 'web'/],
      [json('x', [p(9000), p(9000, 81)]), /published port tcp\/9000 is listed twice/],
      [json('x', [p(9000)], { EndpointSpec: { Mode: 'dnsrr', Ports: [p(9000)] } }), /ingress mode can't be used with dnsrr mode/],
      [json('x', [p(0, 80, { PublishMode: 'host' })]), /a host-mode port needs a published port/],
    ];
    for (const [spec, re] of cases) await assert.rejects(o.createService(parseServiceSpec(spec)), re);
    assert.deepEqual(
      o
        .listServices()
        .map((s) => s.spec.name)
        .sort(),
      ['hosted', 'web'],
    );
    // An update taking another's port fails and leaves the service as it was.
    await assert.rejects(o.updateService('hosted', hostSvc.version, parseServiceSpec(json('hosted', [p(8080)]))), /in use by service 'web'/);
    assert.deepEqual(o.findService('hosted').ports, hostSvc.ports);
    assert.equal(o.findService('hosted').version, hostSvc.version);
    // Two host-mode services may share a number: the scheduler keeps them apart.
    await o.createService(parseServiceSpec(json('hosted2', [p(8081, 80, { PublishMode: 'host' })])));
    assert.ok(web.ports);
    store.close();
  });

  it("--reserve-cpu and --reserve-memory: kept and shown; a node's reserved total never passes what it has; the rest wait and say why", async () => {
    const { store, o } = await managerOf();
    const res = { nanoCpus: 2e9, memoryBytes: 4 * 2 ** 30 };
    await store.tx(() => {
      store.putNode(node('n2', { resources: res }));
      store.putNode({ ...store.getNode('n1')!, resources: res });
    });
    const spec = parseServiceSpec({
      Name: 'big',
      TaskTemplate: { ContainerSpec: { Image: 'busybox:local' }, Resources: { Reservations: { NanoCPUs: 15e8, MemoryBytes: 1 << 30 } } },
      Mode: { Replicated: { Replicas: 3 } },
    });
    assert.deepEqual(spec.reservations, { nanoCpus: 15e8, memoryBytes: 1 << 30 });
    assert.deepEqual((serviceSpecJson(spec).TaskTemplate as Json).Resources.Reservations, { NanoCPUs: 15e8, MemoryBytes: 1 << 30 });
    assert.deepEqual(parseServiceSpec(serviceSpecJson(spec)), spec);
    const s = await o.createService(spec);
    await o.reconcile();
    const tasks = o.listTasks({ serviceId: s.id });
    assert.deepEqual(
      tasks
        .filter((t) => t.nodeId)
        .map((t) => t.nodeId)
        .sort(),
      ['n1', 'n2'],
      '1.5 CPUs each: one task per 2-CPU node',
    );
    assert.match(tasks.find((t) => !t.nodeId)!.err, /no suitable node \(insufficient resources on 2 nodes\)/);
    // A small one still fits beside them; memory counts too.
    const small = await o.createService(
      parseServiceSpec({ Name: 'small', TaskTemplate: { ContainerSpec: { Image: 'busybox:local' }, Resources: { Reservations: { NanoCPUs: 5e8 } } } }),
    );
    const mem = await o.createService(
      parseServiceSpec({ Name: 'mem', TaskTemplate: { ContainerSpec: { Image: 'busybox:local' }, Resources: { Reservations: { MemoryBytes: 4 * 2 ** 30 } } } }),
    );
    await o.reconcile();
    assert.ok(o.listTasks({ serviceId: small.id })[0]!.nodeId, 'half a CPU is still free on a node');
    assert.match(o.listTasks({ serviceId: mem.id })[0]!.err, /insufficient resources on 2 nodes/);
    store.close();
  });

  it('--limit-cpu and --replicas-max-per-node: kept and shown; no node gets more than its share, the rest wait and say why', async () => {
    const { store, o } = await managerOf();
    await store.tx(() => store.putNode(node('n2')));
    const spec = parseServiceSpec({
      Name: 'capped',
      TaskTemplate: { ContainerSpec: { Image: 'busybox:local' }, Resources: { Limits: { NanoCPUs: 5e8 } }, Placement: { MaxReplicas: 1 } },
      Mode: { Replicated: { Replicas: 3 } },
    });
    assert.deepEqual(parseServiceSpec(serviceSpecJson(spec)), spec);
    assert.equal((serviceSpecJson(spec).TaskTemplate as Json).Resources.Limits.NanoCPUs, 5e8);
    const s = await o.createService(spec);
    await o.reconcile();
    const tasks = o.listTasks({ serviceId: s.id });
    assert.deepEqual(
      tasks
        .filter((t) => t.nodeId)
        .map((t) => t.nodeId)
        .sort(),
      ['n1', 'n2'],
    );
    assert.match(tasks.find((t) => !t.nodeId)!.err, /no suitable node \(max replicas per node limit exceed\)/);
    store.close();
  });

  it('--placement-pref spread=node.labels.zone: the values share the tasks evenly, whatever the nodes per value', async () => {
    const { store, o } = await managerOf();
    await store.tx(() => {
      store.putNode({ ...store.getNode('n1')!, labels: { zone: 'a' } });
      store.putNode(node('n2', { labels: { zone: 'a' } }));
      store.putNode(node('n3', { labels: { zone: 'b' } }));
    });
    const json = {
      Name: 'spread',
      TaskTemplate: { ContainerSpec: { Image: 'busybox:local' }, Placement: { Preferences: [{ Spread: { SpreadDescriptor: 'node.labels.zone' } }] } },
      Mode: { Replicated: { Replicas: 4 } },
    };
    const spec = parseServiceSpec(json);
    assert.deepEqual(spec.spread, ['node.labels.zone']);
    assert.deepEqual((serviceSpecJson(spec).TaskTemplate as Json).Placement, json.TaskTemplate.Placement);
    const s = await o.createService(spec);
    await o.reconcile();
    const on = o.listTasks({ serviceId: s.id }).map((t) => t.nodeId);
    assert.equal(on.filter((n) => n === 'n3').length, 2, `zone b holds half: ${on.join(',')}`);
    assert.equal(on.filter((n) => n === 'n1' || n === 'n2').length, 2);
    // Without the preference the same nodes spread by node: zone a would get three.
    const plain = await o.createService(parseServiceSpec({ ...json, Name: 'plain', TaskTemplate: { ContainerSpec: { Image: 'busybox:local' } } }));
    await o.reconcile();
    assert.equal(o.listTasks({ serviceId: plain.id }).filter((t) => t.nodeId === 'n3').length, 1);
    await assert.rejects(
      o.createService(
        parseServiceSpec({
          ...json,
          Name: 'bad',
          TaskTemplate: { ...json.TaskTemplate, Placement: { Preferences: [{ Spread: { SpreadDescriptor: 'zone' } }] } },
        }),
      ),
      /invalid spread descriptor "zone"/,
    );
    store.close();
  });

  it('host mode: never two tasks needing one host port on a node; the one left pending says why', async () => {
    const { store, o } = await managerOf();
    await store.tx(() => store.putNode(node('n2')));
    const s = await o.createService(parseServiceSpec(json('hosted', [p(8081, 80, { PublishMode: 'host' })], { Mode: { Replicated: { Replicas: 3 } } })));
    await o.reconcile();
    const tasks = o.listTasks({ serviceId: s.id });
    const placed = tasks
      .filter((t) => t.nodeId)
      .map((t) => t.nodeId)
      .sort();
    assert.deepEqual(placed, ['n1', 'n2']);
    const pending = tasks.find((t) => !t.nodeId)!;
    assert.equal(pending.state, 'pending');
    assert.match(pending.err, /no suitable node \(host-mode port already in use on 2 nodes\)/);
    // Docker shows a host-mode port on its task.
    const running = tasks.find((t) => t.nodeId)!;
    assert.deepEqual(
      (
        taskJson(
          running,
          () => 'x',
          () => 24,
        ) as Json
      ).Status.PortStatus,
      {
        Ports: [{ Protocol: 'tcp', TargetPort: 80, PublishedPort: 8081, PublishMode: 'host' }],
      },
    );
    assert.ok(!running.networks.length, 'a host-mode port puts no task on ingress');
    store.close();
  });
});

describe('service virtual IPs', () => {
  it('vip mode: one address per network from its IPAM, none in dnsrr; switching and removal take and free them; redeploys nothing', async () => {
    const { m, store, o } = await managerOf();
    const a = await m.createNetwork({ name: 'net-a', subnets: [{ subnet: '10.60.0.0/24' }] });
    const b = await m.createNetwork({ name: 'net-b', subnets: [{ subnet: '10.61.0.0/24' }] });
    const json = (extra: Json = {}): Json => ({
      Name: 'web',
      TaskTemplate: { ContainerSpec: { Image: 'busybox:local' }, Networks: [{ Target: 'net-a' }, { Target: 'net-b' }] },
      Mode: { Replicated: { Replicas: 2 } },
      ...extra,
    });
    const s = await o.createService(parseServiceSpec(json()));
    assert.deepEqual(
      s.vips?.map((v) => [v.networkId, v.ip]),
      [
        [a.id, '10.60.0.2'],
        [b.id, '10.61.0.2'],
      ],
    );
    assert.equal(store.countIps(a.id), 1);
    // Tasks get other addresses than the VIP.
    await o.reconcile();
    const taskIps = o.listTasks({ serviceId: s.id }).flatMap((t) => t.networks.map((n) => n.ip));
    assert.equal(taskIps.length, 4);
    assert.ok(!taskIps.includes('10.60.0.2') && !taskIps.includes('10.61.0.2'));
    const shown = serviceJson(o.findService('web'), () => 24) as Json;
    assert.deepEqual(shown.Endpoint, {
      Spec: { Mode: 'vip' },
      VirtualIPs: [
        { NetworkID: a.id, Addr: '10.60.0.2/24' },
        { NetworkID: b.id, Addr: '10.61.0.2/24' },
      ],
    });
    const before = o.listTasks({ serviceId: s.id }).map((t) => t.id);
    // dnsrr: the VIPs go back to the networks, no task is replaced.
    const cur = o.findService('web');
    await o.updateService('web', cur.version, parseServiceSpec(json({ EndpointSpec: { Mode: 'dnsrr' } })));
    assert.equal(o.findService('web').vips, undefined);
    assert.equal(store.ipTaken(a.id, parseIp('10.60.0.2')), false);
    assert.deepEqual((serviceJson(o.findService('web'), () => 24) as Json).Endpoint, { Spec: { Mode: 'dnsrr' } });
    await o.reconcile();
    assert.deepEqual(
      o.listTasks({ serviceId: s.id }).map((t) => t.id),
      before,
      'an endpoint mode change redeploys nothing',
    );
    // Back to vip, and off one network: one VIP, on the network it stays on.
    await o.updateService(
      'web',
      o.findService('web').version,
      parseServiceSpec({ ...json(), TaskTemplate: { ...json().TaskTemplate, Networks: [{ Target: 'net-b' }] } }),
    );
    assert.deepEqual(
      o.findService('web').vips?.map((v) => v.networkId),
      [b.id],
    );
    await o.removeService('web');
    assert.equal(
      store.countIps(b.id) - o.listTasks().filter((t) => t.networks.some((n) => n.networkId === b.id)).length,
      0,
      'the VIP went back with the service',
    );
    store.close();
  });

  it('a service made without VIPs gets them from the next pass; a full network refuses a new vip service and changes nothing', async () => {
    const { m, store, o } = await managerOf();
    await m.createNetwork({ name: 'tiny', subnets: [{ subnet: '10.62.0.0/30' }] });
    const spec = parseServiceSpec({
      Name: 'old',
      TaskTemplate: { ContainerSpec: { Image: 'busybox:local' }, Networks: [{ Target: 'tiny' }] },
      Mode: { Replicated: { Replicas: 0 } },
    });
    const s = await o.createService(spec);
    assert.equal(s.vips?.length, 1);
    // As a record from before VIPs existed:
    await store.tx(() => {
      const x = store.getService(s.id)!;
      store.releaseIp(x.vips![0]!.networkId, parseIp(x.vips![0]!.ip));
      delete x.vips;
      store.putService(x);
    });
    await o.reconcile();
    assert.equal(o.findService('old').vips?.length, 1);
    // A /30 has one address besides its gateway, and the first service holds it: a second is refused.
    await assert.rejects(o.createService({ ...spec, name: 'second' }), /could not find an available IP address on network tiny/);
    assert.deepEqual(
      o.listServices().map((x) => x.spec.name),
      ['old'],
    );
    assert.equal(store.countIps(o.findService('old').vips![0]!.networkId), 1);
    store.close();
  });
});

describe('bad input changes nothing', () => {
  it('docker stack rm: a network whose only users are tasks of removed services goes once they have stopped', async () => {
    const { m, store, o } = await managerOf();
    const net = await m.createNetwork({ name: 'shop_default' });
    await o.createService(
      parseServiceSpec({
        Name: 'shop_web',
        Mode: { Replicated: { Replicas: 2 } },
        TaskTemplate: { ContainerSpec: { Image: 'busybox:local' }, Networks: [{ Target: 'shop_default' }] },
      }),
    );
    await o.reconcile();
    // A running task of a live service keeps it.
    await assert.rejects(m.removeNetwork('shop_default'), /in use by service shop_web/);
    await o.removeService('shop_web');
    await m.removeNetwork('shop_default');
    assert.throws(() => m.findNetwork('shop_default'), /not found/, 'gone for users at once');
    assert.ok(!m.listNetworks().some((n) => n.id === net.id));
    await assert.rejects(m.createNetwork({ name: 'shop_default' }), /still being removed/);
    assert.ok(store.getNetwork(net.id), 'kept while its tasks stop');
    // The node reports the tasks stopped: their addresses go back, and the network with them.
    for (const t of o.listTasks()) await o.reportStatus('n1', t.id, { state: 'shutdown', message: 'stopped' });
    await o.reconcile();
    await o.reconcile();
    assert.equal(store.getNetwork(net.id), undefined);
    await m.createNetwork({ name: 'shop_default' });
    store.close();
  });

  it('a network a service names cannot be removed, even with no task on it; predefined names are refused', async () => {
    const { m, o } = await managerOf();
    await m.createNetwork({ name: 'used-net' });
    await o.createService(
      parseServiceSpec({
        Name: 'idle',
        Mode: { Replicated: { Replicas: 0 } },
        TaskTemplate: { ContainerSpec: { Image: 'busybox:local' }, Networks: [{ Target: 'used-net' }] },
      }),
    );
    await assert.rejects(m.removeNetwork('used-net'), /network used-net is in use by service idle/);
    assert.ok(m.findNetwork('used-net'));
    for (const name of ['host', 'bridge', 'none']) await assert.rejects(m.createNetwork({ name }), /is a pre-defined network and cannot be created/);
    // Encrypted is kept as Docker keeps it; not on ingress, and no subnet in the tunnels' range.
    assert.equal((await m.createNetwork({ name: 'sec', options: { encrypted: '' } })).options.encrypted, '');
    await assert.rejects(m.createNetwork({ name: 'sec-in', ingress: true, options: { encrypted: '' } }), /encrypted ingress network is not supported/);
    await assert.rejects(m.createNetwork({ name: 'tun', subnets: [{ subnet: '198.19.0.0/24' }] }), /WireGuard tunnel range, reserved/);
    for (const name of ['sec-in', 'tun']) assert.throws(() => m.findNetwork(name), /not found/);
    // Nor is the range handed out from a pool that holds it.
    await assert.rejects(m.createNetwork({ name: 'tun2', subnets: [{ subnet: '198.16.0.0/13' }] }), /WireGuard tunnel range/);
    o.close();
  });
});

describe('configs', () => {
  it('kept, found by ID, name or prefix, resolved for a service (targets, modes), refused while in use; only labels change', async () => {
    const { m, o } = await managerOf();
    const data = Buffer.from('key = value\n').toString('base64');
    const c = await m.createConfig({ name: 'app.conf', labels: { a: '1' }, data });
    assert.equal(m.findConfig('app.conf').id, c.id);
    assert.equal(m.findConfig(c.id.slice(0, 6)).name, 'app.conf');
    for (const [req, why] of [
      [{ name: 'app.conf', labels: {}, data }, /already exists/],
      [{ name: 'bad name', labels: {}, data }, /invalid config name/],
      [{ name: 'e', labels: {}, data: '' }, /larger than 0/],
      [{ name: 'big', labels: {}, data: Buffer.alloc(1000 * 1024).toString('base64') }, /less than 1000KB/],
      [{ name: 'nb64', labels: {}, data: 'not base64!' }, /base64/],
    ] as const)
      await assert.rejects(m.createConfig(req), why);
    assert.equal(m.listConfigs().length, 1, 'nothing else was made');
    const spec = (configs: unknown[]): ReturnType<typeof parseServiceSpec> =>
      parseServiceSpec({ Name: 'web', TaskTemplate: { ContainerSpec: { Image: 'busybox:local', Configs: configs } } });
    const s = await o.createService(
      spec([
        { File: { Name: 'etc/app.conf', UID: '0', GID: '0', Mode: 0o440 }, ConfigName: 'app.conf' },
        { File: { Name: '', UID: '', GID: '', Mode: 0o444 }, ConfigID: c.id, ConfigName: 'app.conf' },
      ]),
    );
    assert.deepEqual(
      s.spec.configs!.map((r) => [r.configId, r.target, r.mode]),
      [
        [c.id, '/etc/app.conf', 0o440],
        [c.id, '/app.conf', 0o444],
      ],
    );
    await assert.rejects(o.createService({ ...spec([{ File: { Name: '/x' }, ConfigName: 'nosuch' }]), name: 'other' }), /config not found: nosuch/);
    await assert.rejects(
      o.createService({
        ...spec([
          { File: { Name: '/x' }, ConfigName: 'app.conf' },
          { File: { Name: '/x' }, ConfigName: 'app.conf' },
        ]),
        name: 'twice',
      }),
      /config target \/x is used twice/,
    );
    assert.throws(() => spec([{ Runtime: {}, ConfigName: 'app.conf' }]), /only a File target is supported/);
    await assert.rejects(m.removeConfig('app.conf'), /config 'app.conf' is in use by the following service: web/);
    await assert.rejects(
      m.updateConfig(c.id, c.version, { name: 'app.conf', labels: {}, data: Buffer.from('other').toString('base64') }),
      /only updates to Labels/,
    );
    await assert.rejects(m.updateConfig(c.id, c.version + 99, { name: 'app.conf', labels: {}, data }), /update out of sequence/);
    const u = await m.updateConfig(c.id, c.version, { name: 'app.conf', labels: { b: '2' }, data });
    assert.deepEqual([u.labels, u.data], [{ b: '2' }, data]);
    await o.removeService('web');
    await m.removeConfig('app.conf');
    assert.equal(m.listConfigs().length, 0);
    o.close();
  });
});

describe('docker events', () => {
  it("a manager's store watch gives service and network create, update and remove; kept events are found by time", async () => {
    const { EventLog } = await import('../../src/daemon/events.js');
    const { eventJson } = await import('../../src/api/shapes.js');
    const { m, store, o } = await managerOf();
    const log = new EventLog();
    const seen: string[] = [];
    log.on('event', (e: { type: string; action: string; attributes: Record<string, string> }) => seen.push(`${e.type} ${e.action} ${e.attributes.name}`));
    const stop = log.watchSwarm(store);
    const t0 = Date.now() * 1e6;
    await m.createNetwork({ name: 'ev-net' });
    const s = await o.createService(parseServiceSpec({ Name: 'ev', TaskTemplate: { ContainerSpec: { Image: 'busybox:local' } } }));
    await o.updateService('ev', s.version, parseServiceSpec({ Name: 'ev', Labels: { a: 'b' }, TaskTemplate: { ContainerSpec: { Image: 'busybox:local' } } }));
    await o.removeService('ev');
    await m.removeNetwork('ev-net');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(seen, ['network create ev-net', 'service create ev', 'service update ev', 'service remove ev', 'network remove ev-net']);
    assert.equal(log.between(t0).length, 5);
    assert.equal(log.between(Date.now() * 1e6 + 1e9).length, 0);
    const j = eventJson(log.between(t0)[1]!) as Json;
    assert.deepEqual([j.Type, j.Action, j.Actor.ID, j.Actor.Attributes.name, j.scope], ['service', 'create', s.id, 'ev', 'swarm']);
    assert.equal(j.time, Math.floor(j.timeNano / 1e9));
    stop();
    await m.createNetwork({ name: 'after' });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(seen.length, 5, 'nothing after unsubscribing');
    store.close();
  });
});

describe('swarm update settings', () => {
  it('task history, certificate lifetime and heartbeat period are kept and shown; out-of-range values change nothing', async () => {
    const { swarmSpec } = await import('../../src/api/shapes.js');
    const { m, store } = await managerOf();
    await m.updateSettings({ taskHistory: 2, certDays: 2, heartbeatMs: 2000 });
    const spec = swarmSpec(m.cluster()) as Json;
    assert.equal(spec.Dispatcher.HeartbeatPeriod, 2e9);
    assert.equal(spec.Orchestration.TaskHistoryRetentionLimit, 2);
    assert.equal(spec.CAConfig.NodeCertExpiry, 2 * 24 * 3600 * 1e9);
    const v = m.cluster().version;
    await assert.rejects(m.updateSettings({ certDays: 1 / 48 }), /minimum certificate expiry time is 1h/);
    await assert.rejects(m.updateSettings({ taskHistory: -1 }), /invalid task history limit/);
    await assert.rejects(m.updateSettings({ heartbeatMs: 100 }), /invalid dispatcher heartbeat period 0\.1s: 500ms to 1m/);
    assert.equal(m.cluster().version, v);
    assert.equal(m.cluster().taskHistory, 2);
    store.close();
  });
});
