// The node's task runner: makes the containers match the tasks the manager assigned here.
// A new task gets its image, its network namespace plumbed into each overlay network with the
// address the manager allocated, and a container; a task no longer assigned is stopped and
// removed with everything it had. Progress and failures go back to the manager as task states.
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { Mutex, Semaphore } from '../core/mutex.js';
import { yieldToLoop } from '../core/yield.js';
import { isTerminal, taskName, type NetworkRecord, type PortConfig, type TaskRecord, type TaskStatusReport } from '../cluster/manager/types.js';
import type { ContainerNetwork, ContainerRecord, ContainerRuntime } from '../runtime/containers.js';
import type { ImageRecord, ImageStore } from '../runtime/images.js';
import { mergeHealthcheck } from '../runtime/health.js';
import { parseRef } from '../runtime/reference.js';
import type { ContainerMount, MountSpec } from '../runtime/volumes.js';
import { pullImage } from '../runtime/registry.js';
import { contains, parseCidr, parseIp } from '../core/ipv4.js';

export const TASK_LABEL = 'com.docker.swarm.task.id';

export interface TaskHost {
  nodeId(): string;
  network(id: string): Promise<NetworkRecord>;
  /** plumbs one endpoint of the task into `netns` (made on first use) */
  attach(task: TaskRecord, net: NetworkRecord, ep: TaskRecord['networks'][number], netns: string): Promise<void>;
  /** makes the task's network namespace (loopback up) if no endpoint made it yet */
  ensureNetns(netns: string): Promise<void>;
  /** removes the task's endpoints and its namespace */
  detachAll(taskId: string, netns: string): Promise<void>;
  report(taskId: string, r: TaskStatusReport): Promise<void>;
  /** the embedded resolver at 127.0.0.11 inside the task's namespace */
  serveDns(netns: string, networkIds: string[]): Promise<void>;
  stopDns(netns: string): Promise<void>;
  /** settles once a restarted node has adopted what it had (endpoints, namespaces) */
  ready(): Promise<void>;
  /** tasks that have endpoints on this node */
  localTaskIds(): string[];
  /** the task is told to stop: it leaves its services' backends and DNS now, before it is gone */
  withdraw(taskId: string): void;
  /** the task's endpoints are in its services' backends and DNS (false: still reachable, but out of them) */
  serving(taskId: string, ok: boolean): void;
  /** the task's mounts made real on this node: volumes made on demand, bind sources checked */
  mounts(specs: MountSpec[]): Promise<ContainerMount[]>;
  /** the task's configs written as files (on tmpfs), each a read-only bind mount at its target */
  configFiles(task: TaskRecord): Promise<ContainerMount[]>;
  /** the task's way out (docker_gwbridge), for a task on a non-internal network */
  egress(taskId: string, netns: string): Promise<void>;
  /** Docker's local bridge network (docker0), the network of a task that names none */
  defaultBridge(taskId: string, netns: string): Promise<void>;
}

export class TaskRunner {
  private readonly lock = new Mutex();
  /** task starts at once: each runs runc and a shim; more only queue for the CPU, the event loop's too */
  private readonly launches = new Semaphore(Number(process.env.VXSWARM_PARALLEL_STARTS ?? 4));
  private readonly starting = new Set<string>();
  private wanted = new Map<string, TaskRecord>();
  /** tasks whose container is being stopped because its health check failed */
  private readonly unhealthy = new Set<string>();

  constructor(
    private readonly runtime: ContainerRuntime,
    private readonly images: ImageStore,
    private readonly host: TaskHost,
    private readonly netnsPrefix: string,
    private readonly log: Logger,
  ) {
    runtime.on('exit', (c: ContainerRecord) => void this.exited(c));
    runtime.on('health', (c: ContainerRecord) => void this.healthChanged(c));
  }

  netnsOf(taskId: string): string {
    return `${this.netnsPrefix}c-${taskId.slice(0, 12)}`;
  }

  private local(): Map<string, ContainerRecord> {
    const m = new Map<string, ContainerRecord>();
    for (const c of this.runtime.list()) if (c.labels[TASK_LABEL]) m.set(c.labels[TASK_LABEL], c);
    return m;
  }

  /** The tasks wanted here that publish host-mode ports, with their namespaces. */
  hostPortTasks(): { taskId: string; netns: string; ports: PortConfig[] }[] {
    return [...this.wanted.values()].flatMap((t) => {
      const ports = (t.spec.ports ?? []).filter((p) => p.publishMode === 'host');
      return ports.length && t.desiredState === 'running' ? [{ taskId: t.id, netns: this.netnsOf(t.id), ports }] : [];
    });
  }

  /** Tasks being prepared or started right now (no container yet, or not running yet). */
  startingIds(): string[] {
    return [...this.starting];
  }

