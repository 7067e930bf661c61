// Test hosts on this machine: one namespace per host and one router namespace, with no
// link to the machine's own namespace, so lab traffic can never leave the machine.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { purgeRuntime } from '../runtime/containers.js';
import { NotFoundError, VxError } from '../core/errors.js';
import { MNT_DETACH, SyscallError, umount2 } from '../kernel/libc.js';
import { createNetns, listNetns, netnsExists, writeSysctl } from '../kernel/netns.js';
import { Rtnl } from '../kernel/rtnl.js';
import { destroyNetns } from '../kernel/teardown.js';
import { stopStaleEtcd } from '../cluster/etcd/member.js';
import { Tunnel } from '../overlay/tunnel.js';
import { planLab, type LabPlan } from './plan.js';

export const LAB_STATE_DIR = '/run/vxswarm/labs';
const execFileP = promisify(execFile);
const statePath = (name: string): string => path.join(LAB_STATE_DIR, `${name}.json`);

/** Where a lab host keeps its daemon's state, socket, log and UTS namespace. */
export function hostPaths(lab: string, host: string): { dir: string; root: string; execRoot: string; socket: string; log: string; pid: string; uts: string } {
  const dir = path.join(LAB_STATE_DIR, lab, host);
  return {
    dir,
    root: path.join(dir, 'root'),
    execRoot: path.join(dir, 'run'),
    socket: path.join(dir, 'vxswarm.sock'),
    log: path.join(dir, 'daemon.log'),
    pid: path.join(dir, 'daemon.pid'),
    uts: path.join(dir, 'uts'),
  };
}

export async function labUp(name: string, hosts = 2, l2?: number, mtu = 1500): Promise<LabPlan> {
  const plan = planLab(name, hosts, l2, mtu);
  if (netnsExists(plan.router)) throw new Error(`lab ${name} is already up (run: vxswarm lab down --name ${name})`);
  fs.mkdirSync(LAB_STATE_DIR, { recursive: true });
  fs.writeFileSync(statePath(name), JSON.stringify(plan, null, 2));
  try {
    createNetns(plan.router);
    const r = Rtnl.open(plan.router);
    try {
      await r.setUp('lo');
      writeSysctl(plan.router, 'net.ipv4.ip_forward', '1');
      // A shared segment: a bridge whose ports are the hosts' veths and the peer of the router's
      // gateway veth, so frames are only bridged port to port, never sent out of the bridge device.
      for (const n of plan.nets) {
        if (!n.bridge) continue;
        await r.ensureBridge(n.bridge, { mtu });
        const br = await r.mustGetLink(n.bridge);
        await r.setLink(br.index, { up: true });
        await r.createVeth(n.routerIf, { mtu, peerName: `${n.bridge}p` });
        const port = await r.mustGetLink(`${n.bridge}p`);
        await r.setLink(port.index, { master: br.index, up: true });
      }
      for (const h of plan.hosts) {
        createNetns(h.netns);
        // Its own hostname, as a real host has: a UTS namespace pinned to a file.
        const p = hostPaths(name, h.name);
        fs.mkdirSync(p.dir, { recursive: true });
        fs.writeFileSync(p.uts, '');
        await setHostname(p.uts, h.name);
        await r.createVeth(h.routerIf, { mtu, peerName: 'eth0', peerNetns: h.netns });
        const v = await r.mustGetLink(h.routerIf);
        const net = plan.nets[h.l2]!;
        if (net.bridge) await r.setLink(v.index, { master: (await r.mustGetLink(net.bridge)).index });
        await r.setLink(v.index, { up: true });
        const hs = Rtnl.open(h.netns);
        try {
          await hs.setUp('lo');
          const eth = await hs.mustGetLink('eth0');
          await hs.replaceAddress(eth.index, h.ip, net.prefix);
          await hs.setLink(eth.index, { up: true });
          await hs.replaceRoute({ dst: '0.0.0.0', prefix: 0, gateway: net.gateway });
        } finally {
          hs.close();
        }
      }
      for (const n of plan.nets) {
        const gw = await r.mustGetLink(n.routerIf);
        await r.replaceAddress(gw.index, n.gateway, n.prefix);
        await r.setLink(gw.index, { up: true });
      }
      const c = plan.client;
      if (c) {
        createNetns(c.netns);
        await r.createVeth(c.routerIf, { mtu, peerName: 'eth0', peerNetns: c.netns });
        const v = await r.mustGetLink(c.routerIf);
        await r.replaceAddress(v.index, c.gateway, c.prefix);
        await r.setLink(v.index, { up: true });
        const cs = Rtnl.open(c.netns);
        try {
          await cs.setUp('lo');
          const eth = await cs.mustGetLink('eth0');
          await cs.replaceAddress(eth.index, c.ip, c.prefix);
          await cs.setLink(eth.index, { up: true });
          await cs.replaceRoute({ dst: '0.0.0.0', prefix: 0, gateway: c.gateway });
        } finally {
          cs.close();
        }
      }
    } finally {
      r.close();
    }
  } catch (e) {
    await labDown(name).catch(() => undefined);
    throw e;
  }
  return plan;
}

