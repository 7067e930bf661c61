// Replicated services: the orchestrator keeps one live task per slot (1..replicas), replaces tasks
// of an older spec or on a node that went down, applies the restart policy, and hands new tasks to
// the scheduler, which places them and allocates their overlay addresses. Every pass is one store
// transaction; it runs after any change that could matter (service, node, task status).
import { ConflictError, InvalidArgumentError, NotFoundError } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import { formatIp, parseIp } from '../../core/ipv4.js';
import type { Logger } from '../../core/log.js';
import { NAME_RE, now, type Manager } from './manager.js';
import { matches, parseConstraint, place, type Load } from './scheduler.js';
import { resolveConfigRefs } from './configs.js';
import { findByRef } from './lookup.js';
import type { StoreChange } from './store.js';
import type { NodeRecord } from './types.js';
import {
  DEFAULT_UPDATE_POLICY,
  TASK_STATE_ORDER,
  INGRESS_SBOX,
  isGlobal,
  isJob,
  isTerminal,
  type NodeReport,
  type PortConfig,
  type ServiceRecord,
  type ServiceSpec,
  type TaskRecord,
  type TaskStatusReport,
} from './types.js';

export const MAX_REPLICAS = 1000;
/** Docker's range for published ports nobody asked a number for. */
export const DYNAMIC_PORTS = [30000, 32767] as const;
/** a node reports 'preparing' as soon as it takes a task; one still 'assigned' this long after being withdrawn never got it */
export const UNHEARD_GRACE_MS = 5000;
/** Terminal tasks kept per slot for `service ps` history, as Docker's TaskHistoryRetentionLimit. */
export const TASK_HISTORY = 5;

export class Orchestrator {
  private pending = false;
  private running = false;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;

  /**
   * `loops`: this instance runs the passes (the leader's). Without, it is the service API every
   * manager serves from its own store: its writes reach the leader's loops through etcd's watch.
   */
  constructor(
    private readonly m: Manager,
    private readonly log: Logger,
    loops = true,
  ) {
    if (!loops) {
      this.closed = true;
      return;
    }
    m.on('node-state', this.onNodeState);
    m.store.on('change', this.onStoreChange);
  }

