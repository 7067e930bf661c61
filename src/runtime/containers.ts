// Containers under runc, one state root per daemon. Each container's process is watched by a
// small C shim (native/vxshim.c) that holds its output pipes, writes the json-file log and the exit
// status, and outlives the daemon, so a daemon restart neither kills containers nor loses exit codes.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConflictError, InvalidArgumentError, NotFoundError, VxError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { mountsUnder, unmount } from '../kernel/mounts.js';
import { mountOverlayAsync } from '../kernel/thread.js';
import { HealthMonitor, healthConfig, mergeHealthcheck, timeoutOutput, type HealthState, type HealthcheckSpec } from './health.js';
import type { ImageRecord, ImageStore } from './images.js';
import type { ContainerMount } from './volumes.js';
import { buildOciSpec, hostsFile, mergeEnv, processSpec, resolvConf } from './spec.js';
import { Spawner } from './spawner.js';

export const RUNC = process.env.VXSWARM_RUNC ?? '/usr/sbin/runc';

export function shimPath(): string {
  if (process.env.VXSWARM_SHIM) return process.env.VXSWARM_SHIM;
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.join(here, '../bin/vxshim'), path.join(here, '../../dist/bin/vxshim')];
  const found = candidates.find((c) => fs.existsSync(c));
  if (!found) throw new VxError(`vxshim not built (looked in ${candidates.join(', ')}): run npm run build`, 500);
  return found;
}

export type ContainerStatus = 'created' | 'running' | 'exited' | 'dead';

export interface ContainerNetwork {
  networkId: string;
  networkName: string;
  endpointId: string;
  ip: string;
  prefixLen: number;
  gateway: string;
  mac: string;
  aliases: string[];
}

export interface ContainerRecord {
  id: string;
  name: string;
  image: string;
  imageId: string;
  created: string;
  args: string[];
  env: string[];
  workingDir: string;
  user: string;
  hostname: string;
  labels: Record<string, string>;
  netns: string;
  networks: ContainerNetwork[];
  memoryLimit: number;
  nanoCpus?: number;
  memoryReservation?: number;
  /** seconds between SIGTERM and SIGKILL on stop */
  stopTimeout: number;
  status: ContainerStatus;
  pid: number;
  exitCode: number;
  error: string;
  startedAt: string;
  finishedAt: string;
  /** the health check it runs (the spec's over the image's), in Docker's terms */
  healthcheck?: HealthcheckSpec;
  /** since its last start, while it has a health check */
  health?: HealthState;
  /** volumes, binds and tmpfs mounts */
  mounts?: ContainerMount[];
}

export interface CreateOptions {
  name: string;
  image: ImageRecord;
  imageRef: string;
  cmd?: string[];
  entrypoint?: string[];
  env?: string[];
  workingDir?: string;
  user?: string;
  hostname?: string;
  labels?: Record<string, string>;
  netns: string;
  networks: ContainerNetwork[];
  memoryLimit?: number;
  nanoCpus?: number;
  memoryReservation?: number;
  /** the spec's health check (merged over the image's; test ['NONE'] turns the image's off) */
  healthcheck?: HealthcheckSpec;
  mounts?: ContainerMount[];
  stopTimeout?: number;
}

export interface ExecOptions {
  cmd: string[];
  env?: string[];
  workingDir?: string;
  user?: string;
  tty: boolean;
  rows?: number;
  cols?: number;
}

