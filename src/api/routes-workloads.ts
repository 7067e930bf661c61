// Engine API routes for services, tasks, containers, execs and images.
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { NotFoundError, VxError, errorMessage } from '../core/errors.js';
import { contains, parseCidr, parseIp } from '../core/ipv4.js';
import type { Daemon } from '../daemon/daemon.js';
import type { Orchestrator } from '../cluster/manager/orchestrator.js';
import { taskName, type TaskRecord } from '../cluster/manager/types.js';
import { pullImage } from '../runtime/registry.js';
import { parseRef } from '../runtime/reference.js';
import {
  BadRequest,
  filterValues,
  requiredVersion,
  labelMatch,
  obj,
  optArr,
  optBool,
  optStr,
  optStrArr,
  optStrMap,
  parseFilters,
  qBool,
  refuseUnknown,
} from './check.js';
import type { VolumeRecord } from '../runtime/volumes.js';
import { Execs, frame } from './exec.js';
import type { Router } from './http.js';
import {
  configJson,
  containerJson,
  containerSummaryJson,
  imageJson,
  imageSummaryJson,
  parseServiceSpec,
  serviceJson,
  taskJson,
  volumeJson,
} from './shapes-workloads.js';

/** how often a followed service log asks every node for its new lines */
const FOLLOW_POLL_MS = 500;

