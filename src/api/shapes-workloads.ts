// Docker JSON for services, tasks, containers, images and execs, and the service spec parser.
import {
  DEFAULT_UPDATE_POLICY,
  isJob,
  isTerminal,
  type ConfigRecord,
  type ConfigRef,
  type ServiceMode,
  type PortConfig,
  type ServiceRecord,
  type ServiceSpec,
  type TaskRecord,
  type UpdatePolicy,
} from '../cluster/manager/types.js';
import type { ContainerRecord } from '../runtime/containers.js';
import { validateHealthcheck, type HealthcheckSpec } from '../runtime/health.js';
import { checkMounts, type MountSpec, type VolumeRecord } from '../runtime/volumes.js';
import type { ImageRecord } from '../runtime/images.js';
import { humanDuration } from '../core/human.js';
import { BadRequest, isUnset, obj, optArr, optBool, optInt, optStr, optStrArr, optStrMap, refuseUnknown } from './check.js';

const NS_PER_MS = 1e6;

/** Docker's ServiceSpec → ours. Wrong types are 400s naming the field. */
/** Docker's RollbackConfig when none is given, which is what we run. */
const DEFAULT_ROLLBACK = { Parallelism: 1, Delay: 0, FailureAction: 'pause', Monitor: 5e9, MaxFailureRatio: 0, Order: 'stop-first' };

/** Refuses every field of a ServiceSpec that vxswarm does not carry out (see refuseUnknown). */
function auditServiceSpec(b: Record<string, unknown>): void {
  refuseUnknown(b, '', ['Name', 'Labels', 'TaskTemplate', 'Mode', 'UpdateConfig', 'RollbackConfig', 'EndpointSpec', 'Networks']);
  const mode = obj(b.Mode, 'Mode');
  refuseUnknown(mode, 'Mode', ['Replicated', 'Global', 'ReplicatedJob', 'GlobalJob']);
  refuseUnknown(obj(mode.Replicated, 'Replicated'), 'Mode.Replicated', ['Replicas']);
  refuseUnknown(obj(mode.ReplicatedJob, 'ReplicatedJob'), 'Mode.ReplicatedJob', ['MaxConcurrent', 'TotalCompletions']);
  const rb = obj(b.RollbackConfig, 'RollbackConfig');
  for (const [k, v] of Object.entries(rb))
    if (!isUnset(v) && (DEFAULT_ROLLBACK as Record<string, unknown>)[k] !== v)
      throw new BadRequest(`RollbackConfig.${k} is not supported yet: rollbacks run with Docker's defaults (one at a time, stop-first, pause on failure)`);
  refuseUnknown(obj(b.UpdateConfig, 'UpdateConfig'), 'UpdateConfig', ['Parallelism', 'Delay', 'FailureAction', 'Order'], { Monitor: 5e9 });
  const ep = obj(b.EndpointSpec, 'EndpointSpec');
  const epMode = optStr(ep, 'Mode');
  if (epMode && epMode !== 'vip' && epMode !== 'dnsrr') throw new BadRequest(`invalid endpoint mode "${epMode}": vip or dnsrr`);
  refuseUnknown(ep, 'EndpointSpec', ['Mode', 'Ports']);
  const tt = obj(b.TaskTemplate, 'TaskTemplate');
  refuseUnknown(tt, 'TaskTemplate', ['ContainerSpec', 'Resources', 'RestartPolicy', 'Placement', 'Networks', 'ForceUpdate'], { Runtime: 'container' });
  refuseUnknown(
    obj(tt.ContainerSpec, 'ContainerSpec'),
    'TaskTemplate.ContainerSpec',
    ['Image', 'Command', 'Args', 'Env', 'Dir', 'User', 'Hostname', 'Labels', 'StopGracePeriod', 'Healthcheck', 'Mounts', 'Configs'],
    {
      Isolation: 'default',
    },
  );
  const res = obj(tt.Resources, 'Resources');
  refuseUnknown(res, 'TaskTemplate.Resources', ['Limits', 'Reservations']);
  refuseUnknown(obj(res.Reservations, 'Reservations'), 'TaskTemplate.Resources.Reservations', ['NanoCPUs', 'MemoryBytes']);
  refuseUnknown(obj(res.Limits, 'Limits'), 'TaskTemplate.Resources.Limits', ['MemoryBytes', 'NanoCPUs']);
  refuseUnknown(obj(tt.RestartPolicy, 'RestartPolicy'), 'TaskTemplate.RestartPolicy', ['Condition', 'Delay', 'MaxAttempts']);
  const pl = obj(tt.Placement, 'Placement');
  refuseUnknown(pl, 'TaskTemplate.Placement', ['Constraints', 'Platforms', 'MaxReplicas', 'Preferences']);
  for (const [i, x] of (optArr(pl, 'Preferences') ?? []).entries()) {
    const p = obj(x, `Placement.Preferences[${i}]`);
    refuseUnknown(p, `TaskTemplate.Placement.Preferences[${i}]`, ['Spread']);
    refuseUnknown(obj(p.Spread, 'Spread'), `TaskTemplate.Placement.Preferences[${i}].Spread`, ['SpreadDescriptor']);
  }
  // Every node here is linux on this machine's architecture; another platform would never be placed.
  for (const [i, x] of (optArr(pl, 'Platforms') ?? []).entries()) {
    const p = obj(x, `Placement.Platforms[${i}]`);
    const os = optStr(p, 'OS') ?? 'linux';
    const arch = optStr(p, 'Architecture') ?? 'amd64';
    if (os !== 'linux' || !['amd64', 'x86_64', ''].includes(arch))
      throw new BadRequest(`TaskTemplate.Placement.Platforms[${i}]: no node of this swarm runs ${os}/${arch}`);
  }
  for (const [i, n] of (optArr(tt, 'Networks') ?? optArr(b, 'Networks') ?? []).entries())
    refuseUnknown(obj(n, `Networks[${i}]`), `TaskTemplate.Networks[${i}]`, ['Target', 'Aliases']);
}

