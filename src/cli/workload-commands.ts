// docker's service, ps, inspect, exec, logs and image commands, against our Engine API.
import fs from 'node:fs';
import type { Command } from 'commander';
import { VxError } from '../core/errors.js';
import { humanDuration } from '../core/human.js';
import type { ApiClient } from './client.js';
import { StdcopyReader, hijack } from './hijack.js';
import { collect, filterFlags, inspectOut, out } from './output.js';
import { apiFrom } from './swarm-commands.js';
import { formatList } from './template.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** "10s", "1m30s", "500ms" → nanoseconds, as Go's time.ParseDuration. */
export function parseDuration(s: string): number {
  const units: Record<string, number> = { ns: 1, us: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
  let total = 0;
  let rest = s.trim();
  if (!rest) throw new VxError(`invalid duration "${s}"`, 400);
  while (rest) {
    const m = /^(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)/.exec(rest);
    if (!m) throw new VxError(`invalid duration "${s}"`, 400);
    total += Number(m[1]) * units[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return Math.round(total);
}

/** "512m", "1g", "1048576" → bytes. */
export function parseBytes(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(s.trim());
  if (!m) throw new VxError(`invalid size "${s}"`, 400);
  const mult: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };
  return Math.round(Number(m[1]) * mult[m[2]!.toLowerCase()]!);
}

/**
 * docker's --publish: "8080:80[/udp]", "80" (a port assigned), or "mode=host,target=80,published=8081,protocol=udp".
 */
export function parsePublish(v: string): Json {
  if (v.includes('=')) {
    const kv = Object.fromEntries(v.split(',').map((p) => p.split('=').map((x) => x.trim()) as [string, string]));
    for (const k of Object.keys(kv))
      if (!['mode', 'target', 'published', 'protocol'].includes(k))
        throw new VxError(`invalid publish option "${k}": mode, target, published or protocol`, 400);
    if (!kv.target) throw new VxError(`invalid publish "${v}": target is required`, 400);
    return {
      Protocol: kv.protocol ?? 'tcp',
      TargetPort: Number(kv.target),
      ...(kv.published ? { PublishedPort: Number(kv.published) } : {}),
      PublishMode: kv.mode ?? 'ingress',
    };
  }
  const m = /^(?:(\d+):)?(\d+)(?:\/(tcp|udp|sctp))?$/.exec(v.trim());
  if (!m) throw new VxError(`invalid publish "${v}": [published:]target[/protocol]`, 400);
  return { Protocol: m[3] ?? 'tcp', TargetPort: Number(m[2]), ...(m[1] ? { PublishedPort: Number(m[1]) } : {}), PublishMode: 'ingress' };
}

/** service ls's PORTS: the ingress ports, as docker prints them. */
function portsColumn(ports: Json[] | undefined): string {
  return (ports ?? [])
    .filter((p) => p.PublishMode === 'ingress')
    .map((p) => `*:${p.PublishedPort}->${p.TargetPort}/${p.Protocol}`)
    .join(', ');
}

const ago = (ts: string): string => `${humanDuration(Date.now() - Date.parse(ts))} ago`;

const cap = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);

async function findService(api: ApiClient, ref: string): Promise<Json> {
  const f = (k: string): string => JSON.stringify({ [k]: { [ref]: true } });
  const byId = await api.get<Json[]>('/services', { filters: f('id') });
  const byName = await api.get<Json[]>('/services', { filters: f('name') });
  const s = byId.find((x) => x.ID === ref) ?? byName.find((x) => x.Spec.Name === ref) ?? byId[0];
  if (!s) throw new VxError(`no such service: ${ref}`, 404);
  return s;
}

/** Waits until every slot has a running task of the current spec, printing progress as docker does. */
async function converge(api: ApiClient, id: string): Promise<void> {
  let last = '';
  for (let i = 0; i < 600; i++) {
    // DesiredTasks: the replicas, or for a global service the nodes it should run on.
    const [svc] = await api.get<Json[]>('/services', { status: true, filters: JSON.stringify({ id: { [id]: true } }) });
    const want = svc?.ServiceStatus?.DesiredTasks ?? 0;
    const tasks = await api.get<Json[]>('/tasks', {
      filters: JSON.stringify({ service: { [id]: true }, '_up-to-date': { true: true }, 'desired-state': { running: true } }),
    });
    const running = tasks.filter((t) => t.Status.State === 'running').length;
    const errs = tasks.filter((t) => t.Status.Err).map((t) => `${t.Slot ?? t.NodeID}/${want}: ${t.Status.Err}`);
    const line = `overall progress: ${running} out of ${want} tasks\n${errs.join('\n')}${errs.length ? '\n' : ''}`;
    if (line !== last) out(line);
    last = line;
    if (running === want) {
      out(`verify: Service ${id} converged \n`);
      return;
    }
    await sleep(200);
  }
  throw new VxError(`service ${id} did not converge in 2 minutes`, 500);
}

/** --update-* flags over an existing UpdateConfig (Docker's names and units). */
function updateConfigFrom(o: Json, base: Json): Json {
  return {
    ...base,
    ...(o.updateParallelism !== undefined ? { Parallelism: Number(o.updateParallelism) } : {}),
    ...(o.updateDelay !== undefined ? { Delay: parseDuration(o.updateDelay) } : {}),
    ...(o.updateOrder !== undefined ? { Order: o.updateOrder } : {}),
    ...(o.updateFailureAction !== undefined ? { FailureAction: o.updateFailureAction } : {}),
  };
}

function updateFlags(c: Command): Command {
  return c
    .option('--update-parallelism <n>', 'maximum number of tasks updated simultaneously (0 to update all at once)')
    .option('--update-delay <d>', 'delay between updates (ns|us|ms|s|m|h)')
    .option('--update-order <order>', 'update order (start-first|stop-first)')
    .option('--update-failure-action <action>', 'action on update failure (pause|continue|rollback)');
}

/** docker's --mount: "type=volume,source=data,target=/data,readonly,volume-label=k=v,tmpfs-size=…". */
export function parseMount(spec: string): Json {
  const m: Json = { Type: 'volume' };
  for (const part of spec.split(',')) {
    const i = part.indexOf('=');
    const k = (i < 0 ? part : part.slice(0, i)).trim().toLowerCase();
    const v = i < 0 ? '' : part.slice(i + 1);
    if (k === 'type') m.Type = v;
    else if (k === 'source' || k === 'src') m.Source = v;
    else if (k === 'target' || k === 'dst' || k === 'destination') m.Target = v;
    else if (k === 'readonly' || k === 'ro') m.ReadOnly = v === '' || v === 'true' || v === '1';
    else if (k === 'volume-nocopy') m.VolumeOptions = { ...(m.VolumeOptions ?? {}), NoCopy: v === '' || v === 'true' };
    else if (k === 'volume-label') {
      const j = v.indexOf('=');
      m.VolumeOptions = {
        ...(m.VolumeOptions ?? {}),
        Labels: { ...(m.VolumeOptions?.Labels ?? {}), [j < 0 ? v : v.slice(0, j)]: j < 0 ? '' : v.slice(j + 1) },
      };
    } else if (k === 'tmpfs-size') m.TmpfsOptions = { ...(m.TmpfsOptions ?? {}), SizeBytes: parseBytes(v) };
    else if (k === 'tmpfs-mode') m.TmpfsOptions = { ...(m.TmpfsOptions ?? {}), Mode: parseInt(v, 8) };
    else throw new VxError(`invalid field '${k}' must be a key=value pair`, 400);
  }
  return m;
}

/** Docker's --health-* flags and --no-healthcheck as a Healthcheck object (undefined: none given). */
function healthcheckFrom(o: Json): Json | undefined {
  if (o.healthcheck === false) {
    if (o.healthCmd) throw new Error('--no-healthcheck conflicts with --health-* options');
    return { Test: ['NONE'] };
  }
  const h: Json = {
    ...(o.healthCmd ? { Test: ['CMD-SHELL', o.healthCmd] } : {}),
    ...(o.healthInterval ? { Interval: parseDuration(o.healthInterval) } : {}),
    ...(o.healthTimeout ? { Timeout: parseDuration(o.healthTimeout) } : {}),
    ...(o.healthStartPeriod ? { StartPeriod: parseDuration(o.healthStartPeriod) } : {}),
    ...(o.healthRetries !== undefined ? { Retries: Number(o.healthRetries) } : {}),
  };
  return Object.keys(h).length ? h : undefined;
}

function healthFlags(c: Command): Command {
  return c
    .option('--health-cmd <cmd>', 'command to run to check health')
    .option('--health-interval <d>', 'time between running the check (ms|s|m|h)')
    .option('--health-timeout <d>', 'maximum time to allow one check to run (ms|s|m|h)')
    .option('--health-start-period <d>', 'start period for the container to initialize before counting retries (ms|s|m|h)')
    .option('--health-retries <n>', 'consecutive failures needed to report unhealthy')
    .option('--no-healthcheck', 'disable any container-specified HEALTHCHECK');
}

/** docker service ls's REPLICAS: running/desired, and a job's progress. */
function replicasColumn(s: Json): string {
  const st = s.ServiceStatus ?? {};
  const [running, desired, done] = [st.RunningTasks ?? 0, st.DesiredTasks ?? 0, st.CompletedTasks ?? 0];
  if (s.Spec.Mode?.ReplicatedJob) return `${running}/${desired} (${done}/${s.Spec.Mode.ReplicatedJob.TotalCompletions} completed)`;
  if (s.Spec.Mode?.GlobalJob) return `${running}/${desired} (${done}/${desired + done} completed)`;
  return `${running}/${desired}`;
}

/** docker's --mode, --replicas and --max-concurrent as a Mode object. */
function modeFrom(o: Json): Json {
  const replicas = o.replicas === undefined ? undefined : Number(o.replicas);
  if (o.mode === 'global') return { Global: {} };
  if (o.mode === 'global-job') return { GlobalJob: {} };
  if (o.mode === 'replicated-job') {
    const concurrent = o.maxConcurrent === undefined ? replicas : Number(o.maxConcurrent);
    return {
      ReplicatedJob: { ...(concurrent !== undefined ? { MaxConcurrent: concurrent } : {}), ...(replicas !== undefined ? { TotalCompletions: replicas } : {}) },
    };
  }
  return { Replicated: { Replicas: replicas ?? 1 } };
}

function serviceSpecFrom(image: string, args: string[], o: Json, networkIds: string[]): Json {
  const cs: Json = { Image: image, Init: false, DNSConfig: {} };
  if (args.length) cs.Args = args;
  if (o.env?.length) cs.Env = o.env;
  if (o.workdir) cs.Dir = o.workdir;
  if (o.user) cs.User = o.user;
  if (o.hostname) cs.Hostname = o.hostname;
  if (o.entrypoint) cs.Command = [o.entrypoint];
  if (o.stopGracePeriod) cs.StopGracePeriod = parseDuration(o.stopGracePeriod);
  const hc = healthcheckFrom(o);
  if (hc) cs.Healthcheck = hc;
  if (o.mount?.length) cs.Mounts = (o.mount as string[]).map(parseMount);
  const tt: Json = { ContainerSpec: cs, Resources: { Limits: {}, Reservations: {} }, Placement: {}, Networks: networkIds.map((t) => ({ Target: t })) };
  if (o.limitMemory) tt.Resources.Limits.MemoryBytes = parseBytes(o.limitMemory);
  if (o.limitCpu) tt.Resources.Limits.NanoCPUs = Math.round(Number(o.limitCpu) * 1e9);
  if (o.reserveMemory) tt.Resources.Reservations.MemoryBytes = parseBytes(o.reserveMemory);
  if (o.reserveCpu) tt.Resources.Reservations.NanoCPUs = Math.round(Number(o.reserveCpu) * 1e9);
  if (o.replicasMaxPerNode) tt.Placement.MaxReplicas = Number(o.replicasMaxPerNode);
  if (o.constraint?.length) tt.Placement.Constraints = o.constraint;
  if (o.restartCondition || o.restartDelay || o.restartMaxAttempts !== undefined) {
    tt.RestartPolicy = {
      ...(o.restartCondition ? { Condition: o.restartCondition } : {}),
      ...(o.restartDelay ? { Delay: parseDuration(o.restartDelay) } : {}),
      ...(o.restartMaxAttempts !== undefined ? { MaxAttempts: Number(o.restartMaxAttempts) } : {}),
    };
  }
  return {
    Name: o.name ?? '',
    Labels: {},
    TaskTemplate: tt,
    Mode: modeFrom(o),
    UpdateConfig: updateConfigFrom(o, {}),
    EndpointSpec: { Mode: o.endpointMode ?? 'vip', ...(o.publish?.length ? { Ports: (o.publish as string[]).map(parsePublish) } : {}) },
  };
}

function addVolumeCommands(program: Command): void {
  const volume = program.command('volume').description('manage volumes (the local driver, on this node)');
  volume
    .command('create')
    .description('create a volume')
    .argument('[name]')
    .option('-d, --driver <name>', 'volume driver name', 'local')
    .option('--label <k=v>', 'set metadata for a volume (repeatable)', collect)
    .action(async (name: string | undefined, o: Json, cmd: Command) => {
      const labels = Object.fromEntries(((o.label as string[] | undefined) ?? []).map((l) => [l.split('=')[0]!, l.split('=').slice(1).join('=')]));
      const v = await apiFrom(cmd).post<Json>('/volumes/create', { Name: name ?? '', Driver: o.driver, Labels: labels });
      out(`${v.Name}\n`);
    });
  volume
    .command('ls')
    .alias('list')
    .description('list volumes')
    .option('-q, --quiet', 'only display volume names')
    .option('-f, --filter <k=v>', 'provide filter values (dangling, name, label, driver)', collect)
    .option('--format <tpl>', 'format output using a Go template')
    .action(async (o: Json, cmd: Command) => {
      const r = await apiFrom(cmd).get<{ Volumes: Json[] }>('/volumes', { filters: JSON.stringify(filterFlags(o.filter)) });
      if (o.quiet) return out(r.Volumes.map((v) => `${v.Name}\n`).join(''));
      out(formatList(o.format ?? 'table {{.Driver}}\t{{.Name}}', r.Volumes, { Driver: 'DRIVER', Name: 'VOLUME NAME' }));
    });
  volume
    .command('inspect')
    .description('display detailed information on one or more volumes')
    .argument('<volume...>')
    .option('-f, --format <tpl>', 'format output using a Go template')
    .action(async (names: string[], o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      inspectOut(await Promise.all(names.map((n) => api.get<Json>(`/volumes/${encodeURIComponent(n)}`))), o.format);
    });
  volume
    .command('rm')
    .alias('remove')
    .description('remove one or more volumes')
    .argument('<volume...>')
    .option('-f, --force', 'do not fail on a volume that does not exist')
    .action(async (names: string[], o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      for (const n of names) {
        await api.del(`/volumes/${encodeURIComponent(n)}${o.force ? '?force=1' : ''}`);
        out(`${n}\n`);
      }
    });
  volume
    .command('prune')
    .description('remove unused volumes (anonymous ones, or all with -a)')
    .option('-a, --all', 'remove all unused volumes, not just anonymous ones')
    .option('-f, --force', 'do not prompt for confirmation')
    .option('--filter <k=v>', 'provide filter values (label=…, label!=…)', collect)
    .action(async (o: Json, cmd: Command) => {
      if (!o.force) throw new VxError('WARNING! This will remove unused volumes: run with -f to confirm', 400);
      const filters = filterFlags(o.filter);
      if (o.all) filters.all = ['true'];
      const r = await apiFrom(cmd).post<{ VolumesDeleted: string[] }>(`/volumes/prune?filters=${encodeURIComponent(JSON.stringify(filters))}`, {});
      if (r.VolumesDeleted.length) out(`Deleted Volumes:\n${r.VolumesDeleted.join('\n')}\n`);
    });
}

export function addWorkloadCommands(program: Command): void {
  addVolumeCommands(program);
  // Options after the image belong to its command (sh -c …), as with docker.
  const service = program.command('service').description('manage swarm services').enablePositionalOptions();
  healthFlags(updateFlags(service.command('create')))
    .description('create a new service')
    .argument('<image>')
    .argument('[command...]')
    .passThroughOptions()
    .option('--name <name>', 'service name')
    .option('--mode <mode>', 'service mode (replicated, global, replicated-job, global-job)', 'replicated')
    .option('--max-concurrent <n>', 'number of job tasks to run concurrently (default equal to --replicas)')
    .option('--replicas <n>', 'number of tasks')
    .option('--network <net>', 'network attachments (repeatable)', collect)
    .option('--endpoint-mode <mode>', 'endpoint mode (vip or dnsrr)', 'vip')
    .option('-p, --publish <port>', 'publish a port as a node port (repeatable)', collect)
    .option('-e, --env <k=v>', 'environment variables (repeatable)', collect)
    .option('--constraint <expr>', 'placement constraints (repeatable)', collect)
    .option('--restart-condition <c>', 'restart when condition is met (none, on-failure, any)')
    .option('--restart-delay <d>', 'delay between restart attempts (ns|us|ms|s|m|h)')
    .option('--restart-max-attempts <n>', 'maximum number of restarts before giving up')
    .option('--limit-memory <bytes>', 'limit memory')
    .option('--limit-cpu <cpus>', 'limit CPUs (e.g. 0.5)')
    .option('--reserve-memory <bytes>', 'reserve memory (the scheduler places the task only where it is free)')
    .option('--reserve-cpu <cpus>', 'reserve CPUs')
    .option('--mount <mount>', 'attach a filesystem mount to the service (repeatable)', collect)
    .option('--replicas-max-per-node <n>', 'maximum number of tasks per node (0 = unlimited)')
    .option('--stop-grace-period <d>', 'time to wait before force killing a container')
    .option('-w, --workdir <dir>', 'working directory inside the container')
    .option('-u, --user <uid[:gid]>', 'user')
    .option('--hostname <name>', 'container hostname')
    .option('--entrypoint <cmd>', 'overwrite the default entrypoint of the image')
    .option('-d, --detach', 'exit immediately instead of waiting for the service to converge')
    .action(async (image: string, args: string[], o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      if (!['replicated', 'global', 'replicated-job', 'global-job'].includes(o.mode))
        throw new VxError(`invalid mode "${o.mode}": replicated, global, replicated-job or global-job`, 400);
      if (o.mode.startsWith('global') && o.replicas !== undefined) throw new VxError('replicas can only be used with replicated or replicated-job mode', 400);
      if (o.maxConcurrent !== undefined && o.mode !== 'replicated-job') throw new VxError('max-concurrent can only be used with replicated-job mode', 400);
      const nets: string[] = [];
      for (const n of (o.network as string[] | undefined) ?? []) nets.push((await api.get<Json>(`/networks/${encodeURIComponent(n)}`, { scope: 'swarm' })).Id);
      const r = await api.request<Json>('POST', '/services/create', serviceSpecFrom(image, args, o, nets));
      out(`${r.data.ID}\n`);
      if (!o.detach) await converge(api, r.data.ID);
    });
  service
    .command('ls')
    .alias('list')
    .description('list services')
    .option('-q, --quiet', 'only display IDs')
    .option('--format <tpl>', 'format output using a Go template')
    .action(async (o: Json, cmd: Command) => {
      const list = await apiFrom(cmd).get<Json[]>('/services', { status: true });
      if (o.quiet) return out(list.map((s) => `${s.ID}\n`).join(''));
      const rows = list.map((s) => ({
        ID: s.ID.slice(0, 12),
        Name: s.Spec.Name,
        Mode: s.Spec.Mode?.Global ? 'global' : s.Spec.Mode?.ReplicatedJob ? 'replicated job' : s.Spec.Mode?.GlobalJob ? 'global job' : 'replicated',
        Replicas: replicasColumn(s),
        Image: s.Spec.TaskTemplate.ContainerSpec.Image.replace(/@sha256:.*/, ''),
        Ports: portsColumn(s.Endpoint?.Ports),
      }));
      out(formatList(o.format ?? 'table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}', rows, {}));
    });
  service
    .command('ps')
    .description('list the tasks of one or more services')
    .argument('<service...>')
    .option('-q, --quiet', 'only display task IDs')
    .option('--no-trunc', 'do not truncate output')
    .option('--format <tpl>', 'format output using a Go template')
    .action(async (refs: string[], o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      const nodes = new Map((await api.get<Json[]>('/nodes')).map((n) => [n.ID, n.Description.Hostname]));
      const rows: Json[] = [];
      for (const ref of refs) {
        const s = await findService(api, ref);
        const tasks = await api.get<Json[]>('/tasks', { filters: JSON.stringify({ service: { [s.ID]: true } }) });
        // A replicated task's place is its slot; a global one's is its node.
        const place = (t: Json): string => (t.Slot ? String(t.Slot).padStart(6, '0') : String(t.NodeID ?? ''));
        tasks.sort((a, b) => place(a).localeCompare(place(b)) || Date.parse(b.CreatedAt) - Date.parse(a.CreatedAt));
        let prev = '';
        for (const t of tasks) {
          const first = place(t) !== prev;
          prev = place(t);
          rows.push({
            ID: o.trunc === false ? t.ID : t.ID.slice(0, 12),
            Name: `${first ? '' : ' \\_ '}${s.Spec.Name}.${t.Slot ?? t.NodeID}`,
            Image: t.Spec.ContainerSpec.Image.replace(/@sha256:.*/, ''),
            Node: nodes.get(t.NodeID) ?? '',
            DesiredState: cap(t.DesiredState === 'remove' ? 'shutdown' : t.DesiredState),
            CurrentState: `${cap(t.Status.State)} ${ago(t.Status.Timestamp)}`,
            Error: t.Status.Err
              ? o.trunc === false
                ? `"${t.Status.Err}"`
                : `"${t.Status.Err.length > 28 ? `${t.Status.Err.slice(0, 27)}…` : t.Status.Err}"`
              : '',
            Ports: ((t.Status.PortStatus?.Ports as Json[] | undefined) ?? []).map((p) => `*:${p.PublishedPort}->${p.TargetPort}/${p.Protocol}`).join(', '),
          });
        }
      }
      if (o.quiet) return out(rows.map((r) => `${r.ID}\n`).join(''));
      out(
        formatList(o.format ?? 'table {{.ID}}\t{{.Name}}\t{{.Image}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}\t{{.Ports}}', rows, {
          DesiredState: 'DESIRED STATE',
          CurrentState: 'CURRENT STATE',
        }),
      );
    });
  service
    .command('inspect')
    .description('display detailed information on one or more services')
    .argument('<service...>')
    .option('-f, --format <tpl>', 'format output using a Go template')
    .action(async (refs: string[], o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      const items: Json[] = [];
      for (const r of refs) items.push(await findService(api, r));
      inspectOut(items, o.format);
    });
  service
    .command('rm')
    .alias('remove')
    .description('remove one or more services')
    .argument('<service...>')
    .action(async (refs: string[], _o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      for (const r of refs) {
        const s = await findService(api, r);
        await api.del(`/services/${s.ID}`);
        out(`${r}\n`);
      }
    });
  /** One service update; `rollback` asks the daemon for the previous spec instead (the spec sent is ignored). */
  const update = async (api: ApiClient, ref: string, change: (spec: Json) => void, detach: boolean, rollback = false): Promise<string> => {
    const s = await findService(api, ref);
    change(s.Spec);
    await api.post(`/services/${s.ID}/update`, s.Spec, { version: s.Version.Index, ...(rollback ? { rollback: 'previous' } : {}) });
    out(`${ref}\n`);
    if (!detach) await converge(api, s.ID);
    return s.ID as string;
  };
  service
    .command('rollback')
    .description("revert changes to a service's configuration")
    .argument('<service>')
    .option('-d, --detach', 'exit immediately instead of waiting for the service to converge')
    .action(async (ref: string, o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      const id = await update(api, ref, () => undefined, true, true);
      out('rollback: manually requested rollback\n');
      if (!o.detach) await converge(api, id);
    });
  service
    .command('scale')
    .description('scale one or more replicated services')
    .argument('<service=replicas...>')
    .option('-d, --detach', 'exit immediately instead of waiting for the service to converge')
    .action(async (pairs: string[], o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      for (const p of pairs) {
        const m = /^(.+)=(\d+)$/.exec(p);
        if (!m) throw new VxError(`invalid scale specifier '${p}': expected <service>=<value>`, 400);
        await update(
          api,
          m[1]!,
          (spec) => {
            if (spec.Mode?.Global || spec.Mode?.GlobalJob) throw new VxError(`${m[1]}: scale can only be used with replicated or replicated-job mode`, 400);
            // as docker: a replicated job's scale is its completions
            if (spec.Mode?.ReplicatedJob) spec.Mode.ReplicatedJob.TotalCompletions = Number(m[2]);
            else spec.Mode = { Replicated: { Replicas: Number(m[2]) } };
          },
          !!o.detach,
        );
      }
    });
  updateFlags(service.command('update'))
    .description('update a service')
    .argument('<service>')
    .option('--image <image>', 'service image tag')
    .option('--replicas <n>', 'number of tasks')
    .option('--env-add <k=v>', 'add or update an environment variable', collect)
    .option('--stop-grace-period <d>', 'time to wait before force killing a container')
    .option('--endpoint-mode <mode>', 'endpoint mode (vip or dnsrr)')
    .option('--publish-add <port>', 'add or update a published port (repeatable)', collect)
    .option('--publish-rm <target[/protocol]>', 'remove a published port by its target port (repeatable)', collect)
    .option('--rollback', 'roll back to the previous specification')
    .option('-d, --detach', 'exit immediately instead of waiting for the service to converge')
    .action(async (ref: string, o: Json, cmd: Command) => {
      if (o.rollback) {
        await update(apiFrom(cmd), ref, () => undefined, !!o.detach, true);
        return;
      }
      await update(
        apiFrom(cmd),
        ref,
        (spec) => {
          const cs = spec.TaskTemplate.ContainerSpec;
          if (o.image) cs.Image = o.image;
          if (o.replicas !== undefined) spec.Mode = { Replicated: { Replicas: Number(o.replicas) } };
          if (o.envAdd) cs.Env = [...(cs.Env ?? []).filter((e: string) => !o.envAdd.some((a: string) => a.split('=')[0] === e.split('=')[0])), ...o.envAdd];
          if (o.stopGracePeriod) cs.StopGracePeriod = parseDuration(o.stopGracePeriod);
          if (o.endpointMode) spec.EndpointSpec = { ...(spec.EndpointSpec ?? {}), Mode: o.endpointMode };
          if (o.publishAdd || o.publishRm) {
            const rm = ((o.publishRm as string[] | undefined) ?? []).map((r) => parsePublish(r));
            const add = ((o.publishAdd as string[] | undefined) ?? []).map(parsePublish);
            const same = (a: Json, b: Json): boolean => a.TargetPort === b.TargetPort && a.Protocol === b.Protocol;
            const kept = ((spec.EndpointSpec?.Ports as Json[] | undefined) ?? []).filter((p) => !rm.some((r) => same(p, r)) && !add.some((a) => same(p, a)));
            spec.EndpointSpec = { ...(spec.EndpointSpec ?? {}), Ports: [...kept, ...add] };
          }
          spec.UpdateConfig = updateConfigFrom(o, spec.UpdateConfig ?? {});
        },
        !!o.detach,
      );
    });
  service
    .command('logs')
    .description("fetch the logs of a service (this node's tasks)")
    .argument('<service>')
    .option('-t, --timestamps', 'show timestamps')
    .option('--tail <n>', 'number of lines to show from the end', 'all')
    .action(async (ref: string, o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      const s = await findService(api, ref);
      await streamLogs(api, `/services/${s.ID}/logs`, { stdout: true, stderr: true, timestamps: !!o.timestamps, tail: o.tail });
    });

  program
    .command('ps')
    .description('list containers')
    .option('-a, --all', 'show all containers (default shows just running)')
    .option('-q, --quiet', 'only display container IDs')
    .option('--no-trunc', 'do not truncate output')
    .option('-f, --filter <k=v>', 'filter output (label=…, name=…, status=…)', collect)
    .option('--format <tpl>', 'format output using a Go template')
    .action(async (o: Json, cmd: Command) => {
      const filters = filterFlags(o.filter as string[] | undefined);
      const list = await apiFrom(cmd).get<Json[]>('/containers/json', { all: o.all ? 1 : undefined, filters: JSON.stringify(filters) });
      if (o.quiet) return out(list.map((c) => `${c.Id.slice(0, 12)}\n`).join(''));
      const rows = list.map((c) => {
        const command = o.trunc === false || c.Command.length <= 20 ? c.Command : `${c.Command.slice(0, 19)}…`;
        return {
          ID: o.trunc === false ? c.Id : c.Id.slice(0, 12),
          Image: c.Image,
          Command: `"${command}"`,
          RunningFor: ago(new Date(c.Created * 1000).toISOString()),
          Status: c.Status,
          Ports: '',
          Names: c.Names.map((n: string) => n.replace(/^\//, '')).join(','),
          Networks: Object.keys(c.NetworkSettings.Networks).join(','),
          State: c.State,
        };
      });
      out(
        formatList(o.format ?? 'table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}', rows, {
          ID: 'CONTAINER ID',
          RunningFor: 'CREATED',
        }),
      );
    });
  program
    .command('inspect')
    .description('return low-level information on containers, images or networks')
    .argument('<name...>')
    .option('-f, --format <tpl>', 'format output using a Go template')
    .action(async (refs: string[], o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      const items: Json[] = [];
      for (const r of refs) {
        const e = encodeURIComponent(r);
        let found: Json | undefined;
        for (const p of [`/containers/${e}/json`, `/images/${r}/json`, `/networks/${e}`]) {
          try {
            found = await api.get<Json>(p);
            break;
          } catch (err) {
            if (!(err instanceof VxError) || err.status !== 404) throw err;
          }
        }
        if (!found) throw new VxError(`Error: No such object: ${r}`, 404);
        items.push(found);
      }
      inspectOut(items, o.format);
    });
  program
    .command('exec')
    .description('execute a command in a running container')
    .argument('<container>')
    .argument('<command...>')
    .option('-i, --interactive', 'keep STDIN open')
    .option('-t, --tty', 'allocate a pseudo-TTY')
    .option('-d, --detach', 'run the command in the background')
    .option('-e, --env <k=v>', 'set environment variables', collect)
    .option('-w, --workdir <dir>', 'working directory inside the container')
    .option('-u, --user <uid[:gid]>', 'user')
    .passThroughOptions()
    .action(async (container: string, command: string[], o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      const tty = !!o.tty && !!process.stdout.isTTY;
      const size = tty ? [process.stdout.rows ?? 24, process.stdout.columns ?? 80] : [0, 0];
      const created = await api.request<Json>('POST', `/containers/${encodeURIComponent(container)}/exec`, {
        Cmd: command,
        Tty: tty,
        AttachStdin: !!o.interactive && !o.detach,
        AttachStdout: !o.detach,
        AttachStderr: !o.detach,
        Env: o.env ?? null,
        WorkingDir: o.workdir ?? '',
        User: o.user ?? '',
        ConsoleSize: size,
        Detach: !!o.detach,
      });
      const id = created.data.Id as string;
      if (o.detach) {
        await api.post(`/exec/${id}/start`, { Detach: true, Tty: tty });
        return;
      }
      const stdin = o.interactive ? process.stdin : undefined;
      if (tty && process.stdin.isTTY) process.stdin.setRawMode(true);
      const onResize = (): void => void api.post(`/exec/${id}/resize`, undefined, { h: process.stdout.rows, w: process.stdout.columns }).catch(() => undefined);
      if (tty) process.stdout.on('resize', onResize);
      try {
        await hijack(api.socketPath, `/exec/${id}/start`, { Detach: false, Tty: tty, ConsoleSize: size }, tty, {
          stdin,
          stdout: process.stdout,
          stderr: process.stderr,
        });
      } finally {
        if (tty && process.stdin.isTTY) process.stdin.setRawMode(false);
        process.stdout.off('resize', onResize);
        process.stdin.pause();
      }
      const info = await api.get<Json>(`/exec/${id}/json`);
      process.exitCode = info.ExitCode ?? 0;
    });
  program
    .command('logs')
    .description('fetch the logs of a container')
    .argument('<container>')
    .option('-f, --follow', 'follow log output')
    .option('-t, --timestamps', 'show timestamps')
    .option('-n, --tail <n>', 'number of lines to show from the end', 'all')
    .action(async (ref: string, o: Json, cmd: Command) => {
      await streamLogs(apiFrom(cmd), `/containers/${encodeURIComponent(ref)}/logs`, {
        stdout: true,
        stderr: true,
        follow: !!o.follow,
        timestamps: !!o.timestamps,
        tail: o.tail,
      });
    });

  // ---- images ----
  program
    .command('images')
    .description('list images')
    .option('-q, --quiet', 'only show image IDs')
    .option('--format <tpl>', 'format output using a Go template')
    .action(async (o: Json, cmd: Command) => {
      const list = await apiFrom(cmd).get<Json[]>('/images/json');
      const rows = list.flatMap((i) =>
        (i.RepoTags.length ? i.RepoTags : ['<none>:<none>']).map((t: string) => ({
          Repository: t.slice(0, t.lastIndexOf(':')),
          Tag: t.slice(t.lastIndexOf(':') + 1),
          ID: i.Id.slice(7, 19),
          CreatedSince: ago(new Date(i.Created * 1000).toISOString()),
          Size: `${(i.Size / 1e6).toFixed(2)}MB`,
        })),
      );
      if (o.quiet) return out([...new Set(rows.map((r) => r.ID))].map((x) => `${x}\n`).join(''));
      out(formatList(o.format ?? 'table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}', rows, { ID: 'IMAGE ID', CreatedSince: 'CREATED' }));
    });
  program
    .command('load')
    .description('load an image from a tar archive (docker save or OCI layout)')
    .option('-i, --input <file>', 'read from a tar archive file, instead of STDIN')
    .action(async (o: Json, cmd: Command) => {
      const res = await upload(apiFrom(cmd), '/images/load', o.input);
      for (const l of res.split('\n').filter(Boolean)) {
        const j = JSON.parse(l) as Json;
        if (j.error) throw new VxError(j.error, 400);
        if (j.stream) out(j.stream);
      }
    });
  program
    .command('import')
    .description('import the contents from a tarball to create a filesystem image')
    .argument('<file|->')
    .argument('[repository[:tag]]')
    .option('-c, --change <instr>', 'apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, WORKDIR, USER)', collect)
    .action(async (file: string, ref: string | undefined, o: Json, cmd: Command) => {
      const q = new URLSearchParams({ fromSrc: '-' });
      if (ref) {
        const i = ref.lastIndexOf(':');
        const hasTag = i > ref.lastIndexOf('/');
        q.set('repo', hasTag ? ref.slice(0, i) : ref);
        if (hasTag) q.set('tag', ref.slice(i + 1));
      }
      for (const c of (o.change as string[] | undefined) ?? []) q.append('changes', c);
      const res = await upload(apiFrom(cmd), `/images/create?${q}`, file === '-' ? undefined : file);
      out(`${(JSON.parse(res.trim().split('\n').pop()!) as Json).status}\n`);
    });
  program
    .command('pull')
    .description('download an image from a registry')
    .argument('<image>')
    .action(async (image: string, _o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      const at = image.indexOf('@');
      const i = image.lastIndexOf(':');
      const [name, tag] =
        at >= 0 ? [image.slice(0, at), image.slice(at + 1)] : i > image.lastIndexOf('/') ? [image.slice(0, i), image.slice(i + 1)] : [image, 'latest'];
      const r = await api.request<string>('POST', '/images/create', undefined, { fromImage: name, tag });
      const text = typeof r.data === 'string' ? r.data : JSON.stringify(r.data);
      for (const l of text.split('\n').filter(Boolean)) {
        const j = JSON.parse(l) as Json;
        if (j.error) throw new VxError(j.error, 500);
        out(`${j.id ? `${j.id}: ` : ''}${j.status}\n`);
      }
    });
  program
    .command('rmi')
    .description('remove one or more images')
    .argument('<image...>')
    .action(async (refs: string[], _o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      for (const r of refs) {
        const res = (await api.request<Json[]>('DELETE', `/images/${r}`)).data;
        for (const x of res) out(x.Untagged ? `Untagged: ${x.Untagged}\n` : `Deleted: ${x.Deleted}\n`);
      }
    });
}

function upload(api: ApiClient, path: string, file: string | undefined): Promise<string> {
  return api.streamText('POST', path, undefined, file ? fs.createReadStream(file) : process.stdin);
}

async function streamLogs(api: ApiClient, path: string, q: Record<string, string | boolean>): Promise<void> {
  const query = Object.fromEntries(Object.entries(q).map(([k, v]) => [k, typeof v === 'boolean' ? (v ? '1' : '0') : v]));
  const res = await api.stream('GET', path, query);
  const demux = new StdcopyReader({ stdout: process.stdout, stderr: process.stderr });
  for await (const c of res) demux.push(c as Buffer);
}
