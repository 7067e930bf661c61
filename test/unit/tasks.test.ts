// The task runner's decisions, on an in-memory runtime and host (the lab tests run the real ones).
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { createLogger } from '../../src/core/log.js';
import type { NetworkRecord, TaskRecord, TaskStatusReport } from '../../src/cluster/manager/types.js';
import { TASK_LABEL, TaskRunner, type TaskHost } from '../../src/daemon/tasks.js';
import type { ContainerRecord, ContainerRuntime, CreateOptions } from '../../src/runtime/containers.js';
import type { ImageRecord, ImageStore } from '../../src/runtime/images.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Containers in a map; starting one takes `startMs` and counts how many start at once. */
class FakeRuntime extends EventEmitter {
  readonly records = new Map<string, ContainerRecord>();
  removed: string[] = [];
  starts = 0;
  maxAtOnce = 0;
  private running = 0;
  constructor(private readonly startMs = 0) {
    super();
  }
  list(): ContainerRecord[] {
    return [...this.records.values()];
  }
  add(taskId: string, status: ContainerRecord['status'], exitCode = 0): ContainerRecord {
    const c = { id: `c-${taskId}`, name: taskId, status, exitCode, labels: { [TASK_LABEL]: taskId }, netns: '' } as unknown as ContainerRecord;
    this.records.set(c.id, c);
    return c;
  }
  async create(o: CreateOptions): Promise<ContainerRecord> {
    const taskId = o.labels![TASK_LABEL]!;
    if ([...this.records.values()].some((c) => c.name === o.name)) throw new Error(`name ${o.name} in use`);
    const c = this.add(taskId, 'created');
    (c as { name: string }).name = o.name;
    return c;
  }
  async start(id: string): Promise<ContainerRecord> {
    this.starts++;
    this.running++;
    this.maxAtOnce = Math.max(this.maxAtOnce, this.running);
    await sleep(this.startMs);
    this.running--;
    const c = this.records.get(id)!;
    c.status = 'running';
    return c;
  }
  async stop(): Promise<void> {}
  async remove(id: string): Promise<void> {
    this.removed.push(id);
    this.records.delete(id);
  }
}

function fakeHost(): TaskHost & { reports: [string, TaskStatusReport][]; detached: string[]; withdrawn: string[]; withEndpoints: Set<string> } {
  const h = {
    reports: [] as [string, TaskStatusReport][],
    detached: [] as string[],
    withdrawn: [] as string[],
    withEndpoints: new Set<string>(),
    nodeId: () => 'n1',
    network: async (id: string) => ({ id, name: id, ipam: { configs: [] } }) as unknown as NetworkRecord,
    attach: async () => undefined,
    ensureNetns: async () => undefined,
    detachAll: async (taskId: string) => {
      h.detached.push(taskId);
      h.withEndpoints.delete(taskId);
    },
    report: async (taskId: string, r: TaskStatusReport) => void h.reports.push([taskId, r]),
    serveDns: async () => undefined,
    stopDns: async () => undefined,
    ready: async () => undefined,
    localTaskIds: () => [...h.withEndpoints],
    withdraw: (taskId: string) => void h.withdrawn.push(taskId),
    egress: async () => undefined,
    defaultBridge: async () => undefined,
  };
  return h;
}

const images = { find: () => ({ id: 'sha256:x', config: {} }) as unknown as ImageRecord } as unknown as ImageStore;

function task(id: string, o: Partial<TaskRecord> = {}): TaskRecord {
  return {
    id,
    serviceId: 's',
    serviceName: 'web',
    slot: 1,
    nodeId: 'n1',
    specVersion: 1,
    spec: {
      image: 'busybox:local',
      command: [],
      args: ['sleep', '1'],
      env: [],
      workingDir: '',
      user: '',
      hostname: '',
      networks: [],
      containerLabels: {},
      memoryLimit: 0,
      stopGraceMs: 0,
    },
    desiredState: 'running',
    state: 'assigned',
    message: '',
    err: '',
    timestamp: '',
    containerId: '',
    exitCode: null,
    networks: [],
    version: 1,
    createdAt: '',
    updatedAt: '',
    ...o,
  } as TaskRecord;
}

describe('task runner', () => {
  const setup = (startMs = 0) => {
    const rt = new FakeRuntime(startMs);
    const host = fakeHost();
    const runner = new TaskRunner(rt as unknown as ContainerRuntime, images, host, 'p-', createLogger());
    return { rt, host, runner, states: (id: string) => host.reports.filter(([t]) => t === id).map(([, r]) => r.state) };
  };

  it('a container created but never started (the daemon died in between) is made again and started', async () => {
    const { rt, runner, states } = setup();
    const stale = rt.add('t1', 'created');
    await runner.apply([task('t1')]);
    assert.deepEqual(rt.removed, [stale.id]);
    assert.equal(rt.starts, 1);
    assert.deepEqual(states('t1'), ['preparing', 'starting', 'running']);
  });

  it('a container that exited while nobody listened reports its exit to the manager', async () => {
    const { rt, runner, states, host } = setup();
    rt.add('t2', 'exited', 3);
    await runner.apply([task('t2', { state: 'running' })]);
    assert.deepEqual(states('t2'), ['failed']);
    assert.equal(host.reports[0]![1].exitCode, 3);
    assert.equal(rt.starts, 0, 'the manager decides about a restart, not the node');
  });

  it('a withdrawn task that left endpoints but no container is taken down and reported shut down', async () => {
    const { runner, host, states } = setup();
    host.withEndpoints.add('t3');
    await runner.apply([]);
    assert.deepEqual(host.detached, ['t3']);
    assert.deepEqual(states('t3'), ['shutdown']);
  });

  it('a task told to stop leaves its services at once, before its container is stopped', async () => {
    const { runner, host } = setup();
    await runner.apply([task('t1')]);
    assert.deepEqual(host.withdrawn, []);
    const done = runner.apply([]);
    // synchronously, before the runner has stopped anything
    assert.deepEqual(host.withdrawn, ['t1']);
    assert.deepEqual(host.detached, []);
    await done;
    assert.deepEqual(host.detached, ['t1']);
  });

  it('starts at most four tasks at once, and all of them', async () => {
    const { rt, runner, states } = setup(20);
    const tasks = Array.from({ length: 12 }, (_, i) => task(`b${i}`));
    await runner.apply(tasks);
    assert.equal(rt.starts, 12);
    assert.equal(rt.maxAtOnce, 4);
    for (const t of tasks) assert.equal(states(t.id).at(-1), 'running');
  });
});