  /** The complete set of tasks that should run here now. */
  apply(tasks: TaskRecord[]): Promise<void> {
    const before = this.wanted;
    this.wanted = new Map(tasks.map((t) => [t.id, t]));
    for (const id of before.keys()) if (!this.wanted.has(id)) this.host.withdraw(id);
    return this.lock.lock(async () => {
      await this.host.ready();
      const have = this.local();
      const stops: Promise<void>[] = [];
      for (const [taskId, c] of have) if (!this.wanted.has(taskId)) stops.push(this.retire(taskId, c));
      // Withdrawn before its container was made (or the daemon died in between, leaving its
      // endpoints): take down what it has and say so, or the manager waits for it forever.
      for (const taskId of new Set([...before.keys(), ...this.host.localTaskIds()]))
        if (!this.wanted.has(taskId) && !have.has(taskId) && !this.starting.has(taskId))
          stops.push(
            this.host
              .detachAll(taskId, this.netnsOf(taskId))
              .catch((e: unknown) => this.log.warn('could not detach a withdrawn task', { task: taskId, error: errorMessage(e) }))
              .then(() => this.report(taskId, { state: 'shutdown', message: 'withdrawn before it started' })),
          );
      const starts: Promise<void>[] = [];
      for (const t of this.wanted.values()) {
        const c = have.get(t.id);
        if (this.starting.has(t.id)) continue;
        if (c && c.status === 'running') {
          // With a health check, a task is running (and serving) once it is healthy, as in Docker.
          const ok = !c.health || c.health.status === 'healthy';
          if (c.health) this.host.serving(t.id, ok);
          if (ok && t.state !== 'running') await this.report(t.id, { state: 'running', message: 'started', containerId: c.id });
          continue;
        }
        if (c && c.status !== 'created') {
          // It exited while nobody listened (the daemon was down): the manager decides what next.
          if (!isTerminal(t.state)) await this.exited(c);
          continue;
        }
        this.starting.add(t.id);
        // Created but never started (the daemon died between runc create and start): made again.
        const launch = (): Promise<void> => this.launches.run(() => this.launch(t));
        const fresh = c ? this.runtime.remove(c.id, true).then(launch) : launch();
        starts.push(fresh.finally(() => this.starting.delete(t.id)));
      }
      await Promise.all([...stops, ...starts]);
    });
  }

  private report(taskId: string, r: TaskStatusReport): Promise<void> {
    return this.host.report(taskId, r).catch((e: unknown) => this.log.warn('task status report failed', { task: taskId, error: errorMessage(e) }));
  }

  private async resolveImage(ref: string): Promise<ImageRecord> {
    const bare = ref.replace(/@sha256:[a-f0-9]{64}$/, '');
    const found = this.images.find(ref) ?? this.images.find(bare);
    if (found) return found;
    // Only a registry named in the reference is contacted; a Hub name is never fetched from here.
    if (parseRef(ref).registry) return pullImage(this.images, ref);
    throw new Error(`No such image: ${bare}`);
  }