/** EndpointSpec.Ports → ours: ports 1-65535 (a published port of 0 or none is assigned), tcp or udp, ingress or host. */
function parsePorts(ep: Record<string, unknown>): PortConfig[] {
  return (optArr(ep, 'Ports') ?? []).map((x, i) => {
    const where = `EndpointSpec.Ports[${i}]`;
    const p = obj(x, where);
    refuseUnknown(p, where, ['Name', 'Protocol', 'TargetPort', 'PublishedPort', 'PublishMode']);
    const protocol = optStr(p, 'Protocol') || 'tcp';
    if (protocol === 'sctp') throw new BadRequest(`${where}: sctp ports are not supported yet (tcp or udp)`);
    if (protocol !== 'tcp' && protocol !== 'udp') throw new BadRequest(`${where}: invalid protocol "${protocol}": tcp or udp`);
    const mode = optStr(p, 'PublishMode') || 'ingress';
    if (mode !== 'ingress' && mode !== 'host') throw new BadRequest(`${where}: invalid publish mode "${mode}": ingress or host`);
    const target = optInt(p, 'TargetPort');
    if (target === undefined || target < 1 || target > 65535) throw new BadRequest(`${where}: invalid target port ${target ?? 0}: must be 1-65535`);
    const published = optInt(p, 'PublishedPort') ?? 0;
    if (published < 0 || published > 65535) throw new BadRequest(`${where}: invalid published port ${published}: must be 1-65535 (or 0 to have one assigned)`);
    const name = optStr(p, 'Name');
    return { ...(name ? { name } : {}), protocol, targetPort: target, publishedPort: published, publishMode: mode };
  });
}

export function portJson(p: PortConfig): Record<string, unknown> {
  return {
    ...(p.name ? { Name: p.name } : {}),
    Protocol: p.protocol,
    TargetPort: p.targetPort,
    ...(p.publishedPort ? { PublishedPort: p.publishedPort } : {}),
    PublishMode: p.publishMode,
  };
}

/** ContainerSpec.Configs as the CLI sends them (--config source=x,target=/p,mode=0440); a config runtime target is refused. */
export function parseConfigRefs(raw: unknown[]): ConfigRef[] {
  return raw.map((x, i) => {
    const where = `TaskTemplate.ContainerSpec.Configs[${i}]`;
    const o = obj(x, where);
    refuseUnknown(o, where, ['File', 'ConfigID', 'ConfigName']);
    const f = obj(o.File, `${where}.File`);
    if (isUnset(o.File)) throw new BadRequest(`${where}: only a File target is supported (Runtime configs are not)`);
    refuseUnknown(f, `${where}.File`, ['Name', 'UID', 'GID', 'Mode']);
    const mode = optInt(f, 'Mode') ?? 0o444;
    if (mode < 0 || mode > 0o7777) throw new BadRequest(`${where}.File.Mode ${mode} is not a file mode`);
    const configId = optStr(o, 'ConfigID') ?? '';
    const configName = optStr(o, 'ConfigName') ?? '';
    if (!configId && !configName) throw new BadRequest(`${where}: ConfigID or ConfigName is required`);
    return { configId, configName, target: optStr(f, 'Name') ?? '', uid: optStr(f, 'UID') || '0', gid: optStr(f, 'GID') || '0', mode };
  });
}

/** A config as docker config inspect shows it. */
export function configJson(c: ConfigRecord): Record<string, unknown> {
  return { ID: c.id, Version: { Index: c.version }, CreatedAt: c.createdAt, UpdatedAt: c.updatedAt, Spec: { Name: c.name, Labels: c.labels, Data: c.data } };
}