  private readonly onNodeState = (): void => this.kick();
  /** Writes from any manager reach the loops here; the leader's own too (harmless). */
  private readonly onStoreChange = (changes: StoreChange[]): void => {
    if (changes.some((c) => c.coll !== 'ips' && c.coll !== 'cursors' && c.coll !== 'sessions')) this.kick();
  };

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.m.off('node-state', this.onNodeState);
    this.m.store.off('change', this.onStoreChange);
  }

  private get store(): Manager['store'] {
    return this.m.store;
  }

  /** Coalesces bursts of changes into one pass. */
  kick(): void {
    if (this.pending) return;
    this.pending = true;
    setImmediate(() => void this.pass());
  }

  /** One pass at a time; a kick during a pass runs another after it. */
  private async pass(): Promise<void> {
    if (this.running) return;
    this.pending = false;
    if (this.closed) return;
    this.running = true;
    try {
      await this.reconcile();
    } catch (e) {
      if (!this.closed) {
        this.log.error('orchestrator pass failed', { error: (e as Error).message });
        // The store was unreachable or the write lost a race: look again shortly.
        this.wake(Date.now() + 500);
      }
    } finally {
      this.running = false;
      if (this.pending) setImmediate(() => void this.pass());
    }
  }

  private wake(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.kick(), Math.max(10, at - Date.now()));
    this.timer.unref();
  }

  // ---- services ----

  validate(spec: ServiceSpec): ServiceSpec {
    if (!NAME_RE.test(spec.name)) throw new InvalidArgumentError(`invalid service name "${spec.name}": names are 1-63 characters, [a-zA-Z0-9][a-zA-Z0-9_.-]`);
    if (!spec.image) throw new InvalidArgumentError('service spec has no image');
    if (!Number.isInteger(spec.replicas) || spec.replicas < 0 || spec.replicas > MAX_REPLICAS)
      throw new InvalidArgumentError(`invalid replicas ${spec.replicas}: must be an integer from 0 to ${MAX_REPLICAS}`);
    for (const c of spec.constraints) parseConstraint(c);
    for (const d of spec.spread ?? [])
      try {
        parseConstraint(`${d}==x`);
      } catch {
        throw new InvalidArgumentError(`invalid spread descriptor "${d}": node.labels.<name>, engine.labels.<name>, node.id, node.hostname or node.role`);
      }
    if (spec.memoryLimit !== 0 && spec.memoryLimit < 6 * 1024 * 1024) throw new InvalidArgumentError('minimum memory limit allowed is 6MB');
    const seen = new Set<string>();
    const networks = spec.networks.map((n) => {
      const net = this.m.findNetwork(n.target);
      if (net.ingress) throw new InvalidArgumentError('service cannot be explicitly attached to the ingress network');
      if (seen.has(net.id)) throw new InvalidArgumentError(`network ${net.name} is listed twice`);
      seen.add(net.id);
      return { target: net.id, aliases: n.aliases };
    });
    const configs = resolveConfigRefs(this.store, spec);
    if (configs) spec = { ...spec, configs };
    const ports = spec.ports ?? [];
    if (spec.endpointMode === 'dnsrr' && ports.some((p) => p.publishMode === 'ingress'))
      throw new InvalidArgumentError("port published with ingress mode can't be used with dnsrr mode");
    const published = new Set<string>();
    for (const p of ports) {
      if (p.publishMode === 'host' && !p.publishedPort)
        throw new InvalidArgumentError(`a host-mode port needs a published port (target ${p.targetPort}/${p.protocol}): vxswarm does not pick one`);
      const key = `${p.protocol}/${p.publishedPort}`;
      if (p.publishedPort && published.has(key)) throw new InvalidArgumentError(`published port ${key} is listed twice`);
      published.add(key);
    }
    return { ...spec, networks };
  }

  /**
   * The service's ports with every ingress port assigned: one asked for must be free in the whole
   * swarm (an ingress port is every node's), one left out is kept from the previous spec or taken
   * from 30000-32767, as Docker's port allocator. Inside the service's write.
   */
  private syncPorts(s: ServiceRecord, prev?: ServiceRecord): void {
    const others = this.store.listServices().filter((x) => x.id !== s.id);
    const owner = new Map<string, { svc: ServiceRecord; mode: string }>();
    for (const o of others) for (const p of o.ports ?? []) owner.set(`${p.protocol}/${p.publishedPort}`, { svc: o, mode: p.publishMode });
    const out: PortConfig[] = [];
    const used = new Set((s.spec.ports ?? []).filter((p) => p.publishedPort).map((p) => `${p.protocol}/${p.publishedPort}`));
    for (const p of s.spec.ports ?? []) {
      let published = p.publishedPort;
      if (!published) {
        const before = prev?.ports?.find(
          (q) => q.protocol === p.protocol && q.targetPort === p.targetPort && q.publishMode === p.publishMode && !used.has(`${q.protocol}/${q.publishedPort}`),
        );
        published = before?.publishedPort ?? 0;
        for (let n = DYNAMIC_PORTS[0]; !published && n <= DYNAMIC_PORTS[1]; n++)
          if (!owner.has(`${p.protocol}/${n}`) && !used.has(`${p.protocol}/${n}`)) published = n;
        if (!published) throw new ConflictError(`no free port left in ${DYNAMIC_PORTS[0]}-${DYNAMIC_PORTS[1]} for ${p.targetPort}/${p.protocol}`);
        used.add(`${p.protocol}/${published}`);
      }
      const o = owner.get(`${p.protocol}/${published}`);
      // Two host-mode ports may share a number (the scheduler keeps them on different nodes); an
      // ingress port is taken on every node.
      if (o && (o.mode === 'ingress' || p.publishMode === 'ingress'))
        throw new ConflictError(
          `port '${published}' is already in use by service '${o.svc.spec.name}' (${o.svc.id}) as ${o.mode === 'ingress' ? 'an ingress' : 'a host-mode'} port`,
        );
      out.push({ ...p, publishedPort: published });
    }
    if (out.length) s.ports = out;
    else delete s.ports;
  }

  async createService(input: ServiceSpec): Promise<ServiceRecord> {
    const rec = await this.store.tx(() => {
      const spec = this.validate(input);
      if (this.store.listServices().some((s) => s.spec.name === spec.name))
        throw new ConflictError(`rpc error: code = AlreadyExists desc = name conflicts with an existing object: service ${spec.name} already exists`);
      const t = now();
      const s: ServiceRecord = {
        id: newId(),
        spec,
        specVersion: 1,
        version: this.store.bump(),
        createdAt: t,
        updatedAt: t,
        ...(isJob(spec) ? { lastExecution: t } : {}),
      };
      this.syncPorts(s);
      this.syncVips(s);
      this.store.putService(s);
      return s;
    });
    this.kick();
    return rec;
  }

  /**
   * A vip-mode service holds one address on each of its networks, taken at create and kept while it
   * stays there; dnsrr holds none. A mode switch takes or frees them in the same write, so DNS and
   * the load balancers follow at once (Docker keeps a stale VIP: moby/moby#38575).
   */
  private syncVips(s: ServiceRecord): void {
    const want = (s.spec.endpointMode ?? 'vip') === 'vip' ? new Set(s.spec.networks.map((n) => n.target)) : new Set<string>();
    const kept = (s.vips ?? []).filter((v) => {
      if (want.has(v.networkId)) return true;
      this.store.releaseIp(v.networkId, parseIp(v.ip));
      return false;
    });
    for (const id of want) {
      if (kept.some((v) => v.networkId === id)) continue;
      const net = this.m.findNetwork(id);
      kept.push({ networkId: id, ip: formatIp(this.m.allocIpTx(net, `vip-${s.id}`)) });
    }
    if (kept.length) s.vips = kept;
    else delete s.vips;
  }

  listServices(): ServiceRecord[] {
    return this.store.listServices();
  }

  findService(ref: string): ServiceRecord {
    return findByRef(this.store.listServices(), ref, (x) => x.spec.name, 'service');
  }

  /** `version` must be the one the caller read (optimistic concurrency, as Docker's Version.Index). */
  async updateService(ref: string, version: number | undefined, input: ServiceSpec): Promise<ServiceRecord> {
    const rec = await this.store.tx(() => {
      const s = this.findService(ref);
      if (version !== undefined && version !== s.version)
        throw new ConflictError(`update out of sequence: service ${s.spec.name} is at version ${s.version}, not ${version}`);
      const spec = this.validate(input);
      if (spec.name !== s.spec.name) throw new InvalidArgumentError('renaming services is not supported');
      if ((spec.mode ?? 'replicated') !== (s.spec.mode ?? 'replicated')) throw new InvalidArgumentError('service mode change is not allowed');
      // Only a change to what runs replaces tasks; scaling, the update policy and the service's
      // own labels keep them (Docker redeploys only on a TaskTemplate change). A job runs again
      // after any update (a new iteration), all at once: no rolling update.
      const job = isJob(spec);
      const changed = job || !sameTask(spec, s.spec);
      const next: ServiceRecord = {
        ...s,
        previousSpec: s.spec,
        spec,
        specVersion: changed ? s.specVersion + 1 : s.specVersion,
        version: this.store.bump(),
        updatedAt: now(),
        ...(job ? { lastExecution: now() } : {}),
        ...(changed && !job ? { updateStatus: { state: 'updating' as const, startedAt: now(), message: 'update in progress' } } : {}),
      };
      this.syncPorts(next, s);
      this.syncVips(next);
      this.store.putService(next);
      return next;
    });
    this.kick();
    return rec;
  }

  /**
   * `service rollback` / `service update --rollback`: the previous spec comes back, rolled out
   * as an update (Docker's default RollbackConfig: one at a time, stop-first, pause on failure).
   */
  async rollbackService(ref: string, version: number | undefined, reason = 'manually requested rollback'): Promise<ServiceRecord> {
    const rec = await this.store.tx(() => {
      const s = this.findService(ref);
      if (version !== undefined && version !== s.version)
        throw new ConflictError(`update out of sequence: service ${s.spec.name} is at version ${s.version}, not ${version}`);
      if (!s.previousSpec) throw new InvalidArgumentError(`service ${s.spec.name} does not have a previous spec`);
      this.rollbackTx(s, reason);
      return s;
    });
    this.kick();
    return rec;
  }

  private rollbackTx(s: ServiceRecord, reason: string): void {
    const back = s.previousSpec!;
    s.previousSpec = s.spec;
    s.spec = back;
    s.specVersion += 1;
    // A job runs its previous spec again as a new iteration, all at once.
    if (isJob(s.spec)) s.lastExecution = now();
    else s.updateStatus = { state: 'rollback_started', startedAt: now(), message: reason };
    s.version = this.store.bump();
    s.updatedAt = now();
    this.syncPorts(s, { ...s, ports: s.ports });
    this.syncVips(s);
    this.store.putService(s);
    // Tasks that never left the previous spec are already what the rollback wants: they stay.
    for (const t of this.store.listTasks({ serviceId: s.id }))
      if (sameTask(t.spec, back) && t.specVersion !== s.specVersion) {
        t.specVersion = s.specVersion;
        this.touch(t);
      }
  }

  async removeService(ref: string): Promise<void> {
    await this.store.tx(() => {
      const s = this.findService(ref);
      for (const v of s.vips ?? []) this.store.releaseIp(v.networkId, parseIp(v.ip));
      this.store.deleteService(s.id);
      for (const t of this.store.listTasks({ serviceId: s.id })) {
        t.desiredState = 'remove';
        this.touch(t);
      }
    });
    this.kick();
  }

  listTasks(filter: { serviceId?: string; nodeId?: string } = {}): TaskRecord[] {
    return this.store.listTasks(filter);
  }

  findTask(ref: string): TaskRecord {
    const t = this.store.getTask(ref) ?? this.store.listTasks().find((x) => ref && x.id.startsWith(ref));
    if (!t) throw new NotFoundError(`task ${ref} not found`);
    return t;
  }

  /** A node reports what its task is doing; states only move forward. */
  async reportStatus(nodeId: string, taskId: string, r: TaskStatusReport): Promise<void> {
    await this.store.tx(() => {
      const t = this.store.getTask(taskId);
      if (!t || t.nodeId !== nodeId) return;
      if (!TASK_STATE_ORDER.includes(r.state)) throw new InvalidArgumentError(`unknown task state ${r.state}`);
      // States only move forward, and a finished task keeps how it finished (complete, failed…).
      if (isTerminal(t.state) || TASK_STATE_ORDER.indexOf(r.state) < TASK_STATE_ORDER.indexOf(t.state)) return;
      if (r.state === t.state && r.message === t.message && (r.err ?? '') === t.err) return;
      t.state = r.state;
      t.message = r.message;
      t.err = r.err ?? '';
      t.timestamp = now();
      if (r.containerId) t.containerId = r.containerId;
      if (r.exitCode !== undefined) t.exitCode = r.exitCode;
      this.touch(t);
    });
    this.kick();
  }

  /**
   * A node's whole state, sent when its session starts (after a restart it knows nothing of what
   * the manager expects). Every task the manager places on that node and the node no longer has
   * is finished, and its addresses go back: one told to stop is shut down, one that had started is
   * failed (its restart policy brings a new one); one merely assigned is left to be started.
   * A container that exited while nobody listened reports its exit. Tasks whose state changed
   * after `since` (the session's start) are newer than the report and left alone.
   */
  async nodeReport(nodeId: string, r: NodeReport, since: number): Promise<{ finished: number; released: number }> {
    const have = new Map(r.tasks.map((t) => [t.id, t]));
    const starting = new Set(r.starting);
    let finished = 0;
    const reports: Promise<void>[] = [];
    for (const t of this.store.listTasks({ nodeId })) {
      if (isTerminal(t.state) || Date.parse(t.timestamp) >= since || starting.has(t.id)) continue;
      const c = have.get(t.id);
      if (c?.status === 'exited' || c?.status === 'dead') {
        const ok = c.exitCode === 0;
        reports.push(
          this.reportStatus(nodeId, t.id, {
            state: ok ? 'complete' : 'failed',
            message: ok ? 'finished' : 'started',
            err: ok ? '' : `task: non-zero exit (${c.exitCode})`,
            containerId: c.containerId,
            exitCode: c.exitCode,
          }),
        );
        finished++;
      } else if (!c && t.desiredState !== 'running') {
        reports.push(this.reportStatus(nodeId, t.id, { state: 'shutdown', message: 'not on its node when its session started' }));
        finished++;
      } else if (!c && TASK_STATE_ORDER.indexOf(t.state) > TASK_STATE_ORDER.indexOf('accepted')) {
        reports.push(this.reportStatus(nodeId, t.id, { state: 'failed', message: 'lost', err: 'task lost: its node no longer has it' }));
        finished++;
      }
    }
    // While the node is making an endpoint, its address may be taken and not yet listed: keep all
    // (what is truly lost goes at the next session start).
    const released = r.creating ? 0 : await this.m.releaseLostAttachments(nodeId, r.attachments, since);
    await Promise.all(reports);
    if (finished || released) this.log.info('node state reconciled', { node: nodeId, finished, released });
    this.kick();
    return { finished, released };
  }

  /** The tasks a node should be running now, with the networks they join. */
  assignments(nodeId: string): TaskRecord[] {
    return this.store.listTasks({ nodeId }).filter((t) => t.desiredState === 'running' && !isTerminal(t.state));
  }

  private touch(t: TaskRecord): void {
    t.version = this.store.bump();
    t.updatedAt = now();
    this.store.putTask(t);
  }

  /** Every node holds an address on the ingress network for its routing mesh sandbox (Docker's ingress-sbox). */
  private ensureIngressEndpoints(nodes: NodeRecord[], ingressId: string | undefined): void {
    if (!ingressId) return;
    const have = new Set(
      this.store
        .listAttachments({ networkId: ingressId })
        .filter((a) => a.name === INGRESS_SBOX)
        .map((a) => a.nodeId),
    );
    for (const n of nodes)
      if (!have.has(n.id))
        try {
          this.m.attachTx(ingressId, n.id, INGRESS_SBOX);
        } catch (e) {
          this.log.warn('no ingress address for a node', { node: n.id, error: (e as Error).message });
        }
  }

  private release(t: TaskRecord): void {
    for (const n of t.networks) {
      if (this.store.getAttachment(n.attachmentId)) this.m.detachTx(n.attachmentId);
    }
    t.networks = [];
  }

  /**
   * How many tasks the service wants running now (a global one: its eligible nodes; a replicated
   * job: as many as may run at once; a global job: its nodes that have not completed it yet).
   */
  desiredTasks(s: ServiceRecord): number {
    if (s.spec.mode === 'replicated-job') return Math.min(s.spec.maxConcurrent ?? 1, s.spec.replicas);
    const slots = wantedSlots(s, this.m.listNodes());
    if (s.spec.mode !== 'global-job') return slots.size;
    const done = new Set(
      this.store.listTasks({ serviceId: s.id }).flatMap((t) => (t.specVersion === s.specVersion && t.state === 'complete' ? [slotOf(t)] : [])),
    );
    return [...slots].filter((x) => !done.has(x)).length;
  }

  /**
   * A job's pass (swarmkit's jobs orchestrator): the current iteration (specVersion) fills each
   * slot until one of its tasks completes, never starting a completed one again; a replicated job
   * runs at most MaxConcurrent at once, counting failed ones waiting for their restart; a failed
   * task is restarted by the restart policy. Tasks of an older iteration are stopped. Returns when
   * to pass again (a restart delay), or Infinity.
   */
  private reconcileJob(
    s: ServiceRecord,
    mine: TaskRecord[],
    bySlot: Map<string, TaskRecord[]>,
    wanted: Set<string>,
    live: (t: TaskRecord) => boolean,
    isDown: (nodeId: string) => boolean,
  ): number {
    let wakeAt = Infinity;
    for (const t of mine)
      if (t.specVersion < s.specVersion && t.desiredState === 'running') {
        t.desiredState = 'shutdown';
        t.message = isTerminal(t.state) ? t.message : 'job iteration replaced';
        this.touch(t);
      }
    let busy = 0;
    const free: string[] = [];
    const restart: string[] = [];
    for (const slot of wanted) {
      const history = (bySlot.get(slot) ?? []).filter((t) => t.specVersion === s.specVersion).sort(byAge);
      const last = history[history.length - 1];
      if (history.some((t) => t.state === 'complete')) continue;
      if (!last) free.push(slot);
      else if (live(last)) busy++;
      else if (last.desiredState === 'running') {
        // It failed (or was rejected): the restart policy says whether and when it goes again.
        busy++;
        const r = s.spec.restart;
        if (r.condition === 'none') continue;
        if (r.maxAttempts > 0 && history.length >= r.maxAttempts + 1) continue;
        const due = Date.parse(last.timestamp) + r.delayMs;
        if (due > Date.now()) wakeAt = Math.min(wakeAt, due);
        else restart.push(slot);
      } else if (!isTerminal(last.state) && !isDown(last.nodeId)) busy++;
      else free.push(slot);
    }
    const room = s.spec.mode === 'replicated-job' ? Math.max(0, (s.spec.maxConcurrent ?? 1) - busy) : free.length;
    for (const slot of [...restart, ...free.slice(0, room)]) {
      for (const old of bySlot.get(slot) ?? [])
        if (isTerminal(old.state) && old.desiredState === 'running') {
          old.desiredState = 'shutdown';
          this.touch(old);
        }
      const t = isGlobal(s.spec) ? this.newTask(s, 0, slot) : this.newTask(s, Number(slot), '');
      this.store.putTask(t);
      bySlot.set(slot, [...(bySlot.get(slot) ?? []), t]);
    }
    return wakeAt;
  }

  // ---- the pass ----

  async reconcile(): Promise<void> {
    // A service whose VIPs do not match its networks (made by a version without VIPs) gets them,
    // each in a write of its own: a network out of addresses fails that one alone, changing nothing.
    for (const s of this.store.listServices().filter((x) => !vipsMatch(x)))
      await this.store
        .tx(() => {
          const cur = this.store.getService(s.id);
          if (!cur || vipsMatch(cur)) return;
          this.syncVips(cur);
          cur.version = this.store.bump();
          this.store.putService(cur);
        })
        .catch((e: unknown) => this.log.warn('could not give a service its virtual IPs', { service: s.spec.name, error: (e as Error).message }));
    let wakeAt = Infinity;
    await this.store.tx(() => {
      wakeAt = Infinity;
      const nodes = new Map(this.m.listNodes().map((n) => [n.id, n]));
      // 'unknown' (a manager restart, waiting for sessions) is not down: its tasks stay.
      const isDown = (id: string): boolean => !!id && (!nodes.has(id) || nodes.get(id)!.state === 'down');
      const services = new Map(this.store.listServices().map((s) => [s.id, s]));
      const tasks = this.store.listTasks();
      const live = (t: TaskRecord): boolean => t.desiredState === 'running' && !isTerminal(t.state);
      // What each service wants: slots 1..replicas, or (global) one task per eligible node.
      const wanted = new Map([...services.values()].map((s) => [s.id, wantedSlots(s, [...nodes.values()])]));

      // Rolling updates, by the service's UpdateConfig. A slot is in flight while its old task
      // stops or its new one is not yet running; a batch is the slots started together.
      const inFlight = new Map<string, number>();
      const slotTasks = new Map<string, TaskRecord[]>();
      for (const t of tasks) slotTasks.set(`${t.serviceId}/${slotOf(t)}`, [...(slotTasks.get(`${t.serviceId}/${slotOf(t)}`) ?? []), t]);
      for (const [k, list] of slotTasks) {
        const s = services.get(k.split('/')[0]!);
        if (!s || !wanted.get(s.id)!.has(slotOf(list[0]!))) continue;
        // In flight: this update touched the slot (its old task was told to stop, or a new one
        // exists) and the slot's newest task of the new spec has not yet run or ended.
        const old = list.filter((t) => t.specVersion < s.specVersion);
        const fresh = list.filter((t) => t.specVersion === s.specVersion).sort(byAge);
        const newest = fresh[fresh.length - 1];
        const last = [...list].sort(byAge)[list.length - 1]!;
        const touched = fresh.length > 0 || last.desiredState !== 'running';
        const settled = newest !== undefined && (newest.state === 'running' || isTerminal(newest.state));
        if (old.length && touched && !settled) inFlight.set(s.id, (inFlight.get(s.id) ?? 0) + 1);
      }
      // Which slots each service replaces now (parallelism, delay, pause on failure).
      const toUpdate = new Map<string, Set<string>>();
      for (const s of services.values()) {
        const pick = this.nextBatch(s, slotTasks, wanted.get(s.id)!, inFlight.get(s.id) ?? 0, live);
        toUpdate.set(s.id, pick.slots);
        if (pick.wakeAt) wakeAt = Math.min(wakeAt, pick.wakeAt);
      }

      // Assigned and withdrawn before its node heard of it (a service removed right after it was
      // made): the node never reports on it, so after a grace the manager finishes it itself. A
      // node that did start it meanwhile retires the container on its next assignment set.
      const unheard = (t: TaskRecord): boolean => {
        if (t.state !== 'assigned') return false;
        const due = Date.parse(t.timestamp) + UNHEARD_GRACE_MS;
        if (due > Date.now()) wakeAt = Math.min(wakeAt, due);
        return due <= Date.now();
      };
      for (const t of tasks) {
        // Tasks of removed services go once their node has stopped them (or cannot).
        if (!services.has(t.serviceId) || t.desiredState === 'remove') {
          if (isTerminal(t.state) || !t.nodeId || isDown(t.nodeId) || !nodes.has(t.nodeId) || unheard(t)) {
            this.release(t);
            this.store.deleteTask(t.id);
          } else if (t.desiredState !== 'remove') {
            t.desiredState = 'remove';
            this.touch(t);
          }
          continue;
        }
        const s = services.get(t.serviceId)!;
        if (live(t) && t.nodeId && isDown(t.nodeId)) {
          t.desiredState = 'shutdown';
          t.message = 'node is down: task rescheduled';
          this.touch(t);
        } else if (live(t) && t.nodeId && nodes.get(t.nodeId)?.availability === 'drain') {
          // Drain moves tasks away, as Docker does (pause only stops new ones).
          t.desiredState = 'shutdown';
          t.message = 'node is drained: task rescheduled';
          this.touch(t);
        } else if (live(t) && !wanted.get(s.id)!.has(slotOf(t))) {
          t.desiredState = 'shutdown';
          this.touch(t);
        } else if (live(t) && t.specVersion < s.specVersion && toUpdate.get(s.id)!.has(slotOf(t)) && updateOrder(s) === 'stop-first') {
          t.desiredState = 'shutdown';
          t.message = 'updating';
          this.touch(t);
        }
        // Addresses go back once the task is done with them, or is stopped where nothing runs it.
        if (t.networks.length && (isTerminal(t.state) || (t.desiredState !== 'running' && (isDown(t.nodeId) || !t.nodeId)))) {
          this.release(t);
          this.touch(t);
        }
      }

      const all = this.store.listTasks();
      const load: Load = { service: new Map(), total: new Map(), hostPorts: new Map(), reserved: new Map() };
      for (const t of all) if (live(t) && t.nodeId) load.total.set(t.nodeId, (load.total.get(t.nodeId) ?? 0) + 1);
      // Reservations are held by tasks not yet ended, as host ports are.
      const reserves = (t: TaskRecord, nodeId: string): void => {
        const r = t.spec.reservations;
        if (!r) return;
        const u = load.reserved!.get(nodeId) ?? { nanoCpus: 0, memoryBytes: 0 };
        load.reserved!.set(nodeId, { nanoCpus: u.nanoCpus + (r.nanoCpus ?? 0), memoryBytes: u.memoryBytes + (r.memoryBytes ?? 0) });
      };
      for (const t of all) if (t.nodeId && !isTerminal(t.state)) reserves(t, t.nodeId);
      // A host-mode port stays taken until its task has ended, not just been told to stop.
      const holds = (t: TaskRecord, nodeId: string): void => {
        for (const p of hostPortKeys(t.spec)) load.hostPorts!.set(nodeId, (load.hostPorts!.get(nodeId) ?? new Set()).add(p));
      };
      for (const t of all) if (t.nodeId && !isTerminal(t.state)) holds(t, t.nodeId);
      const ingress = this.store.listNetworks().find((n) => n.ingress);
      this.ensureIngressEndpoints([...nodes.values()], ingress?.id);

      for (const s of services.values()) {
        const mine = all.filter((t) => t.serviceId === s.id);
        load.service = new Map();
        for (const t of mine) if (live(t) && t.nodeId) load.service.set(t.nodeId, (load.service.get(t.nodeId) ?? 0) + 1);
        const bySlot = new Map<string, TaskRecord[]>();
        for (const t of mine) bySlot.set(slotOf(t), [...(bySlot.get(slotOf(t)) ?? []), t]);

        if (isJob(s.spec)) wakeAt = Math.min(wakeAt, this.reconcileJob(s, mine, bySlot, wanted.get(s.id)!, live, isDown));
        else
          for (const slot of wanted.get(s.id)!) {
            const history = (bySlot.get(slot) ?? []).sort(byAge);
            const alive = history.filter(live);
            const newest = alive[alive.length - 1];
            // start-first: the new task starts next to the old one, which stops once it runs.
            if (alive.length === 1 && newest!.specVersion < s.specVersion && toUpdate.get(s.id)!.has(slot) && updateOrder(s) === 'start-first') {
              const t = isGlobal(s.spec) ? this.newTask(s, 0, slot) : this.newTask(s, Number(slot), '');
              this.store.putTask(t);
              history.push(t);
              continue;
            }
            const replacing = alive.length > 1 && newest!.specVersion === s.specVersion && newest!.state !== 'running' && updateOrder(s) === 'start-first';
            // Two live tasks in one slot (a node came back, or a start-first update is done): keep the newest.
            if (!replacing)
              for (const extra of alive.slice(0, -1)) {
                extra.desiredState = 'shutdown';
                extra.message = extra.specVersion < s.specVersion ? 'updating' : extra.message;
                this.touch(extra);
              }
            if (alive.length) continue;
            const last = history[history.length - 1];
            if (last && !isTerminal(last.state) && last.desiredState !== 'running' && !isDown(last.nodeId)) {
              continue; // the old task is still stopping: start its replacement after it
            }
            // The restart policy applies to a task of the current spec; an older one's slot is an update.
            if (last && (last.state === 'complete' || last.state === 'failed') && last.desiredState === 'running' && last.specVersion === s.specVersion) {
              const r = s.spec.restart;
              if (r.condition === 'none' || (r.condition === 'on-failure' && last.state === 'complete')) continue;
              const attempts = history.filter((x) => x.specVersion === s.specVersion && (x.state === 'failed' || x.state === 'complete')).length;
              if (r.maxAttempts > 0 && attempts >= r.maxAttempts) continue;
              const due = Date.parse(last.timestamp) + r.delayMs;
              if (due > Date.now()) {
                wakeAt = Math.min(wakeAt, due);
                continue;
              }
            }
            // The finished tasks it replaces are no longer wanted running (docker service ps: Shutdown).
            for (const old of history)
              if (isTerminal(old.state) && old.desiredState === 'running') {
                old.desiredState = 'shutdown';
                this.touch(old);
              }
            const t = isGlobal(s.spec) ? this.newTask(s, 0, slot) : this.newTask(s, Number(slot), '');
            this.store.putTask(t);
            history.push(t);
            bySlot.set(slot, history);
          }

        // Schedule what has no node yet (a global task has its node from the start).
        for (const t of this.store.listTasks({ serviceId: s.id })) {
          if ((t.state !== 'new' && t.state !== 'pending') || t.desiredState !== 'running') continue;
          const p = t.nodeId
            ? { nodeId: t.nodeId }
            : place(
                [...nodes.values()],
                s.spec.constraints.map(parseConstraint),
                load,
                hostPortKeys(s.spec),
                s.spec.maxReplicasPerNode ?? 0,
                s.spec.spread ?? [],
                s.spec.reservations ?? {},
              );
          if ('error' in p) {
            if (t.err !== p.error || t.state !== 'pending') {
              t.state = 'pending';
              t.message = 'pending task scheduling';
              t.err = p.error;
              t.timestamp = now();
              this.touch(t);
            }
            continue;
          }
          try {
            // A task of a service with ingress ports is on the ingress network too, first (as Docker's).
            const targets = [...(ingress && hasIngressPorts(s) ? [ingress.id] : []), ...s.spec.networks.map((n) => n.target)];
            t.networks = targets.map((target) => {
              const { attachment } = this.m.attachTx(target, p.nodeId, t.id);
              return { networkId: attachment.networkId, attachmentId: attachment.id, ip: attachment.ip, mac: attachment.mac };
            });
          } catch (e) {
            this.release(t);
            t.state = 'pending';
            t.err = `allocation failed: ${(e as Error).message}`;
            t.timestamp = now();
            this.touch(t);
            continue;
          }
          t.nodeId = p.nodeId;
          t.state = 'assigned';
          t.message = 'assigned';
          t.err = '';
          t.timestamp = now();
          this.touch(t);
          load.service.set(p.nodeId, (load.service.get(p.nodeId) ?? 0) + 1);
          load.total.set(p.nodeId, (load.total.get(p.nodeId) ?? 0) + 1);
          holds(t, p.nodeId);
          reserves(t, p.nodeId);
        }

        // History: at most the cluster's limit (Docker's default 5) of finished tasks per slot.
        for (const [, history] of bySlot) {
          const done = history.filter((t) => isTerminal(t.state) && t.desiredState !== 'running').sort(byAge);
          for (const old of done.slice(0, Math.max(0, done.length - (this.store.getCluster()?.taskHistory ?? TASK_HISTORY)))) {
            this.release(old);
            this.store.deleteTask(old.id);
          }
        }
      }
      // A network removed while tasks still held addresses on it goes with the last of them.
      for (const n of this.store.listNetworks())
        if (n.pendingDelete && this.store.listAttachments({ networkId: n.id }).length === 0) this.store.deleteNetwork(n.id);
    });
    if (wakeAt !== Infinity) this.wake(wakeAt);
  }

  /**
   * The slots of `s` to replace in this pass. A batch starts only when the previous one is done
   * and the delay has passed; a new task failing pauses the update (FailureAction pause).
   */
  private nextBatch(
    s: ServiceRecord,
    slotTasks: Map<string, TaskRecord[]>,
    wanted: Set<string>,
    inFlight: number,
    live: (t: TaskRecord) => boolean,
  ): { slots: Set<string>; wakeAt?: number; changed: boolean } {
    const none = { slots: new Set<string>(), changed: false };
    const st = s.updateStatus;
    if (!st || (st.state !== 'updating' && st.state !== 'rollback_started')) return none;
    const rollingBack = st.state === 'rollback_started';
    const p = rollingBack ? DEFAULT_UPDATE_POLICY : (s.spec.update ?? DEFAULT_UPDATE_POLICY);
    const slots = [...wanted].map((k) => [k, slotTasks.get(`${s.id}/${k}`) ?? []] as const);
    const save = (): { slots: Set<string>; changed: boolean } => {
      s.version = this.store.bump();
      this.store.putService(s);
      return { slots: new Set(), changed: true };
    };
    const failed = slots.flatMap(([, l]) => l).find((t) => t.specVersion === s.specVersion && (t.state === 'failed' || t.state === 'rejected'));
    if (failed && p.failureAction === 'rollback' && s.previousSpec) {
      this.rollbackTx(s, `update rolled back due to failure or early termination of task ${failed.id}`);
      return { slots: new Set(), changed: true };
    }
    if (failed && p.failureAction !== 'continue') {
      st.state = rollingBack ? 'rollback_paused' : 'paused';
      st.message = `${rollingBack ? 'rollback' : 'update'} paused due to failure or early termination of task ${failed.id}`;
      return save();
    }
    const old = slots.filter(([, l]) => l.some((t) => live(t) && t.specVersion < s.specVersion)).map(([k]) => k);
    if (!old.length && inFlight === 0) {
      st.state = rollingBack ? 'rollback_completed' : 'completed';
      st.completedAt = now();
      st.message = rollingBack ? 'rollback completed' : 'update completed';
      delete st.inBatch;
      return save();
    }
    if (inFlight > 0) return none;
    const t = Date.now();
    if (st.inBatch) {
      // The batch in flight just finished: the delay starts now.
      st.inBatch = false;
      st.batchDoneAt = t;
      save();
    }
    const due = (st.batchDoneAt ?? 0) + p.delayMs;
    if (due > t) return { slots: new Set(), wakeAt: due, changed: false };
    const n = p.parallelism === 0 ? old.length : p.parallelism;
    st.inBatch = true;
    save();
    return { slots: new Set(old.slice(0, n)), changed: true };
  }

  private newTask(s: ServiceRecord, slot: number, nodeId: string): TaskRecord {
    const t = now();
    return {
      id: newId(),
      serviceId: s.id,
      serviceName: s.spec.name,
      slot,
      nodeId,
      specVersion: s.specVersion,
      spec: s.spec,
      desiredState: 'running',
      state: 'new',
      message: 'created',
      err: '',
      timestamp: t,
      containerId: '',
      exitCode: null,
      networks: [],
      version: this.store.bump(),
      createdAt: t,
      updatedAt: t,
    };
  }
}