  private async launch(t: TaskRecord): Promise<void> {
    const netns = this.netnsOf(t.id);
    await this.report(t.id, { state: 'preparing', message: 'preparing' });
    let image: ImageRecord;
    try {
      image = await this.resolveImage(t.spec.image);
    } catch (e) {
      await this.report(t.id, { state: 'rejected', message: 'preparing', err: errorMessage(e) });
      return;
    }
    let mounts: ContainerMount[];
    try {
      mounts = [...(await this.host.mounts(t.spec.mounts ?? [])), ...(await this.host.configFiles(t))];
    } catch (e) {
      await this.report(t.id, { state: 'rejected', message: 'preparing', err: errorMessage(e) });
      return;
    }
    let container: ContainerRecord | undefined;
    // Out of the service's backends and DNS from its first endpoint until its check passes.
    if (mergeHealthcheck(image.config.Healthcheck, t.spec.healthcheck)) this.host.serving(t.id, false);
    try {
      const networks: ContainerNetwork[] = [];
      let external = false;
      for (const n of t.networks) {
        const net = await this.host.network(n.networkId);
        if (!net.internal) external = true;
        await yieldToLoop();
        await this.host.attach(t, net, n, netns);
        const cfg = net.ipam.configs.find((c) => contains(parseCidr(c.subnet), parseIp(n.ip)));
        networks.push({
          networkId: net.id,
          networkName: net.name,
          endpointId: n.attachmentId,
          ip: n.ip,
          prefixLen: cfg ? Number(cfg.subnet.split('/')[1]) : 24,
          gateway: cfg?.gateway ?? '',
          mac: n.mac,
          aliases: t.spec.networks.find((x) => x.target === n.networkId)?.aliases ?? [],
        });
      }
      await yieldToLoop();
      await this.host.ensureNetns(netns);
      // Internal networks only: no way out, and no default route (as Docker). No network at all:
      // Docker's local bridge, with its way out.
      if (external) await this.host.egress(t.id, netns);
      else if (!t.networks.length) await this.host.defaultBridge(t.id, netns);
      if (!this.wanted.has(t.id)) throw new Error('task withdrawn while preparing');
      // Every task has the resolver: one on no overlay still resolves outside names through it.
      await this.host.serveDns(
        netns,
        networks.map((n) => n.networkId),
      );
      container = await this.runtime.create({
        name: taskName(t),
        image,
        imageRef: t.spec.image.replace(/@sha256:[a-f0-9]{64}$/, ''),
        ...(t.spec.command.length ? { entrypoint: t.spec.command } : {}),
        cmd: t.spec.args,
        env: t.spec.env,
        workingDir: t.spec.workingDir,
        user: t.spec.user,
        hostname: t.spec.hostname,
        labels: {
          ...t.spec.containerLabels,
          'com.docker.swarm.node.id': this.host.nodeId(),
          'com.docker.swarm.service.id': t.serviceId,
          'com.docker.swarm.service.name': t.serviceName,
          [TASK_LABEL]: t.id,
          'com.docker.swarm.task.name': taskName(t),
        },
        netns,
        networks,
        memoryLimit: t.spec.memoryLimit,
        ...(t.spec.nanoCpus ? { nanoCpus: t.spec.nanoCpus } : {}),
        ...(t.spec.reservations?.memoryBytes ? { memoryReservation: t.spec.reservations.memoryBytes } : {}),
        ...(t.spec.healthcheck ? { healthcheck: t.spec.healthcheck } : {}),
        ...(mounts.length ? { mounts } : {}),
        stopTimeout: t.spec.stopGraceMs / 1000,
      });
      await this.report(t.id, { state: 'starting', message: 'starting', containerId: container.id });
      await this.runtime.start(container.id);
      // A task with a health check stays starting until it is healthy (healthChanged).
      if (!container.healthcheck) await this.report(t.id, { state: 'running', message: 'started', containerId: container.id });
    } catch (e) {
      const msg = errorMessage(e);
      this.log.warn('task failed to start', { task: t.id, error: msg });
      if (!container) {
        await this.host.stopDns(netns).catch(() => undefined);
        await this.host.detachAll(t.id, netns).catch(() => undefined);
      }
      await this.report(t.id, {
        state: 'failed',
        message: 'starting',
        err: msg,
        ...(container ? { containerId: container.id, exitCode: container.exitCode } : {}),
      });
    }
  }

  /**
   * A task's health changed: healthy, it is running and serves; unhealthy, it leaves its services at
   * once and its container is stopped, so the task fails and the manager replaces it (as swarmkit).
   */
  private async healthChanged(c: ContainerRecord): Promise<void> {
    const taskId = c.labels[TASK_LABEL];
    if (!taskId || !this.wanted.has(taskId) || c.status !== 'running' || !c.health) return;
    if (c.health.status === 'healthy') {
      this.host.serving(taskId, true);
      await this.report(taskId, { state: 'running', message: 'started', containerId: c.id });
    } else if (c.health.status === 'unhealthy') {
      this.host.serving(taskId, false);
      this.unhealthy.add(taskId);
      this.log.warn('task unhealthy: stopping it', { task: taskId, streak: c.health.failingStreak });
      await this.runtime.stop(c.id).catch((e: unknown) => this.log.error('could not stop an unhealthy task', { task: taskId, error: errorMessage(e) }));
    }
  }

  /** The container of a wanted task exited: tell the manager, which decides about a restart. */
  private async exited(c: ContainerRecord): Promise<void> {
    const taskId = c.labels[TASK_LABEL];
    const unhealthy = !!taskId && this.unhealthy.delete(taskId);
    if (!taskId || !this.wanted.has(taskId) || this.starting.has(taskId)) return;
    const ok = c.exitCode === 0 && !unhealthy;
    await this.report(taskId, {
      state: ok ? 'complete' : 'failed',
      message: ok ? 'finished' : 'started',
      err: ok ? '' : `task: non-zero exit (${c.exitCode})${unhealthy ? ': dockerexec: unhealthy container' : ''}`,
      containerId: c.id,
      exitCode: c.exitCode,
    });
  }

  private async retire(taskId: string, c: ContainerRecord): Promise<void> {
    try {
      await this.runtime.stop(c.id);
      await this.runtime.remove(c.id, true);
    } catch (e) {
      this.log.error('could not remove a task container', { task: taskId, error: errorMessage(e) });
    }
    await this.host.stopDns(this.netnsOf(taskId)).catch(() => undefined);
    await this.host
      .detachAll(taskId, this.netnsOf(taskId))
      .catch((e: unknown) => this.log.error('could not detach a task', { task: taskId, error: errorMessage(e) }));
    await this.report(taskId, { state: 'shutdown', message: 'shutdown', containerId: c.id });
  }
}