/** Docker's Mount objects (a service's, or a container's --mount): what is not carried out is refused by name. */
export function parseMounts(raw: unknown[], where: string): MountSpec[] {
  const out = raw.map((x, i): MountSpec => {
    const w = `${where}[${i}]`;
    const m = obj(x, w);
    refuseUnknown(m, w, ['Type', 'Source', 'Target', 'ReadOnly', 'VolumeOptions', 'TmpfsOptions', 'BindOptions'], { Consistency: 'default' });
    const type = optStr(m, 'Type') || 'volume';
    if (type !== 'volume' && type !== 'bind' && type !== 'tmpfs')
      throw new BadRequest(`invalid mount config: mount type unknown: ${type} (volume, bind or tmpfs)`);
    const vo = obj(m.VolumeOptions, `${w}.VolumeOptions`);
    refuseUnknown(vo, `${w}.VolumeOptions`, ['NoCopy', 'Labels', 'DriverConfig']);
    const dc = obj(vo.DriverConfig, `${w}.VolumeOptions.DriverConfig`);
    refuseUnknown(dc, `${w}.VolumeOptions.DriverConfig`, ['Name']);
    const driver = optStr(dc, 'Name');
    if (driver && driver !== 'local') throw new BadRequest(`${w}.VolumeOptions.DriverConfig.Name: volume driver "${driver}" is not supported yet: only local`);
    const to = obj(m.TmpfsOptions, `${w}.TmpfsOptions`);
    refuseUnknown(to, `${w}.TmpfsOptions`, ['SizeBytes', 'Mode']);
    refuseUnknown(obj(m.BindOptions, `${w}.BindOptions`), `${w}.BindOptions`, [], { Propagation: 'rprivate' });
    if (type !== 'volume' && Object.keys(vo).some((k) => !isUnset(vo[k])))
      throw new BadRequest(`invalid mount config for type "${type}": VolumeOptions must not be specified`);
    if (type !== 'tmpfs' && Object.keys(to).some((k) => !isUnset(to[k])))
      throw new BadRequest(`invalid mount config for type "${type}": TmpfsOptions must not be specified`);
    const size = optInt(to, 'SizeBytes') ?? 0;
    const mode = optInt(to, 'Mode') ?? 0;
    if (size < 0) throw new BadRequest(`${w}.TmpfsOptions.SizeBytes must not be negative`);
    const labels = optStrMap(vo, 'Labels');
    return {
      type,
      source: optStr(m, 'Source') ?? '',
      target: optStr(m, 'Target') ?? '',
      readOnly: optBool(m, 'ReadOnly') ?? false,
      ...(labels && Object.keys(labels).length ? { volumeLabels: labels } : {}),
      ...(optBool(vo, 'NoCopy') ? { noCopy: true } : {}),
      ...(size ? { tmpfsSize: size } : {}),
      ...(mode ? { tmpfsMode: mode } : {}),
    };
  });
  try {
    checkMounts(out);
  } catch (e) {
    throw new BadRequest(e instanceof Error ? e.message : String(e));
  }
  return out;
}

/** Docker's Mount JSON, unset fields left out. */
export function mountJson(m: MountSpec): Record<string, unknown> {
  const vo = { ...(m.noCopy ? { NoCopy: true } : {}), ...(m.volumeLabels ? { Labels: m.volumeLabels } : {}) };
  const to = { ...(m.tmpfsSize ? { SizeBytes: m.tmpfsSize } : {}), ...(m.tmpfsMode ? { Mode: m.tmpfsMode } : {}) };
  return {
    Type: m.type,
    ...(m.source ? { Source: m.source } : {}),
    Target: m.target,
    ...(m.readOnly ? { ReadOnly: true } : {}),
    ...(Object.keys(vo).length ? { VolumeOptions: vo } : {}),
    ...(Object.keys(to).length ? { TmpfsOptions: to } : {}),
  };
}

/** Docker's Healthcheck object (a service's or a container's); undefined when none is given. */
export function parseHealthcheck(raw: unknown, where: string): HealthcheckSpec | undefined {
  if (raw === undefined || raw === null) return undefined;
  const o = obj(raw, where);
  refuseUnknown(o, where, ['Test', 'Interval', 'Timeout', 'StartPeriod', 'StartInterval', 'Retries']);
  const h: HealthcheckSpec = {
    test: optStrArr(o, 'Test') ?? [],
    interval: optInt(o, 'Interval') ?? 0,
    timeout: optInt(o, 'Timeout') ?? 0,
    startPeriod: optInt(o, 'StartPeriod') ?? 0,
    startInterval: optInt(o, 'StartInterval') ?? 0,
    retries: optInt(o, 'Retries') ?? 0,
  };
  try {
    validateHealthcheck(h);
  } catch (e) {
    throw new BadRequest(e instanceof Error ? e.message : String(e));
  }
  return h;
}