export function addWorkloadRoutes(r: Router, d: Daemon): void {
  const orch = (): Orchestrator => d.requireOrchestrator();
  const execs = new Execs(d.runtime);
  /** The prefix length of the network subnet an address is in (Docker writes addresses as CIDRs). */
  const prefixOf = (networkId: string, ip: string): number => {
    const n = d.control?.store.getNetwork(networkId);
    const cfg = n?.ipam.configs.find((x) => contains(parseCidr(x.subnet), parseIp(ip)));
    return cfg ? Number(cfg.subnet.split('/')[1]) : 24;
  };

  // ---- services ----
  r.on('POST', '/services/create', async (c) => {
    const o = orch();
    const spec = parseServiceSpec(await c.body());
    const s = await o.createService(spec);
    return { status: 201, json: { ID: s.id, Warnings: null } };
  });
  // ---- configs ----
  const configSpec = (b: Record<string, unknown>): { name: string; labels: Record<string, string>; data: string } => {
    refuseUnknown(b, '', ['Name', 'Labels', 'Data'], { Templating: null, Driver: null });
    return { name: optStr(b, 'Name') ?? '', labels: optStrMap(b, 'Labels') ?? {}, data: optStr(b, 'Data') ?? '' };
  };
  r.on('GET', '/configs', (c) => {
    const f = parseFilters(c.query.get('filters'), ['id', 'name', 'names', 'label']);
    let list = d.requireManager().listConfigs();
    if (f.id) list = list.filter((x) => f.id!.some((v) => x.id.startsWith(v)));
    if (f.name) list = list.filter((x) => f.name!.some((v) => x.name.startsWith(v)));
    if (f.names) list = list.filter((x) => f.names!.includes(x.name));
    if (f.label) list = list.filter((x) => f.label!.every((l) => labelMatch(x.labels, l)));
    return { json: list.map(configJson) };
  });
  r.on('POST', '/configs/create', async (c) => {
    const cfg = await d.requireManager().createConfig(configSpec(obj(await c.body(), 'config spec')));
    return { status: 201, json: { ID: cfg.id } };
  });
  r.on('GET', '/configs/:id', (c) => ({ json: configJson(d.requireManager().findConfig(c.params[0]!)) }));
  r.on('DELETE', '/configs/:id', async (c) => {
    await d.requireManager().removeConfig(c.params[0]!);
    return { status: 204 };
  });
  r.on('POST', '/configs/:id/update', async (c) => {
    const v = c.query.get('version');
    if (v === null || !/^\d+$/.test(v)) throw new BadRequest(`invalid config version '${v ?? ''}': an update must name the version it read`);
    await d.requireManager().updateConfig(c.params[0]!, Number(v), configSpec(obj(await c.body(), 'config spec')));
    return { status: 200 };
  });
  // Secrets are not built: none exist (so `docker stack rm` and `secret ls` work), and making one
  // is refused, never taken and ignored.
  for (const kind of ['secrets'] as const) {
    r.on('GET', `/${kind}`, (c) => {
      parseFilters(c.query.get('filters'), ['id', 'name', 'names', 'label']);
      orch();
      return { json: [] };
    });
    r.on('POST', `/${kind}/create`, () => {
      throw new BadRequest(`${kind} are not supported yet: vxswarm refuses them rather than ignore them`);
    });
  }
  r.on('GET', '/services', (c) => {
    const o = orch();
    const f = parseFilters(c.query.get('filters'), ['id', 'name', 'label', 'mode']);
    filterValues(f, 'mode', ['replicated', 'global', 'replicated-job', 'global-job']);
    let list = o.listServices();
    if (f.mode) list = list.filter((s) => f.mode!.includes(s.spec.mode ?? 'replicated'));
    if (f.id) list = list.filter((s) => f.id!.some((x) => s.id.startsWith(x)));
    if (f.name) list = list.filter((s) => f.name!.some((x) => s.spec.name.startsWith(x)));
    if (f.label) list = list.filter((s) => f.label!.every((l) => labelMatch(s.spec.labels, l)));
    const withStatus = qBool(c.query, 'status');
    const tasks = withStatus ? o.listTasks() : undefined;
    const up = new Set(
      d
        .requireManager()
        .listNodes()
        .filter((n) => n.state === 'ready')
        .map((n) => n.id),
    );
    return { json: list.map((s) => serviceJson(s, prefixOf, tasks, up, o.desiredTasks(s))) };
  });
  r.on('GET', '/services/:id', (c) => ({ json: serviceJson(orch().findService(c.params[0]!), prefixOf) }));
  r.on('POST', '/services/:id/update', async (c) => {
    const o = orch();
    const v = requiredVersion(c.query, 'service');
    const rollback = c.query.get('rollback');
    if (rollback !== null && rollback !== '' && rollback !== 'previous') throw new BadRequest(`invalid rollback "${rollback}": only "previous"`);
    // A rollback ignores the spec sent along (as Docker's API says).
    if (rollback === 'previous') await o.rollbackService(c.params[0]!, v);
    else await o.updateService(c.params[0]!, v, parseServiceSpec(await c.body()));
    return { json: { Warnings: null } };
  });
  r.on('DELETE', '/services/:id', async (c) => {
    await orch().removeService(c.params[0]!);
    return { status: 200 };
  });
  r.on('GET', '/services/:id/logs', async (c) => {
    const s = orch().findService(c.params[0]!);
    const wantOut = qBool(c.query, 'stdout');
    const wantErr = qBool(c.query, 'stderr');
    if (!wantOut && !wantErr) throw new BadRequest('Bad parameters: you must choose at least one stream');
    const tailRaw = c.query.get('tail') ?? 'all';
    const tail = tailRaw === 'all' || tailRaw === '' ? Infinity : Number(tailRaw);
    // Every node's lines, oldest first; with --follow, the new ones every second until the client goes.
    let lines = (await d.collectServiceLogs(s.id)).filter((l) => (l.stream === 'stdout' ? wantOut : wantErr));
    if (Number.isFinite(tail)) lines = lines.slice(Math.max(0, lines.length - tail));
    const ts = qBool(c.query, 'timestamps');
    // With details (the docker CLI always asks) each line carries the task's IDs and the CLI makes
    // the "name@node |" prefix itself; without, we send the prefix.
    const details = qBool(c.query, 'details');
    c.res.writeHead(200, { 'Content-Type': 'application/vnd.docker.multiplexed-stream' });
    // Lines at the newest time sent so far: the next poll asks from that time and skips these.
    let last = '';
    let atLast = new Set<string>();
    const write = (batch: typeof lines): void => {
      for (const l of batch) {
        const key = `${l.taskId} ${l.stream} ${l.text}`;
        if (l.time < last || (l.time === last && atLast.has(key))) continue;
        if (l.time > last) [last, atLast] = [l.time, new Set()];
        atLast.add(key);
        const head = details
          ? `${ts ? `${l.time} ` : ''}com.docker.swarm.node.id=${l.nodeId},com.docker.swarm.service.id=${l.serviceId},com.docker.swarm.task.id=${l.taskId} `
          : `${l.prefix}${ts ? `${l.time} ` : ''}`;
        c.res.write(frame(l.stream === 'stdout' ? 1 : 2, Buffer.from(`${head}${l.text}`)));
      }
    };
    write(lines);
    if (!qBool(c.query, 'follow')) {
      c.res.end();
      return;
    }
    let gone = false;
    c.req.once('close', () => (gone = true));
    c.res.once('close', () => (gone = true));
    while (!gone) {
      await new Promise((r) => setTimeout(r, FOLLOW_POLL_MS));
      if (gone) break;
      try {
        orch().findService(s.id);
      } catch {
        break; // the service went: so does its log
      }
      write((await d.collectServiceLogs(s.id, last || undefined)).filter((l) => (l.stream === 'stdout' ? wantOut : wantErr)));
    }
    c.res.end();
  });

  // ---- tasks ----
  const netName = (id: string): string => d.control?.store.getNetwork(id)?.name ?? id;
  const toJson = (t: TaskRecord): Record<string, unknown> => taskJson(t, netName, prefixOf);
  r.on('GET', '/tasks', (c) => {
    const o = orch();
    const f = parseFilters(c.query.get('filters'), ['service', 'node', 'desired-state', 'id', 'name', 'label', '_up-to-date']);
    filterValues(f, 'desired-state', ['running', 'shutdown', 'accepted']);
    let list = o.listTasks();
    // A filter value is a name or ID prefix; one that names nothing matches nothing.
    const idOf = (find: (ref: string) => { id: string }, ref: string): string => {
      try {
        return find(ref).id;
      } catch {
        return ref;
      }
    };
    if (f.service) {
      const ids = new Set(f.service.map((x) => idOf((r) => o.findService(r), x)));
      list = list.filter((t) => ids.has(t.serviceId));
    }
    if (f.node) {
      const m = d.requireManager();
      const ids = new Set(f.node.map((x) => (x === 'self' ? d.swarm!.nodeId : idOf((r) => m.findNode(r), x))));
      list = list.filter((t) => ids.has(t.nodeId));
    }
    if (f['desired-state']) list = list.filter((t) => f['desired-state']!.includes(t.desiredState === 'remove' ? 'shutdown' : t.desiredState));
    if (f.id) list = list.filter((t) => f.id!.some((x) => t.id.startsWith(x)));
    if (f.name) list = list.filter((t) => f.name!.some((x) => taskName(t).startsWith(x)));
    // As swarmkit: a task's labels are its service's.
    if (f.label) list = list.filter((t) => f.label!.every((l) => labelMatch(t.spec.labels, l)));
    if (f['_up-to-date']) {
      const versions = new Map(o.listServices().map((s) => [s.id, s.specVersion]));
      list = list.filter((t) => t.specVersion === versions.get(t.serviceId));
    }
    return { json: list.map(toJson) };
  });
  r.on('GET', '/tasks/:id', (c) => ({ json: toJson(orch().findTask(c.params[0]!)) }));

  // ---- containers ----
  r.on('GET', '/containers/json', (c) => {
    const f = parseFilters(c.query.get('filters'), ['label', 'name', 'id', 'status']);
    let list = d.runtime.list();
    if (!qBool(c.query, 'all')) list = list.filter((x) => x.status === 'running');
    if (f.label) list = list.filter((x) => f.label!.every((l) => labelMatch(x.labels, l)));
    if (f.name) list = list.filter((x) => f.name!.some((n) => x.name.includes(n.replace(/^\//, ''))));
    if (f.id) list = list.filter((x) => f.id!.some((n) => x.id.startsWith(n)));
    if (f.status) list = list.filter((x) => f.status!.includes(x.status));
    const limit = Number(c.query.get('limit') ?? '-1');
    if (limit > 0) list = list.slice(0, limit);
    return { json: list.map(containerSummaryJson) };
  });
  r.on('GET', '/containers/:id/json', (c) => {
    const x = d.runtime.get(c.params[0]!);
    return { json: containerJson(x, `${d.runtime.root}/${x.id}`, execs.ofContainer(x.id)) };
  });
  r.on('GET', '/containers/:id/logs', (c) => {
    const x = d.runtime.get(c.params[0]!);
    streamLogs(c.res, c.query, [{ id: x.id, prefix: '' }], d);
  });
  r.on('POST', '/containers/:id/stop', async (c) => {
    const x = d.runtime.get(c.params[0]!);
    if (x.status !== 'running') return { status: 304 };
    const t = c.query.get('t');
    await d.runtime.stop(x.id, t !== null ? Number(t) : undefined);
    return { status: 204 };
  });
  r.on('POST', '/containers/:id/kill', async (c) => {
    await d.runtime.kill(c.params[0]!, c.query.get('signal') || 'KILL');
    return { status: 204 };
  });
  r.on('DELETE', '/containers/:id', async (c) => {
    await d.runtime.remove(c.params[0]!, qBool(c.query, 'force'));
    return { status: 204 };
  });

  // ---- exec ----
  r.on('POST', '/containers/:id/exec', async (c) => {
    const x = d.runtime.get(c.params[0]!);
    if (x.status !== 'running') throw new VxError(`container ${x.id} is not running`, 409);
    const b = obj(await c.body(), 'exec config');
    const cmd = optStrArr(b, 'Cmd') ?? [];
    if (cmd.length === 0) throw new BadRequest('No exec command specified');
    const size = optArr(b, 'ConsoleSize') ?? [0, 0];
    const e = execs.create(x.id, {
      cmd,
      tty: optBool(b, 'Tty') ?? false,
      stdin: optBool(b, 'AttachStdin') ?? false,
      stdout: optBool(b, 'AttachStdout') ?? false,
      stderr: optBool(b, 'AttachStderr') ?? false,
      env: optStrArr(b, 'Env') ?? [],
      workingDir: optStr(b, 'WorkingDir') ?? '',
      user: optStr(b, 'User') ?? '',
      rows: Number(size[0]) || 24,
      cols: Number(size[1]) || 80,
    });
    return { status: 201, json: { Id: e.id } };
  });
  r.on('POST', '/exec/:id/start', async (c) => {
    // Without an upgrade: detached (docker exec -d), or a plain response stream.
    const e = execs.get(c.params[0]!);
    const b = obj(await c.body(), 'exec start');
    const tty = optBool(b, 'Tty') ?? e.tty;
    if (optBool(b, 'Detach')) {
      void execs.run(e, undefined, undefined, tty).catch(() => undefined);
      return { status: 200 };
    }
    c.res.writeHead(200, { 'Content-Type': tty ? 'application/vnd.docker.raw-stream' : 'application/vnd.docker.multiplexed-stream' });
    await execs.run(e, c.res, undefined, tty);
    c.res.end();
  });
  r.onUpgrade('/exec/:id/start', async ({ params, req, socket, head }) => {
    const e = execs.get(params[0]!);
    const b = obj(await readUpgradeBody(req, socket, head), 'exec start');
    const tty = optBool(b, 'Tty') ?? e.tty;
    const size = optArr(b, 'ConsoleSize');
    if (size && Number(size[0]) && Number(size[1])) {
      e.rows = Number(size[0]);
      e.cols = Number(size[1]);
    }
    socket.write(
      `HTTP/1.1 101 UPGRADED\r\nContent-Type: ${tty ? 'application/vnd.docker.raw-stream' : 'application/vnd.docker.multiplexed-stream'}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n`,
    );
    socket.on('error', () => undefined);
    try {
      await execs.run(e, socket, socket, tty);
    } catch (err) {
      socket.write(tty ? Buffer.from(`${errorMessage(err)}\r\n`) : frame(2, Buffer.from(`${errorMessage(err)}\n`)));
    }
    socket.end();
  });
  r.on('POST', '/exec/:id/resize', (c) => {
    const h = Number(c.query.get('h'));
    const w = Number(c.query.get('w'));
    if (!Number.isInteger(h) || !Number.isInteger(w) || h < 0 || w < 0 || h > 65535 || w > 65535) throw new BadRequest('invalid terminal size');
    execs.resize(c.params[0]!, h, w);
    return { status: 200 };
  });
  r.on('GET', '/exec/:id/json', (c) => {
    const e = execs.get(c.params[0]!);
    return {
      json: {
        ID: e.id,
        Running: e.running,
        ExitCode: e.exitCode,
        ProcessConfig: { tty: e.tty, entrypoint: e.cmd[0], arguments: e.cmd.slice(1), privileged: false, user: e.user },
        OpenStdin: e.stdin,
        OpenStderr: e.stderr,
        OpenStdout: e.stdout,
        CanRemove: false,
        ContainerID: e.containerId,
        DetachKeys: '',
        Pid: e.pid,
      },
    };
  });

  // ---- images ----
  r.on('GET', '/images/json', () => ({ json: d.images.list().map(imageSummaryJson) }));
  // docker system df: images and the containers using them; no volumes or build cache exist here.
  r.on('GET', '/system/df', (c) => {
    const types = c.query.getAll('type');
    for (const t of types)
      if (!['container', 'image', 'volume', 'build-cache'].includes(t)) throw new BadRequest(`invalid type "${t}": container, image, volume or build-cache`);
    const want = (t: string): boolean => types.length === 0 || types.includes(t);
    const containers = d.runtime.list();
    const images = d.images.list();
    return {
      json: {
        ...(want('image')
          ? {
              LayersSize: images.reduce((n, i) => n + i.size, 0),
              Images: images.map((i) => ({ ...imageSummaryJson(i), SharedSize: 0, Containers: containers.filter((x) => x.imageId === i.id).length })),
            }
          : {}),
        ...(want('container') ? { Containers: containers.map((x) => ({ ...containerSummaryJson(x), SizeRw: 0, SizeRootFs: 0 })) } : {}),
        ...(want('volume')
          ? {
              Volumes: d.volumes
                .list()
                .map((v) => ({ ...volumeJson(v, d.volumes.dataPath(v.name)), UsageData: { Size: -1, RefCount: d.volumeUsers(v.name).length } })),
            }
          : {}),
        ...(want('build-cache') ? { BuildCache: [] } : {}),
      },
    };
  });
  r.on('GET', /^\/images\/(.+)\/json$/, (c) => ({ json: imageJson(d.images.get(c.params[0]!)) }));

  // ---- volumes: the local driver, on this node ----
  const volumeOut = (v: VolumeRecord): Record<string, unknown> => volumeJson(v, d.volumes.dataPath(v.name));
  r.on('GET', '/volumes', (c) => {
    const f = parseFilters(c.query.get('filters'), ['dangling', 'name', 'label', 'driver']);
    filterValues(f, 'dangling', ['true', 'false', '1', '0']);
    let list = d.volumes.list();
    if (f.name) list = list.filter((v) => f.name!.some((n) => v.name.includes(n)));
    if (f.label) list = list.filter((v) => f.label!.every((l) => labelMatch(v.labels, l)));
    if (f.driver) list = list.filter((v) => f.driver!.includes(v.driver));
    if (f.dangling?.length) {
      const dangling = ['true', '1'].includes(f.dangling[0]!);
      list = list.filter((v) => (d.volumeUsers(v.name).length === 0) === dangling);
    }
    return { json: { Volumes: list.map(volumeOut), Warnings: null } };
  });
  r.on('POST', '/volumes/create', async (c) => {
    const b = obj(await c.body(), 'volume create request');
    refuseUnknown(b, '', ['Name', 'Driver', 'Labels']);
    const driver = optStr(b, 'Driver') || 'local';
    if (driver !== 'local') throw new NotFoundError(`error looking up volume plugin ${driver}: plugin "${driver}" not found`);
    const name = optStr(b, 'Name');
    const { volume } = await d.volumes.create({ ...(name ? { name } : {}), labels: optStrMap(b, 'Labels') ?? {} });
    return { status: 201, json: volumeOut(volume) };
  });
  r.on('POST', '/volumes/prune', async (c) => {
    // As Docker 23+: anonymous volumes only, unless all=true; never one in use.
    const f = parseFilters(c.query.get('filters'), ['all', 'label', 'label!']);
    const all = ['true', '1'].includes(f.all?.[0] ?? '');
    const deleted: string[] = [];
    for (const v of d.volumes.list()) {
      if ((!all && !v.anonymous) || d.volumeUsers(v.name).length) continue;
      if (f.label && !f.label.every((l) => labelMatch(v.labels, l))) continue;
      if (f['label!']?.some((l) => labelMatch(v.labels, l))) continue;
      await d.volumes.remove(v.name, []);
      deleted.push(v.name);
    }
    return { json: { VolumesDeleted: deleted, SpaceReclaimed: 0 } };
  });
  r.on('GET', '/volumes/:name', (c) => ({ json: volumeOut(d.volumes.get(c.params[0]!)) }));
  r.on('DELETE', '/volumes/:name', async (c) => {
    const name = c.params[0]!;
    // -f ignores a volume that is not there (as Docker); one in use is never removed.
    if (qBool(c.query, 'force') && !d.volumes.find(name)) return { status: 204 };
    await d.volumes.remove(name, d.volumeUsers(name));
    return { status: 204 };
  });
  r.on('GET', /^\/distribution\/(.+)\/json$/, (c) => {
    // No registry lookups for service create: the CLI then keeps the plain tag, as it does offline.
    throw new NotFoundError(`no registry lookup for ${c.params[0]}: image digests are not pinned`);
  });
  r.on('DELETE', /^\/images\/(.+)$/, (c) => {
    const out = d.images.remove(c.params[0]!, (id) => d.runtime.imageInUse(id));
    return { json: out.map((l) => (l.startsWith('Untagged: ') ? { Untagged: l.slice(10) } : { Deleted: l.slice(9) })) };
  });
  r.on('POST', /^\/images\/(.+)\/tag$/, (c) => {
    const img = d.images.get(c.params[0]!);
    const repo = c.query.get('repo');
    if (!repo) throw new BadRequest('repository name must have at least one component');
    d.images.tag(img.id, `${repo}:${c.query.get('tag') || 'latest'}`);
    return { status: 201 };
  });
  r.on('POST', '/images/load', async (c) => {
    const lines = await d.images.load(c.req);
    const quiet = qBool(c.query, 'quiet');
    c.res.writeHead(200, { 'Content-Type': 'application/json' });
    for (const l of lines) c.res.write(`${JSON.stringify(quiet ? { stream: `${l}\n` } : { stream: `${l}\n` })}\n`);
    c.res.end();
  });
  r.on('POST', '/images/create', async (c) => {
    const fromSrc = c.query.get('fromSrc');
    const fromImage = c.query.get('fromImage');
    if (fromSrc !== null) {
      if (fromSrc !== '-') throw new BadRequest('importing from a URL is not supported: use "-" (the request body)');
      const repo = c.query.get('repo');
      const tag = c.query.get('tag');
      const ref = repo ? `${repo}${tag ? `:${tag}` : ''}` : undefined;
      const img = await d.images.importRootfs(c.req, ref, parseChanges(c.query.getAll('changes')));
      c.res.writeHead(200, { 'Content-Type': 'application/json' });
      c.res.end(`${JSON.stringify({ status: img.id })}\n`);
      return;
    }
    if (!fromImage) throw new BadRequest('fromImage or fromSrc is required');
    const tag = c.query.get('tag');
    const ref = tag ? (tag.startsWith('sha256:') ? `${fromImage}@${tag}` : `${fromImage}:${tag}`) : fromImage;
    const parsed = parseRef(ref);
    if (!parsed.registry)
      throw new NotFoundError(
        `pull access denied for ${parsed.familiar.replace(/:[^:]+$/, '')}: this machine reaches no public registry; name a registry (host:port/repo) or load the image`,
      );
    c.res.writeHead(200, { 'Content-Type': 'application/json' });
    try {
      await pullImage(d.images, ref, (status, id) => c.res.write(`${JSON.stringify(id ? { status, id } : { status })}\n`));
      c.res.write(`${JSON.stringify({ status: `Status: Downloaded newer image for ${parsed.familiar}` })}\n`);
    } catch (e) {
      c.res.write(`${JSON.stringify({ errorDetail: { message: errorMessage(e) }, error: errorMessage(e) })}\n`);
    }
    c.res.end();
  });
  r.on('GET', /^\/volumes\/(.+)$/, (c) => {
    throw new NotFoundError(`get ${c.params[0]}: no such volume`);
  });
  r.on('GET', /^\/plugins\/(.+)\/json$/, (c) => {
    throw new NotFoundError(`plugin "${c.params[0]}" not found`);
  });
}

/** `docker import --change`: CMD, ENTRYPOINT, ENV, WORKDIR, USER in Dockerfile syntax. */
function parseChanges(changes: string[]): { Cmd?: string[]; Entrypoint?: string[]; Env?: string[]; WorkingDir?: string; User?: string } {
  const out: { Cmd?: string[]; Entrypoint?: string[]; Env?: string[]; WorkingDir?: string; User?: string } = {};
  const words = (v: string): string[] => {
    if (v.trim().startsWith('[')) {
      try {
        const a = JSON.parse(v) as unknown;
        if (Array.isArray(a) && a.every((x) => typeof x === 'string')) return a as string[];
      } catch {
        /* fall through */
      }
      throw new BadRequest(`invalid JSON array in change "${v}"`);
    }
    return ['/bin/sh', '-c', v];
  };
  for (const ch of changes) {
    const m = /^\s*(\w+)\s+(.*)$/s.exec(ch);
    if (!m) throw new BadRequest(`invalid change "${ch}"`);
    const [, kw, v] = m as unknown as [string, string, string];
    switch (kw.toUpperCase()) {
      case 'CMD':
        out.Cmd = words(v);
        break;
      case 'ENTRYPOINT':
        out.Entrypoint = words(v);
        break;
      case 'ENV':
        out.Env = [...(out.Env ?? []), v.includes('=') ? v.trim() : v.trim().replace(/\s+/, '=')];
        break;
      case 'WORKDIR':
        out.WorkingDir = v.trim();
        break;
      case 'USER':
        out.User = v.trim();
        break;
      default:
        throw new BadRequest(`${kw} is not a valid change command (CMD, ENTRYPOINT, ENV, WORKDIR, USER)`);
    }
  }
  if (out.Env) out.Env = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', ...out.Env];
  return out;
}

function readUpgradeBody(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<unknown> {
  const len = Number(req.headers['content-length'] ?? 0);
  if (len > 1 << 16) throw new BadRequest('exec start body too large');
  return new Promise((resolve, reject) => {
    let buf = head;
    const done = (): void => {
      socket.off('data', onData);
      const body = buf.subarray(0, len);
      const rest = buf.subarray(len);
      if (rest.length) socket.unshift(rest);
      try {
        resolve(len ? JSON.parse(body.toString('utf8')) : {});
      } catch {
        reject(new BadRequest('malformed JSON body'));
      }
    };
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c]);
      if (buf.length >= len) {
        socket.pause();
        done();
      }
    };
    if (buf.length >= len) done();
    else socket.on('data', onData);
  });
}

/** The json-file log as Docker's multiplexed stream, with tail, timestamps and follow. */
function streamLogs(res: http.ServerResponse, q: URLSearchParams, sources: { id: string; prefix: string }[], d: Daemon): void {
  const wantOut = qBool(q, 'stdout');
  const wantErr = qBool(q, 'stderr');
  const ts = qBool(q, 'timestamps');
  const tailRaw = q.get('tail') ?? 'all';
  const tail = tailRaw === 'all' || tailRaw === '' ? Infinity : Number(tailRaw);
  if (!wantOut && !wantErr) throw new BadRequest('Bad parameters: you must choose at least one stream');
  res.writeHead(200, { 'Content-Type': 'application/vnd.docker.multiplexed-stream' });
  const offsets = new Map<string, number>();
  const emit = (first: boolean): void => {
    for (const s of sources) {
      let lines = d.runtime.readLogs(s.id);
      const from = offsets.get(s.id) ?? 0;
      offsets.set(s.id, lines.length);
      lines = lines.slice(from);
      if (first && Number.isFinite(tail)) lines = lines.slice(Math.max(0, lines.length - tail));
      for (const l of lines) {
        if ((l.stream === 'stdout' && !wantOut) || (l.stream === 'stderr' && !wantErr)) continue;
        res.write(frame(l.stream === 'stdout' ? 1 : 2, Buffer.from(`${s.prefix}${ts ? `${l.time} ` : ''}${l.log}`)));
      }
    }
  };
  emit(true);
  if (!qBool(q, 'follow')) {
    res.end();
    return;
  }
  const timer = setInterval(() => {
    emit(false);
    const running = sources.some((s) => d.runtime.find(s.id)?.status === 'running');
    if (!running) {
      clearInterval(timer);
      res.end();
    }
  }, 200);
  res.on('close', () => clearInterval(timer));
}