/** Sets the hostname inside a UTS namespace pinned to a file (made by `unshare --uts=<file>`). */
async function setHostname(utsFile: string, hostname: string): Promise<void> {
  try {
    await execFileP('unshare', [`--uts=${utsFile}`, 'hostname', hostname]);
  } catch (e) {
    throw new VxError(`cannot make the UTS namespace of ${hostname}: ${(e as { stderr?: string }).stderr ?? String(e)}`, 500);
  }
}

export function labPlan(name: string): LabPlan {
  try {
    return JSON.parse(fs.readFileSync(statePath(name), 'utf8')) as LabPlan;
  } catch {
    throw new NotFoundError(`lab ${name} is not up`);
  }
}

/** Stops daemons, then removes every namespace whose name starts with "<name>-" (hosts, router, and what lived in them), VTEPs first. */
export async function labDown(name: string): Promise<string[]> {
  const removed: string[] = [];
  const labDir = path.join(LAB_STATE_DIR, name);
  for (const host of fs.existsSync(labDir) ? fs.readdirSync(labDir) : []) await stopDaemon(name, host, 'SIGKILL');
  // A killed daemon's etcd runs on (the next daemon replaces it); a lab ends it.
  for (const host of fs.existsSync(labDir) ? fs.readdirSync(labDir) : []) await stopStaleEtcd(path.join(hostPaths(name, host).root, 'etcd'));
  // Containers and the WireGuard process outlive their daemon by design; a lab takes them down with it.
  for (const host of fs.existsSync(labDir) ? fs.readdirSync(labDir) : []) {
    const p = hostPaths(name, host);
    await purgeRuntime(path.join(p.root, 'containers'), p.execRoot, `${name}-${host}`);
    await Tunnel.reap(path.join(p.execRoot, 'wireguard'));
  }
  // Reverse order removes "x-node1-ov-..." before "x-node1": children before the host they hang off.
  for (const ns of listNetns(`${name}-`).reverse()) {
    await destroyNetns(ns);
    removed.push(ns);
  }
  for (const host of fs.existsSync(labDir) ? fs.readdirSync(labDir) : []) {
    try {
      umount2(hostPaths(name, host).uts, MNT_DETACH);
    } catch (e) {
      if (!(e instanceof SyscallError)) throw e;
    }
  }
  fs.rmSync(labDir, { recursive: true, force: true });
  fs.rmSync(statePath(name), { force: true });
  return removed;
}

/** The command that runs our CLI: the built one, or the TypeScript source under tsx (tests). */
/** Node flags and environment for a daemon (bin/vxswarm's shebang sets the same): smaller V8 young
 *  generation, two malloc arenas. Measured: idle RSS 113 → 96 MB. */
export const DAEMON_NODE_FLAGS = ['--max-semi-space-size=1'];
export const DAEMON_ENV = { MALLOC_ARENA_MAX: '2' };
function daemonCommand(cmd: string[], extra: string[] = []): string[] {
  return [cmd[0]!, ...DAEMON_NODE_FLAGS, ...extra, ...cmd.slice(1)];
}