/** Docker's Healthcheck JSON: zero fields left out, as Go's omitempty does. */
export function healthcheckJson(h: HealthcheckSpec): Record<string, unknown> {
  return {
    Test: h.test,
    ...(h.interval ? { Interval: h.interval } : {}),
    ...(h.timeout ? { Timeout: h.timeout } : {}),
    ...(h.startPeriod ? { StartPeriod: h.startPeriod } : {}),
    ...(h.startInterval ? { StartInterval: h.startInterval } : {}),
    ...(h.retries ? { Retries: h.retries } : {}),
  };
}

export function parseServiceSpec(raw: unknown): ServiceSpec {
  const b = obj(raw, 'service spec');
  auditServiceSpec(b);
  const tt = obj(b.TaskTemplate, 'TaskTemplate');
  const cs = obj(tt.ContainerSpec, 'ContainerSpec');
  const mode = obj(b.Mode, 'Mode');
  const given = (['Replicated', 'Global', 'ReplicatedJob', 'GlobalJob'] as const).filter((k) => mode[k] !== undefined && mode[k] !== null);
  if (given.length > 1) throw new BadRequest(`a service has one mode, not ${given.join(' and ')}`);
  const kind: ServiceMode = ({ Replicated: 'replicated', Global: 'global', ReplicatedJob: 'replicated-job', GlobalJob: 'global-job' } as const)[
    given[0] ?? 'Replicated'
  ];
  const unsigned = (o: Record<string, unknown>, k: string): number | undefined => {
    const v = o[k];
    if (v !== undefined && v !== null && (typeof v !== 'number' || !Number.isInteger(v) || v < 0))
      throw new BadRequest(`json: ${k} must be an unsigned integer`);
    return (v as number | undefined) ?? undefined;
  };
  const job = obj(mode.ReplicatedJob, 'ReplicatedJob');
  // Docker's defaults: one at a time; as many completions as run at once.
  const maxConcurrent = unsigned(job, 'MaxConcurrent') || 1;
  const replicas =
    kind === 'replicated'
      ? (unsigned(obj(mode.Replicated, 'Replicated'), 'Replicas') ?? 1)
      : kind === 'replicated-job'
        ? (unsigned(job, 'TotalCompletions') ?? maxConcurrent)
        : 0;
  const res = obj(tt.Resources, 'Resources');
  const limits = obj(res.Limits, 'Limits');
  const rp = obj(tt.RestartPolicy, 'RestartPolicy');
  // A job's task is never started again once complete: by default only a failure restarts it.
  const cond = optStr(rp, 'Condition') || (kind.endsWith('-job') ? 'on-failure' : 'any');
  if (!['none', 'on-failure', 'any'].includes(cond)) throw new BadRequest(`invalid RestartPolicy.Condition "${cond}": none, on-failure or any`);
  const placement = obj(tt.Placement, 'Placement');
  const nets = optArr(tt, 'Networks') ?? optArr(b, 'Networks') ?? [];
  const image = optStr(cs, 'Image');
  if (!image) throw new BadRequest('ContainerSpec: image reference must be provided');
  const nsToMs = (v: number | undefined, dflt: number): number => (v === undefined ? dflt : Math.round(v / NS_PER_MS));
  const uc = obj(b.UpdateConfig, 'UpdateConfig');
  const parallelism = optInt(uc, 'Parallelism') ?? DEFAULT_UPDATE_POLICY.parallelism;
  if (parallelism < 0) throw new BadRequest('UpdateConfig.Parallelism must not be negative');
  const order = optStr(uc, 'Order') || DEFAULT_UPDATE_POLICY.order;
  if (order !== 'stop-first' && order !== 'start-first') throw new BadRequest(`invalid UpdateConfig.Order "${order}": stop-first or start-first`);
  const failureAction = optStr(uc, 'FailureAction') || DEFAULT_UPDATE_POLICY.failureAction;
  if (failureAction !== 'pause' && failureAction !== 'continue' && failureAction !== 'rollback')
    throw new BadRequest(`invalid UpdateConfig.FailureAction "${failureAction}": pause, continue or rollback`);
  const updateDelay = optInt(uc, 'Delay') ?? 0;
  if (updateDelay < 0) throw new BadRequest('UpdateConfig.Delay must not be negative');
  const memory = optInt(limits, 'MemoryBytes') ?? 0;
  if (memory < 0) throw new BadRequest('MemoryBytes must not be negative');
  const resv = obj(res.Reservations, 'Reservations');
  const reserveCpus = optInt(resv, 'NanoCPUs') ?? 0;
  const reserveMemory = optInt(resv, 'MemoryBytes') ?? 0;
  if (reserveCpus < 0 || reserveMemory < 0) throw new BadRequest('Resources.Reservations must not be negative');
  const nanoCpus = optInt(limits, 'NanoCPUs') ?? 0;
  if (nanoCpus < 0) throw new BadRequest('NanoCPUs must not be negative');
  if (nanoCpus > 0 && nanoCpus < 1e7) throw new BadRequest(`invalid NanoCPUs ${nanoCpus}: the smallest CPU limit is 0.01 CPU (10000000)`);
  const spread = (optArr(placement, 'Preferences') ?? []).map((x, i) => {
    const d = optStr(obj(obj(x, 'preference').Spread, 'Spread'), 'SpreadDescriptor');
    if (!d) throw new BadRequest(`Placement.Preferences[${i}]: a spread preference needs a SpreadDescriptor (e.g. node.labels.zone)`);
    return d;
  });
  const maxReplicas = optInt(placement, 'MaxReplicas') ?? 0;
  if (maxReplicas < 0) throw new BadRequest('Placement.MaxReplicas must not be negative');
  const ports = parsePorts(obj(b.EndpointSpec, 'EndpointSpec'));
  const healthcheck = parseHealthcheck(cs.Healthcheck, 'TaskTemplate.ContainerSpec.Healthcheck');
  const mounts = parseMounts(optArr(cs, 'Mounts') ?? [], 'TaskTemplate.ContainerSpec.Mounts');
  const configs = parseConfigRefs(optArr(cs, 'Configs') ?? []);
  return {
    name: optStr(b, 'Name') ?? '',
    labels: optStrMap(b, 'Labels') ?? {},
    image,
    command: optStrArr(cs, 'Command') ?? [],
    args: optStrArr(cs, 'Args') ?? [],
    env: optStrArr(cs, 'Env') ?? [],
    workingDir: optStr(cs, 'Dir') ?? '',
    user: optStr(cs, 'User') ?? '',
    hostname: optStr(cs, 'Hostname') ?? '',
    networks: nets.map((n, i) => {
      const o = obj(n, `Networks[${i}]`);
      const target = optStr(o, 'Target');
      if (!target) throw new BadRequest(`Networks[${i}].Target is required`);
      return { target, aliases: optStrArr(o, 'Aliases') ?? [] };
    }),
    mode: kind,
    replicas,
    ...(kind === 'replicated-job' ? { maxConcurrent } : {}),
    constraints: optStrArr(placement, 'Constraints') ?? [],
    restart: {
      condition: cond as ServiceSpec['restart']['condition'],
      delayMs: nsToMs(optInt(rp, 'Delay'), 5000),
      maxAttempts: optInt(rp, 'MaxAttempts') ?? 0,
    },
    memoryLimit: memory,
    ...(nanoCpus ? { nanoCpus } : {}),
    ...(reserveCpus || reserveMemory
      ? { reservations: { ...(reserveCpus ? { nanoCpus: reserveCpus } : {}), ...(reserveMemory ? { memoryBytes: reserveMemory } : {}) } }
      : {}),
    ...(maxReplicas ? { maxReplicasPerNode: maxReplicas } : {}),
    ...(spread.length ? { spread } : {}),
    stopGraceMs: nsToMs(optInt(cs, 'StopGracePeriod'), 10_000),
    ...(healthcheck ? { healthcheck } : {}),
    ...(mounts.length ? { mounts } : {}),
    ...(configs.length ? { configs } : {}),
    update: { parallelism, delayMs: nsToMs(updateDelay, 0), order, failureAction },
    containerLabels: optStrMap(cs, 'Labels') ?? {},
    ...(optInt(tt, 'ForceUpdate') ? { forceUpdate: optInt(tt, 'ForceUpdate') } : {}),
    ...(optStr(obj(b.EndpointSpec, 'EndpointSpec'), 'Mode') === 'dnsrr' ? { endpointMode: 'dnsrr' as const } : {}),
    ...(ports.length ? { ports } : {}),
  };
}

