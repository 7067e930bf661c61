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
    if (o.healthcheck) Object.assign(c, { healthcheck: o.healthcheck });
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
    if (c.healthcheck) c.health = { status: 'starting', failingStreak: 0, log: [] };
    return c;
  }
  stopped: string[] = [];
  async stop(id: string): Promise<void> {
    this.stopped.push(id);
    const c = this.records.get(id)!;
    Object.assign(c, { status: 'exited', exitCode: 137 });
    this.emit('exit', c);
  }
  /** the container's health check reports `status` */
  health(id: string, status: 'healthy' | 'unhealthy'): void {
    const c = this.records.get(id)!;
    c.health = { status, failingStreak: status === 'healthy' ? 0 : 3, log: [] };
    this.emit('health', c);
  }
  async remove(id: string): Promise<void> {
    this.removed.push(id);
    this.records.delete(id);
  }
}

function fakeHost(): TaskHost & {
  reports: [string, TaskStatusReport][];
  detached: string[];
  withdrawn: string[];
  withEndpoints: Set<string>;
  servingLog: string[];
} {
  const h = {
    servingLog: [] as string[],
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
    serving: (taskId: string, ok: boolean) => void h.servingLog.push(`${taskId}:${ok}`),
    mounts: async () => [],
    configFiles: async () => [],
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

  it('a task with a health check serves and runs once healthy; unhealthy, it leaves its services and fails', async () => {
    const { rt, runner, host, states } = setup();
    const hc = { test: ['CMD', 'true'], interval: 1e9, timeout: 0, startPeriod: 0, startInterval: 0, retries: 2 };
    const t = task('h1');
    t.spec.healthcheck = hc;
    await runner.apply([t]);
    assert.deepEqual(states('h1'), ['preparing', 'starting'], 'not running before its first healthy probe');
    assert.deepEqual(host.servingLog, ['h1:false'], 'out of its services from the start');
    rt.health('c-h1', 'healthy');
    await sleep(5);
    assert.deepEqual(states('h1'), ['preparing', 'starting', 'running']);
    assert.deepEqual(host.servingLog, ['h1:false', 'h1:true']);
    rt.health('c-h1', 'unhealthy');
    await sleep(5);
    assert.deepEqual(host.servingLog, ['h1:false', 'h1:true', 'h1:false']);
    assert.deepEqual(rt.stopped, ['c-h1']);
    const last = host.reports.filter(([id]) => id === 'h1').at(-1)![1];
    assert.equal(last.state, 'failed');
    assert.match(last.err ?? '', /non-zero exit \(137\): dockerexec: unhealthy container/);
  });

  it('a task without a health check runs at once and never leaves its services for health', async () => {
    const { runner, host, states } = setup();
    await runner.apply([task('n1')]);
    assert.deepEqual(states('n1'), ['preparing', 'starting', 'running']);
    assert.deepEqual(host.servingLog, []);
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