/** A task's place in its service: its slot number, or for a global service its node. */
export function slotOf(t: TaskRecord): string {
  return t.slot === 0 ? t.nodeId : String(t.slot);
}

/** The slots a service wants filled: 1..replicas, or every node a global task may run on. */
function wantedSlots(s: ServiceRecord, nodes: NodeRecord[]): Set<string> {
  if (!isGlobal(s.spec)) return new Set(Array.from({ length: s.spec.replicas }, (_, i) => String(i + 1)));
  const cs = s.spec.constraints.map(parseConstraint);
  // 'unknown' (after a leader change, until the node's session is back) keeps its task.
  return new Set(nodes.filter((n) => (n.state === 'ready' || n.state === 'unknown') && n.availability === 'active' && matches(n, cs)).map((n) => n.id));
}

function updateOrder(s: ServiceRecord): 'stop-first' | 'start-first' {
  return (s.spec.update ?? DEFAULT_UPDATE_POLICY).order;
}

/** Same task template: replicas, update policy and service labels do not change what runs. */
/** The host-mode ports a task of this spec holds on its node, as "tcp/8081". */
function hostPortKeys(spec: ServiceSpec): string[] {
  return (spec.ports ?? []).filter((p) => p.publishMode === 'host').map((p) => `${p.protocol}/${p.publishedPort}`);
}

function hasIngressPorts(s: ServiceRecord): boolean {
  return (s.ports ?? []).some((p) => p.publishMode === 'ingress');
}

/** The service holds exactly one VIP on each of its networks (vip mode), or none (dnsrr). */
function vipsMatch(s: ServiceRecord): boolean {
  const want = (s.spec.endpointMode ?? 'vip') === 'vip' ? s.spec.networks.map((n) => n.target).sort() : [];
  return JSON.stringify((s.vips ?? []).map((v) => v.networkId).sort()) === JSON.stringify(want);
}

function sameTask(a: ServiceSpec, b: ServiceSpec): boolean {
  // The endpoint mode is the service's, not its tasks' (Docker redeploys nothing for it either).
  const strip = (x: ServiceSpec): string => JSON.stringify({ ...x, replicas: 0, update: undefined, labels: {}, endpointMode: undefined });
  return strip(a) === strip(b);
}

/** Oldest first. Two tasks made in the same millisecond (an update right after a create) are told apart by their spec. */
function byAge(a: TaskRecord, b: TaskRecord): number {
  return a.createdAt.localeCompare(b.createdAt) || a.specVersion - b.specVersion;
}