function taskTemplateJson(s: ServiceSpec): Record<string, unknown> {
  const cs: Record<string, unknown> = { Image: s.image, Init: false, StopGracePeriod: s.stopGraceMs * NS_PER_MS, DNSConfig: {}, Isolation: 'default' };
  if (s.command.length) cs.Command = s.command;
  if (s.args.length) cs.Args = s.args;
  if (s.env.length) cs.Env = s.env;
  if (s.workingDir) cs.Dir = s.workingDir;
  if (s.user) cs.User = s.user;
  if (s.hostname) cs.Hostname = s.hostname;
  if (Object.keys(s.containerLabels).length) cs.Labels = s.containerLabels;
  if (s.healthcheck) cs.Healthcheck = healthcheckJson(s.healthcheck);
  if (s.mounts?.length) cs.Mounts = s.mounts.map(mountJson);
  if (s.configs?.length)
    cs.Configs = s.configs.map((c) => ({ File: { Name: c.target, UID: c.uid, GID: c.gid, Mode: c.mode }, ConfigID: c.configId, ConfigName: c.configName }));
  return {
    ContainerSpec: cs,
    Resources: {
      Limits: { ...(s.nanoCpus ? { NanoCPUs: s.nanoCpus } : {}), ...(s.memoryLimit ? { MemoryBytes: s.memoryLimit } : {}) },
      Reservations: {
        ...(s.reservations?.nanoCpus ? { NanoCPUs: s.reservations.nanoCpus } : {}),
        ...(s.reservations?.memoryBytes ? { MemoryBytes: s.reservations.memoryBytes } : {}),
      },
    },
    RestartPolicy: { Condition: s.restart.condition, Delay: s.restart.delayMs * NS_PER_MS, MaxAttempts: s.restart.maxAttempts },
    Placement: {
      ...(s.constraints.length ? { Constraints: s.constraints } : {}),
      ...(s.spread?.length ? { Preferences: s.spread.map((d) => ({ Spread: { SpreadDescriptor: d } })) } : {}),
      ...(s.maxReplicasPerNode ? { MaxReplicas: s.maxReplicasPerNode } : {}),
    },
    Networks: s.networks.map((n) => ({ Target: n.target, ...(n.aliases.length ? { Aliases: n.aliases } : {}) })),
    ForceUpdate: s.forceUpdate ?? 0,
    Runtime: 'container',
  };
}