export function cliCommand(preferBuild = false): string[] {
  const here = fileURLToPath(import.meta.url);
  const built = path.join(path.dirname(here), '..', '..', 'dist', 'cli', 'entry.js');
  if (!here.endsWith('.ts')) return [process.execPath, path.join(path.dirname(here), '..', 'cli', 'entry.js')];
  if (preferBuild && fs.existsSync(built)) return [process.execPath, built];
  return [process.execPath, '--import', 'tsx', path.join(path.dirname(here), '..', 'cli', 'entry.ts')];
}

function daemonPid(lab: string, host: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(hostPaths(lab, host).pid, 'utf8'));
    // Only a process we started: the pid must still run our daemon for this host.
    const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmd.includes('daemon') && cmd.includes(hostPaths(lab, host).socket) ? pid : undefined;
  } catch {
    return undefined;
  }
}

export interface DaemonOptions {
  logLevel?: string;
  reconcileMs?: number;
  extraArgs?: string[];
  /** run dist/ (npm run build) even when called from TypeScript, e.g. to measure memory */
  preferBuild?: boolean;
  /** more node flags for the daemon (e.g. --cpu-prof to profile it) */
  nodeFlags?: string[];
}

/** Starts `vxswarm daemon` inside a lab host (its network and UTS namespaces) and waits for its socket. */
export async function startDaemon(lab: string, host: string, o: DaemonOptions = {}): Promise<number> {
  const plan = labPlan(lab);
  const h = plan.hosts.find((x) => x.name === host);
  if (!h) throw new NotFoundError(`no host ${host} in lab ${lab}`);
  if (daemonPid(lab, host)) throw new VxError(`a daemon already runs on ${host}`, 409);
  const p = hostPaths(lab, host);
  fs.mkdirSync(p.dir, { recursive: true });
  const out = fs.openSync(p.log, 'a');
  const args = [
    `--net=/run/netns/${h.netns}`,
    `--uts=${p.uts}`,
    '--',
    // A daemon's young generation stays small: it is mostly idle, and RSS is what users see.
    ...daemonCommand(cliCommand(o.preferBuild), o.nodeFlags),
    'daemon',
    '--root',
    p.root,
    '--exec-root',
    p.execRoot,
    '-H',
    `unix://${p.socket}`,
    '--netns-prefix',
    `${h.netns}-`,
    '--log-level',
    o.logLevel ?? 'info',
    ...(o.extraArgs ?? []),
  ];
  fs.rmSync(p.socket, { force: true });
  const child = spawn('nsenter', args, {
    stdio: ['ignore', out, out],
    detached: true,
    env: { ...process.env, ...DAEMON_ENV, ...(o.reconcileMs ? { VXSWARM_RECONCILE_MS: String(o.reconcileMs) } : {}) },
  });
  fs.closeSync(out);
  child.unref();
  fs.writeFileSync(p.pid, String(child.pid));
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline) {
    if (fs.existsSync(p.socket)) return child.pid!;
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new VxError(`daemon on ${host} did not come up; see ${p.log}:\n${fs.readFileSync(p.log, 'utf8').slice(-2000)}`, 500);
}

/** Stops a lab host's daemon (SIGTERM: graceful; SIGKILL: a crash) and waits for it to go. */
export async function stopDaemon(lab: string, host: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<boolean> {
  const pid = daemonPid(lab, host);
  if (!pid) return false;
  process.kill(pid, signal);
  const deadline = Date.now() + (signal === 'SIGKILL' ? 5000 : 15000);
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch {
      return true;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  if (signal === 'SIGKILL') throw new VxError(`daemon ${pid} on ${host} survived SIGKILL`, 500);
  return stopDaemon(lab, host, 'SIGKILL');
}

export function daemonSocket(lab: string, host: string): string {
  return hostPaths(lab, host).socket;
}

export function daemonRunning(lab: string, host: string): boolean {
  return daemonPid(lab, host) !== undefined;
}

export interface HostStatus {
  name: string;
  netns: string;
  ip: string;
  up: boolean;
}

export function labStatus(name: string): { plan: LabPlan; hosts: HostStatus[]; router: boolean } {
  const plan = labPlan(name);
  return {
    plan,
    router: netnsExists(plan.router),
    hosts: plan.hosts.map((h) => ({ name: h.name, netns: h.netns, ip: h.ip, up: netnsExists(h.netns) })),
  };
}