const ZERO_TIME = '0001-01-01T00:00:00Z';
const NAME_RE = /^\/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export class ContainerRuntime extends EventEmitter {
  private readonly records = new Map<string, ContainerRecord>();
  private readonly runcRoot: string;
  private timer: NodeJS.Timeout | undefined;
  private readonly spawner = new Spawner(shimPath);
  /** health checks of running containers */
  private readonly monitors = new Map<string, HealthMonitor>();

  constructor(
    readonly root: string,
    execRoot: string,
    private readonly images: ImageStore,
    /** cgroup parent for every container of this daemon, e.g. "vxswarm" or "<lab>-node1" */
    private readonly cgroupParent: string,
    private readonly log: Logger,
  ) {
    super();
    this.runcRoot = path.join(execRoot, 'runc');
    fs.mkdirSync(root, { recursive: true, mode: 0o700 });
    fs.mkdirSync(this.runcRoot, { recursive: true, mode: 0o700 });
  }

  private dir(id: string): string {
    return path.join(this.root, id);
  }

  /** Loads saved containers; a running one keeps running (its shim still watches it). */
  async restore(): Promise<void> {
    for (const id of fs.readdirSync(this.root)) {
      const f = path.join(this.dir(id), 'container.json');
      let rec: ContainerRecord;
      try {
        rec = JSON.parse(fs.readFileSync(f, 'utf8')) as ContainerRecord;
      } catch {
        this.log.warn('removing a container left half made', { container: id });
        await this.destroyLeftovers(id);
        continue;
      }
      this.records.set(id, rec);
      if (rec.status === 'running') this.checkExit(rec);
      if (rec.status === 'running') this.watchHealth(rec);
    }
    // runc state with no container of ours behind it: a crash between runc and our record.
    for (const id of await runcIds(this.runcRoot)) {
      if (this.records.has(id)) continue;
      this.log.warn('removing a runc container no record knows', { container: id });
      await killAndDelete(this.runcRoot, id);
    }
    this.timer = setInterval(() => this.poll(), 250);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    for (const m of this.monitors.values()) m.stop();
    this.monitors.clear();
    this.spawner.close();
  }

  list(): ContainerRecord[] {
    return [...this.records.values()].sort((a, b) => b.created.localeCompare(a.created));
  }

  find(ref: string): ContainerRecord | undefined {
    const r = ref.replace(/^\//, '');
    const all = [...this.records.values()];
    const exact = this.records.get(r) ?? all.find((c) => c.name === r);
    if (exact) return exact;
    const byPrefix = r.length > 0 ? all.filter((c) => c.id.startsWith(r)) : [];
    if (byPrefix.length > 1) throw new InvalidArgumentError(`multiple IDs found with provided prefix: ${r}`);
    return byPrefix[0];
  }

  get(ref: string): ContainerRecord {
    const c = this.find(ref);
    if (!c) throw new NotFoundError(`No such container: ${ref}`);
    return c;
  }

  imageInUse(imageId: string): boolean {
    return [...this.records.values()].some((c) => c.imageId === imageId);
  }

  /**
   * Writes the record off the event loop. Saves of one container run one after another (the last
   * one written is the newest state), and removing a container waits for its save in flight.
   */
  private save(rec: ContainerRecord): Promise<void> {
    const f = path.join(this.dir(rec.id), 'container.json');
    const write = async (): Promise<void> => {
      await fs.promises.writeFile(`${f}.tmp`, JSON.stringify(rec));
      await fs.promises.rename(`${f}.tmp`, f);
    };
    const next = (this.saves.get(rec.id) ?? Promise.resolve()).catch(() => undefined).then(write);
    this.saves.set(rec.id, next);
    void next.finally(() => this.saves.get(rec.id) === next && this.saves.delete(rec.id)).catch(() => undefined);
    return next;
  }
  private readonly saves = new Map<string, Promise<void>>();

  /** Builds the bundle (overlayfs root, /etc files, config.json). Nothing is left behind on failure. */
  async create(o: CreateOptions): Promise<ContainerRecord> {
    if (!NAME_RE.test(o.name)) throw new InvalidArgumentError(`Invalid container name (${o.name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
    const name = o.name.replace(/^\//, '');
    if ([...this.records.values()].some((c) => c.name === name)) throw new ConflictError(`Conflict. The container name "/${name}" is already in use`);
    const cfg = o.image.config;
    const entry = o.entrypoint ?? cfg.Entrypoint ?? [];
    const cmd = o.cmd?.length ? o.cmd : o.entrypoint ? [] : (cfg.Cmd ?? []);
    const args = [...entry, ...cmd];
    if (args.length === 0) throw new InvalidArgumentError('no command specified');
    const id = randomBytes(32).toString('hex');
    const health = mergeHealthcheck(cfg.Healthcheck, o.healthcheck);
    const rec: ContainerRecord = {
      id,
      name,
      image: o.imageRef,
      imageId: o.image.id,
      created: new Date().toISOString(),
      args,
      env: mergeEnv(cfg.Env, o.env),
      workingDir: o.workingDir || cfg.WorkingDir || '/',
      user: o.user ?? cfg.User ?? '',
      hostname: o.hostname || id.slice(0, 12),
      labels: { ...(cfg.Labels ?? {}), ...(o.labels ?? {}) },
      netns: o.netns,
      networks: o.networks,
      memoryLimit: o.memoryLimit ?? 0,
      ...(o.nanoCpus ? { nanoCpus: o.nanoCpus } : {}),
      ...(o.memoryReservation ? { memoryReservation: o.memoryReservation } : {}),
      ...(health ? { healthcheck: health } : {}),
      ...(o.mounts?.length ? { mounts: o.mounts.map(({ copyUp: _, ...m }) => m) } : {}),
      stopTimeout: o.stopTimeout ?? 10,
      status: 'created',
      pid: 0,
      exitCode: 0,
      error: '',
      startedAt: ZERO_TIME,
      finishedAt: ZERO_TIME,
    };
    const d = this.dir(id);
    // The name is taken now: a second create of the same name while this one awaits is refused.
    this.records.set(id, rec);
    try {
      const write = fs.promises.writeFile;
      for (const sub of ['rootfs', 'upper', 'work']) await fs.promises.mkdir(path.join(d, sub), { recursive: true, mode: 0o700 });
      await mountOverlayAsync(path.join(d, 'rootfs'), this.images.layerDirs(o.image), path.join(d, 'upper'), path.join(d, 'work'));
      // A volume made for this container starts with what the image has at its target (as Docker's).
      for (const m of o.mounts ?? []) if (m.copyUp) await copyInto(path.join(d, 'rootfs', m.destination), m.source);
      await write(path.join(d, 'hostname'), `${rec.hostname}\n`);
      await write(
        path.join(d, 'hosts'),
        hostsFile(
          rec.hostname,
          o.networks.map((n) => n.ip),
        ),
      );
      await write(path.join(d, 'resolv.conf'), resolvConf());
      const spec = buildOciSpec({
        args,
        env: rec.env,
        cwd: rec.workingDir,
        user: rec.user,
        rootfs: path.join(d, 'rootfs'),
        hostname: rec.hostname,
        netnsPath: `/run/netns/${o.netns}`,
        cgroupsPath: `/${this.cgroupParent}/${id}`,
        etc: { hosts: path.join(d, 'hosts'), hostname: path.join(d, 'hostname'), resolvConf: path.join(d, 'resolv.conf') },
        ...(rec.memoryLimit ? { memoryLimit: rec.memoryLimit } : {}),
        ...(rec.nanoCpus ? { nanoCpus: rec.nanoCpus } : {}),
        ...(rec.memoryReservation ? { memoryReservation: rec.memoryReservation } : {}),
        ...(rec.mounts?.length ? { mounts: rec.mounts.map(ociMount) } : {}),
      });
      await write(path.join(d, 'config.json'), JSON.stringify(spec));
      await this.save(rec);
    } catch (e) {
      this.records.delete(id);
      await this.destroyLeftovers(id);
      throw e;
    }
    this.emit('create', rec);
    return rec;
  }

  /** Starts the container under its shim; a runtime failure (say, no such executable) marks it exited with runc's message. */
  async start(ref: string): Promise<ContainerRecord> {
    const rec = this.get(ref);
    if (rec.status === 'running') return rec;
    const d = this.dir(rec.id);
    if (rec.status !== 'created') {
      // A restart: runc forgets a stopped container only after delete.
      await runc(this.runcRoot, ['delete', '-f', rec.id]);
    }
    for (const f of ['exit', 'exit.tmp', 'init.pid', 'runc.log']) fs.rmSync(path.join(d, f), { force: true });
    const line = await this.spawner.run(shimPath(), ['run', RUNC, this.runcRoot, d, rec.id, path.join(d, 'container-json.log'), path.join(d, 'exit')]);
    const [word, num] = line.split(' ');
    if (word === 'started') {
      rec.status = 'running';
      rec.pid = Number(num);
      rec.startedAt = new Date().toISOString();
      rec.finishedAt = ZERO_TIME;
      rec.exitCode = 0;
      rec.error = '';
      if (rec.healthcheck) rec.health = { status: 'starting', failingStreak: 0, log: [] };
      await this.save(rec);
      this.emit('start', rec);
      this.watchHealth(rec);
      return rec;
    }
    const msg = runcError(d) || `runc failed (${line})`;
    await runc(this.runcRoot, ['delete', '-f', rec.id]);
    rec.status = 'exited';
    rec.exitCode = /executable file not found|no such file or directory/.test(msg) ? 127 : /permission denied/.test(msg) ? 126 : 128;
    rec.error = msg;
    rec.finishedAt = new Date().toISOString();
    await this.save(rec);
    this.emit('exit', rec);
    throw new VxError(`failed to create task for container: ${msg}`, 400);
  }

  /** SIGTERM, then SIGKILL after the grace period; resolves once the container has exited. */
  async stop(ref: string, graceS?: number): Promise<void> {
    const rec = this.get(ref);
    graceS ??= rec.stopTimeout;
    if (rec.status !== 'running') return;
    await runc(this.runcRoot, ['kill', rec.id, 'TERM']);
    if (await this.waitExit(rec, graceS * 1000)) return;
    await runc(this.runcRoot, ['kill', '--all', rec.id, 'KILL']);
    if (!(await this.waitExit(rec, 5000))) throw new VxError(`container ${rec.id.slice(0, 12)} did not stop after SIGKILL`, 500);
  }

  async kill(ref: string, signal = 'KILL'): Promise<void> {
    const rec = this.get(ref);
    if (rec.status !== 'running') throw new ConflictError(`Container ${rec.id} is not running`);
    const r = await runc(this.runcRoot, ['kill', rec.id, signal.replace(/^SIG/, '')]);
    if (r.status !== 0) throw new VxError(`kill ${rec.id.slice(0, 12)}: ${r.stderr.trim()}`, 500);
  }

  private waitExit(rec: ContainerRecord, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const deadline = Date.now() + ms;
      const tick = (): void => {
        this.checkExit(rec);
        if (rec.status !== 'running') resolve(true);
        else if (Date.now() > deadline) resolve(false);
        else setTimeout(tick, 20);
      };
      tick();
    });
  }

  /** Removes the container: its runc state, mounts and files. A running one needs force. */
  async remove(ref: string, force: boolean): Promise<void> {
    const rec = this.get(ref);
    if (rec.status === 'running') {
      if (!force) throw new ConflictError(`cannot remove container "/${rec.name}": container is running: stop the container before removing or force remove`);
      await this.stop(rec.id, 0);
    }
    this.unwatchHealth(rec.id);
    await this.destroyLeftovers(rec.id);
    this.records.delete(rec.id);
    this.emit('destroy', rec);
  }

  private async destroyLeftovers(id: string): Promise<void> {
    await this.saves.get(id)?.catch(() => undefined);
    await runc(this.runcRoot, ['delete', '-f', id]);
    const d = this.dir(id);
    for (const m of mountsUnder(d)) unmount(m);
    fs.rmSync(d, { recursive: true, force: true });
  }

  private poll(): void {
    for (const rec of this.records.values()) if (rec.status === 'running') this.checkExit(rec);
  }

  /** The shim writes the exit status when init exits; a vanished shim and process means it died unseen. */
  private checkExit(rec: ContainerRecord): void {
    const d = this.dir(rec.id);
    let code: number | undefined;
    try {
      code = Number(fs.readFileSync(path.join(d, 'exit'), 'utf8').trim());
    } catch {
      if (rec.pid > 0 && !alive(rec.pid)) code = 137;
    }
    if (code === undefined) return;
    rec.status = 'exited';
    rec.exitCode = code;
    rec.finishedAt = new Date().toISOString();
    rec.pid = 0;
    this.unwatchHealth(rec.id);
    void this.save(rec).catch((e: unknown) => this.log.error('could not save a container record', { container: rec.id, error: errorMessage(e) }));
    this.emit('exit', rec);
  }

  /** Runs the container's health check while it runs; 'health' is emitted when its status changes. */
  private watchHealth(rec: ContainerRecord): void {
    if (!rec.healthcheck || this.monitors.has(rec.id)) return;
    rec.health ??= { status: 'starting', failingStreak: 0, log: [] };
    const monitor = new HealthMonitor(
      healthConfig(rec.healthcheck),
      Date.parse(rec.startedAt),
      rec.health,
      (cmd, timeoutMs) => this.probe(rec.id, cmd, timeoutMs),
      (state, changed) => {
        if (this.monitors.get(rec.id) !== monitor) return;
        rec.health = state;
        void this.save(rec).catch((e: unknown) => this.log.warn('could not save a container record', { container: rec.id, error: errorMessage(e) }));
        if (changed) this.emit('health', rec);
      },
    );
    this.monitors.set(rec.id, monitor);
  }

  private unwatchHealth(id: string): void {
    this.monitors.get(id)?.stop();
    this.monitors.delete(id);
  }

  /** One probe: the command inside the container, its output (stdout and stderr together) and exit code. */
  private probe(id: string, cmd: string[], timeoutMs: number): Promise<{ exitCode: number; output: string }> {
    return new Promise((resolve) => {
      let child: ChildProcess;
      try {
        child = this.exec(id, { cmd, tty: false });
      } catch (e) {
        resolve({ exitCode: -1, output: errorMessage(e) });
        return;
      }
      child.stdin?.end();
      const chunks: Buffer[] = [];
      let size = 0;
      const take = (b: Buffer): void => {
        if (size < 8192) chunks.push(b);
        size += b.length;
      };
      child.stdout?.on('data', take);
      child.stderr?.on('data', take);
      let timedOut = false;
      // runc passes TERM on to the probe; KILL ends runc itself if that is not enough
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 1000).unref();
      }, timeoutMs);
      child.on('close', (code) => {
        clearTimeout(timer);
        if (timedOut) resolve({ exitCode: -1, output: timeoutOutput(timeoutMs) });
        else resolve({ exitCode: code ?? -1, output: Buffer.concat(chunks).toString('utf8') });
      });
    });
  }

  /** Starts a process inside a running container. With a TTY it runs on a pty held by the shim (fd 3 takes "rows cols" resizes). */
  exec(ref: string, o: ExecOptions): ChildProcess {
    const rec = this.get(ref);
    if (rec.status !== 'running') throw new ConflictError(`container ${rec.id} is not running`);
    const d = this.dir(rec.id);
    const procFile = path.join(d, `exec-${randomBytes(6).toString('hex')}.json`);
    const proc = processSpec({ args: o.cmd, env: mergeEnv(rec.env, o.env), cwd: o.workingDir || rec.workingDir, user: o.user || rec.user }, o.tty);
    if (o.tty) proc.consoleSize = { height: o.rows ?? 24, width: o.cols ?? 80 };
    fs.writeFileSync(procFile, JSON.stringify(proc));
    // A unix socket path must fit in 108 bytes: the runc state dir is short, the bundle dir is not.
    const base = path.join(this.runcRoot, `exec-${randomBytes(6).toString('hex')}`);
    const consoleSock = `${base}.sock`;
    const pidFile = `${base}.pid`;
    // With a TTY, runc makes the pty inside the container, hands its master to the shim over the
    // console socket and detaches; the shim, as subreaper, collects the process's exit status.
    const child = o.tty
      ? spawn(
          shimPath(),
          [
            'pty',
            String(o.rows ?? 24),
            String(o.cols ?? 80),
            consoleSock,
            pidFile,
            RUNC,
            '--root',
            this.runcRoot,
            'exec',
            '-d',
            '--process',
            procFile,
            '--console-socket',
            consoleSock,
            '--pid-file',
            pidFile,
            rec.id,
          ],
          { stdio: ['pipe', 'pipe', 'pipe', 'pipe'] },
        )
      : spawn(RUNC, ['--root', this.runcRoot, 'exec', '--process', procFile, rec.id], { stdio: ['pipe', 'pipe', 'pipe'] });
    for (const s of child.stdio) s?.on('error', () => undefined);
    child.on('close', () => {
      for (const f of [procFile, consoleSock, pidFile]) fs.rmSync(f, { force: true });
    });
    return child;
  }

  logPath(ref: string): string {
    return path.join(this.dir(this.get(ref).id), 'container-json.log');
  }

  /** Lines of the json-file log. */
  readLogs(ref: string): { log: string; stream: 'stdout' | 'stderr'; time: string }[] {
    let text: string;
    try {
      text = fs.readFileSync(this.logPath(ref), 'utf8');
    } catch {
      return [];
    }
    const out: { log: string; stream: 'stdout' | 'stderr'; time: string }[] = [];
    for (const l of text.split('\n')) {
      if (!l) continue;
      try {
        out.push(JSON.parse(l) as { log: string; stream: 'stdout' | 'stderr'; time: string });
      } catch {
        /* a line cut by a crash */
      }
    }
    return out;
  }
}

/** Runs runc without waiting on the event loop (gossip probes and heartbeats share it). */
function runc(root: string, args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(RUNC, ['--root', root, ...args], { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ status: code, stdout: stdout ?? '', stderr: stderr || (err && code === -1 ? err.message : '') });
    });
  });
}

async function runcIds(root: string): Promise<string[]> {
  return (await runc(root, ['list', '-q'])).stdout.split('\n').filter(Boolean);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Kills every process of a container and deletes it, waiting up to 5 s for the processes to go. */
async function killAndDelete(root: string, id: string): Promise<void> {
  await runc(root, ['kill', '--all', id, 'KILL']);
  for (let i = 0; i < 50 && (await runc(root, ['delete', '-f', id])).status !== 0; i++) await sleep(100);
}

/** The last error runc logged for this bundle, without runc's prefixes. */
function runcError(dir: string): string {
  try {
    const lines = fs.readFileSync(path.join(dir, 'runc.log'), 'utf8').trim().split('\n');
    for (const l of lines.reverse()) {
      const j = JSON.parse(l) as { level?: string; msg?: string };
      if (j.level === 'error' && j.msg) return j.msg.replace(/^runc run failed: /, '');
    }
  } catch (e) {
    return errorMessage(e);
  }
  return '';
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Removes every container of a runtime whose daemon is gone (lab teardown): kills and deletes them
 * through runc, unmounts their root filesystems, and removes the daemon's cgroup parent.
 */
export async function purgeRuntime(root: string, execRoot: string, cgroupParent: string): Promise<string[]> {
  const runcRoot = path.join(execRoot, 'runc');
  const removed: string[] = [];
  if (fs.existsSync(runcRoot)) {
    for (const id of await runcIds(runcRoot)) {
      await killAndDelete(runcRoot, id);
      removed.push(id);
    }
  }
  for (const m of mountsUnder(root)) unmount(m);
  for (const ctl of fs.existsSync('/sys/fs/cgroup') ? fs.readdirSync('/sys/fs/cgroup') : []) {
    const dir = path.join('/sys/fs/cgroup', ctl, cgroupParent);
    if (!fs.existsSync(dir)) continue;
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) fs.rmSync(path.join(dir, e.name), { recursive: false, force: true });
    try {
      fs.rmdirSync(dir);
    } catch {
      /* a container process still exiting; runc delete removed its own cgroup */
    }
  }
  return removed;
}

/** A mount as runc takes it. */
function ociMount(m: ContainerMount): { destination: string; type: 'bind' | 'tmpfs'; source: string; options: string[] } {
  const ro = m.readOnly ? ['ro'] : [];
  if (m.type === 'tmpfs')
    return { destination: m.destination, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'noexec', ...(m.options ?? []), ...ro] };
  return { destination: m.destination, type: 'bind', source: m.source, options: ['rbind', 'rprivate', ...ro] };
}

/** Copies a directory's content, owners and modes kept (cp -a), into `dest`; nothing when there is none. */
async function copyInto(src: string, dest: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(src);
  } catch {
    return;
  }
  if (!st.isDirectory()) return;
  await new Promise<void>((resolve, reject) =>
    execFile('cp', ['-a', `${src}/.`, dest], (e, _out, err) =>
      e ? reject(new VxError(`copying the image's ${src} into the volume: ${err || e.message}`, 500)) : resolve(),
    ),
  );
}