function updateConfigJson(p: UpdatePolicy = DEFAULT_UPDATE_POLICY): Record<string, unknown> {
  return { Parallelism: p.parallelism, Delay: p.delayMs * NS_PER_MS, FailureAction: p.failureAction, Monitor: 5e9, MaxFailureRatio: 0, Order: p.order };
}

function modeJson(s: ServiceSpec): Record<string, unknown> {
  switch (s.mode) {
    case 'global':
      return { Global: {} };
    case 'global-job':
      return { GlobalJob: {} };
    case 'replicated-job':
      return { ReplicatedJob: { MaxConcurrent: s.maxConcurrent ?? 1, TotalCompletions: s.replicas } };
    default:
      return { Replicated: { Replicas: s.replicas } };
  }
}

export function serviceSpecJson(s: ServiceSpec): Record<string, unknown> {
  return {
    Name: s.name,
    Labels: s.labels,
    TaskTemplate: taskTemplateJson(s),
    Mode: modeJson(s),
    UpdateConfig: updateConfigJson(s.update),
    RollbackConfig: updateConfigJson(),
    EndpointSpec: { Mode: s.endpointMode ?? 'vip', ...(s.ports?.length ? { Ports: s.ports.map(portJson) } : {}) },
  };
}

export function serviceJson(
  s: ServiceRecord,
  prefixOf: (networkId: string, ip: string) => number,
  tasks?: TaskRecord[],
  nodesUp?: Set<string>,
  desired?: number,
): Record<string, unknown> {
  const out: Record<string, unknown> = {
    ID: s.id,
    Version: { Index: s.version },
    CreatedAt: s.createdAt,
    UpdatedAt: s.updatedAt,
    Spec: serviceSpecJson(s.spec),
    Endpoint: {
      Spec: { Mode: s.spec.endpointMode ?? 'vip', ...(s.spec.ports?.length ? { Ports: s.spec.ports.map(portJson) } : {}) },
      ...(s.ports?.length ? { Ports: s.ports.map(portJson) } : {}),
      ...(s.vips?.length ? { VirtualIPs: s.vips.map((v) => ({ NetworkID: v.networkId, Addr: `${v.ip}/${prefixOf(v.networkId, v.ip)}` })) } : {}),
    },
  };
  if (s.previousSpec) out.PreviousSpec = serviceSpecJson(s.previousSpec);
  const u = s.updateStatus;
  if (u) out.UpdateStatus = { State: u.state, StartedAt: u.startedAt, ...(u.completedAt ? { CompletedAt: u.completedAt } : {}), Message: u.message };
  if (isJob(s.spec)) out.JobStatus = { JobIteration: { Index: s.specVersion }, LastExecution: s.lastExecution ?? s.createdAt };
  if (tasks) {
    // A job counts its current iteration's tasks only.
    const mine = tasks.filter((t) => t.serviceId === s.id && (!isJob(s.spec) || t.specVersion === s.specVersion));
    out.ServiceStatus = {
      RunningTasks: mine.filter((t) => t.state === 'running' && t.desiredState === 'running' && (!nodesUp || nodesUp.has(t.nodeId))).length,
      DesiredTasks: desired ?? s.spec.replicas,
      CompletedTasks: mine.filter((t) => t.state === 'complete').length,
    };
  }
  return out;
}

export function taskJson(t: TaskRecord, networkName: (id: string) => string, prefixOf: (networkId: string, ip: string) => number): Record<string, unknown> {
  const cstatus: Record<string, unknown> = { ContainerID: t.containerId, PID: 0, ExitCode: t.exitCode ?? 0 };
  const hostPorts = t.nodeId && !isTerminal(t.state) ? (t.spec.ports ?? []).filter((p) => p.publishMode === 'host') : [];
  return {
    ID: t.id,
    Version: { Index: t.version },
    CreatedAt: t.createdAt,
    UpdatedAt: t.updatedAt,
    Labels: {},
    Spec: taskTemplateJson(t.spec),
    ServiceID: t.serviceId,
    ...(t.slot ? { Slot: t.slot } : {}),
    ...(t.nodeId ? { NodeID: t.nodeId } : {}),
    Status: {
      Timestamp: t.timestamp,
      State: t.state,
      Message: t.message,
      ...(t.err ? { Err: t.err } : {}),
      ...(t.containerId ? { ContainerStatus: cstatus } : {}),
      // A host-mode port is the task's own, on its node (docker service ps shows it).
      PortStatus: hostPorts.length ? { Ports: hostPorts.map(portJson) } : {},
    },
    // A job's task is wanted complete, not running (docker service ps: Complete).
    DesiredState: isJob(t.spec) && t.desiredState === 'running' ? 'complete' : t.desiredState,
    NetworksAttachments: t.networks.map((n) => ({
      Network: { ID: n.networkId, Spec: { Name: networkName(n.networkId), DriverConfiguration: { Name: 'overlay' }, Scope: 'swarm' } },
      Addresses: [`${n.ip}/${prefixOf(n.networkId, n.ip)}`],
    })),
  };
}

const HEALTH_SUFFIX = { starting: ' (health: starting)', healthy: ' (healthy)', unhealthy: ' (unhealthy)' } as const;

function statusText(c: ContainerRecord, nowMs = Date.now()): string {
  if (c.status === 'running') return `Up ${humanDuration(nowMs - Date.parse(c.startedAt))}${c.health ? HEALTH_SUFFIX[c.health.status] : ''}`;
  if (c.status === 'exited') return `Exited (${c.exitCode}) ${humanDuration(nowMs - Date.parse(c.finishedAt))} ago`;
  return c.status === 'created' ? 'Created' : 'Dead';
}

function endpointSettings(c: ContainerRecord): Record<string, unknown> {
  return Object.fromEntries(
    c.networks.map((n) => [
      n.networkName,
      {
        IPAMConfig: { IPv4Address: n.ip },
        Links: null,
        Aliases: n.aliases.length ? n.aliases : null,
        MacAddress: n.mac,
        DriverOpts: null,
        GwPriority: 0,
        NetworkID: n.networkId,
        EndpointID: n.endpointId,
        Gateway: n.gateway,
        IPAddress: n.ip,
        IPPrefixLen: n.prefixLen,
        IPv6Gateway: '',
        GlobalIPv6Address: '',
        GlobalIPv6PrefixLen: 0,
        DNSNames: [c.name, c.id.slice(0, 12), ...n.aliases],
      },
    ]),
  );
}

export function containerSummaryJson(c: ContainerRecord): Record<string, unknown> {
  return {
    Id: c.id,
    Names: [`/${c.name}`],
    Image: c.image,
    ImageID: c.imageId,
    Command: c.args.join(' '),
    Created: Math.floor(Date.parse(c.created) / 1000),
    Ports: [],
    Labels: c.labels,
    State: c.status,
    Status: statusText(c),
    HostConfig: { NetworkMode: 'default' },
    NetworkSettings: { Networks: endpointSettings(c) },
    Mounts: containerMountsJson(c),
  };
}

export function containerJson(c: ContainerRecord, dir: string, execIds: string[]): Record<string, unknown> {
  return {
    Id: c.id,
    Created: c.created,
    Path: c.args[0] ?? '',
    Args: c.args.slice(1),
    State: {
      Status: c.status,
      Running: c.status === 'running',
      Paused: false,
      Restarting: false,
      OOMKilled: false,
      Dead: c.status === 'dead',
      Pid: c.pid,
      ExitCode: c.exitCode,
      Error: c.error,
      StartedAt: c.startedAt,
      FinishedAt: c.finishedAt,
      ...(c.health
        ? {
            Health: {
              Status: c.health.status,
              FailingStreak: c.health.failingStreak,
              Log: c.health.log.map((r) => ({ Start: r.start, End: r.end, ExitCode: r.exitCode, Output: r.output })),
            },
          }
        : {}),
    },
    Image: c.imageId,
    ResolvConfPath: `${dir}/resolv.conf`,
    HostnamePath: `${dir}/hostname`,
    HostsPath: `${dir}/hosts`,
    LogPath: `${dir}/container-json.log`,
    Name: `/${c.name}`,
    RestartCount: 0,
    Driver: 'overlay',
    Platform: 'linux',
    MountLabel: '',
    ProcessLabel: '',
    AppArmorProfile: '',
    ExecIDs: execIds.length ? execIds : null,
    HostConfig: {
      NetworkMode: 'default',
      RestartPolicy: { Name: 'no', MaximumRetryCount: 0 },
      LogConfig: { Type: 'json-file', Config: {} },
      Memory: c.memoryLimit,
      NanoCpus: c.nanoCpus ?? 0,
      MemoryReservation: c.memoryReservation ?? 0,
      CapAdd: null,
      CapDrop: null,
      Privileged: false,
      ReadonlyRootfs: false,
      Init: false,
    },
    GraphDriver: { Name: 'overlay', Data: { MergedDir: `${dir}/rootfs`, UpperDir: `${dir}/upper`, WorkDir: `${dir}/work` } },
    Mounts: containerMountsJson(c),
    Config: {
      Hostname: c.hostname,
      Domainname: '',
      User: c.user,
      AttachStdin: false,
      AttachStdout: false,
      AttachStderr: false,
      Tty: false,
      OpenStdin: false,
      StdinOnce: false,
      Env: c.env,
      Cmd: c.args,
      ...(c.healthcheck ? { Healthcheck: healthcheckJson(c.healthcheck) } : {}),
      Image: c.image,
      Volumes: null,
      WorkingDir: c.workingDir,
      Entrypoint: null,
      OnBuild: null,
      Labels: c.labels,
      StopTimeout: c.stopTimeout,
    },
    NetworkSettings: {
      Bridge: '',
      SandboxID: c.netns,
      SandboxKey: `/run/netns/${c.netns}`,
      Ports: {},
      HairpinMode: false,
      LinkLocalIPv6Address: '',
      LinkLocalIPv6PrefixLen: 0,
      SecondaryIPAddresses: null,
      SecondaryIPv6Addresses: null,
      EndpointID: '',
      Gateway: '',
      GlobalIPv6Address: '',
      GlobalIPv6PrefixLen: 0,
      IPAddress: '',
      IPPrefixLen: 0,
      IPv6Gateway: '',
      MacAddress: '',
      Networks: endpointSettings(c),
    },
  };
}

export function imageSummaryJson(i: ImageRecord): Record<string, unknown> {
  return {
    Id: i.id,
    ParentId: '',
    RepoTags: i.repoTags,
    RepoDigests: i.repoDigests,
    Created: Math.floor(Date.parse(i.created) / 1000),
    Size: i.size,
    SharedSize: -1,
    Labels: i.config.Labels ?? {},
    Containers: -1,
  };
}

export function imageJson(i: ImageRecord): Record<string, unknown> {
  return {
    Id: i.id,
    RepoTags: i.repoTags,
    RepoDigests: i.repoDigests,
    Parent: '',
    Comment: '',
    Created: i.created,
    DockerVersion: '',
    Author: '',
    Config: {
      Env: i.config.Env ?? null,
      Cmd: i.config.Cmd ?? null,
      Entrypoint: i.config.Entrypoint ?? null,
      WorkingDir: i.config.WorkingDir ?? '',
      User: i.config.User ?? '',
      Labels: i.config.Labels ?? null,
      ...(i.config.Healthcheck ? { Healthcheck: i.config.Healthcheck } : {}),
    },
    Architecture: i.architecture,
    Os: i.os,
    Size: i.size,
    GraphDriver: { Name: 'overlay', Data: null },
    RootFS: { Type: 'layers', Layers: i.diffIds },
    Metadata: { LastTagTime: '0001-01-01T00:00:00Z' },
  };
}

/** Docker's Volume JSON (local driver, scope local). */
export function volumeJson(v: VolumeRecord, mountpoint: string): Record<string, unknown> {
  return { CreatedAt: v.createdAt, Driver: v.driver, Labels: v.labels, Mountpoint: mountpoint, Name: v.name, Options: null, Scope: 'local' };
}

/** A container's mounts as inspect and ps show them. */
export function containerMountsJson(c: ContainerRecord): Record<string, unknown>[] {
  return (c.mounts ?? []).map((m) => ({
    Type: m.type,
    ...(m.name ? { Name: m.name, Driver: 'local' } : {}),
    Source: m.source,
    Destination: m.destination,
    Mode: m.type === 'volume' ? 'z' : '',
    RW: !m.readOnly,
    Propagation: m.type === 'bind' ? 'rprivate' : '',
  }));
}
