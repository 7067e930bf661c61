import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { ApiClient } from '../src/cli/client.js';
import { daemonSocket, hostPaths, startDaemon } from '../src/lab/lab.js';

import { labUp } from '../src/lab/lab.js';
import type { LabPlan } from '../src/lab/plan.js';
import { importBusybox } from '../test/lab/swarm-helpers.js';

/** the test image, as the lab tests import it */
export { importBusybox };

const execFileP = promisify(execFile);

export function emit(obj: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

export const round = (x: number, digits = 3): number => Number(x.toFixed(digits));

export async function ns(netns: string, cmd: string[], timeoutMs = 60000): Promise<string> {
  const { stdout } = await execFileP('ip', ['netns', 'exec', netns, ...cmd], { timeout: timeoutMs, encoding: 'utf8', maxBuffer: 16 << 20 });
  return stdout;
}

export async function sh(cmd: string[]): Promise<string> {
  const { stdout } = await execFileP(cmd[0]!, cmd.slice(1), { encoding: 'utf8' });
  return stdout;
}

/** iperf3 single TCP stream from client netns to server netns; Gbit/s received. */
export async function iperfGbps(serverNs: string, serverIp: string, clientNs: string, seconds: number): Promise<number> {
  const server = ns(serverNs, ['iperf3', '-s', '-1', '-B', serverIp], seconds * 1000 + 20000);
  await new Promise((r) => setTimeout(r, 400));
  const out = await ns(clientNs, ['iperf3', '-c', serverIp, '-t', String(seconds), '-J'], seconds * 1000 + 20000);
  await server.catch(() => undefined);
  const j = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } };
  return j.end.sum_received.bits_per_second / 1e9;
}

export async function pingAvgMs(netns: string, ip: string, count = 20): Promise<number> {
  const out = await ns(netns, ['ping', '-c', String(count), '-i', '0.05', '-q', ip]);
  const m = /= [\d.]+\/([\d.]+)\//.exec(out);
  if (!m) throw new Error(`no ping summary: ${out}`);
  return Number(m[1]);
}

/** Polls until fn gives something other than undefined or false; returns it. */
export async function until<T>(fn: () => Promise<T | undefined | false>, timeoutMs: number, stepMs = 5): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error('timeout');
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

function memKb(pid: number, key: string): number {
  const m = new RegExp(`${key}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}
export const rssMb = (pid: number): number => memKb(pid, 'VmRSS') / 1024;
/** RSS minus file-backed pages (mostly the node binary's text, shared by every node process). */
export const anonMb = (pid: number): number => memKb(pid, 'RssAnon') / 1024;

/** A lab host's daemon as every benchmark runs it: the built one, quiet. */
export const startBuilt = (lab: string, host: string): Promise<number> => startDaemon(lab, host, { preferBuild: true, logLevel: 'warn' });
export const apiOf = (lab: string, host: string): ApiClient => new ApiClient(`unix://${daemonSocket(lab, host)}`);
export const daemonPid = (lab: string, host: string): number => Number(fs.readFileSync(hostPaths(lab, host).pid, 'utf8'));

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Two lab hosts, built daemons, node1 the manager and node2 a worker, the busybox image on both. */
export async function twoNodeSwarm(lab: string): Promise<{ plan: LabPlan; a1: ApiClient; a2: ApiClient; pid1: number }> {
  const plan = await labUp(lab, 2);
  const pid1 = await startBuilt(lab, 'node1');
  await startBuilt(lab, 'node2');
  const a1 = apiOf(lab, 'node1');
  const a2 = apiOf(lab, 'node2');
  await a1.post('/swarm/init', {});
  await a2.post('/swarm/join', { RemoteAddrs: [`${plan.hosts[0]!.ip}:2377`], JoinToken: (await a1.get<Json>('/swarm')).JoinTokens.Worker });
  await importBusybox(lab, ['node1', 'node2']);
  return { plan, a1, a2, pid1 };
}

/** The service's running task (its desired state running too), once there is one. */
export function runningTask(a: ApiClient, svc: string): Promise<Json> {
  return until(async () => {
    const ts = await a.get<Json[]>('/tasks', { filters: JSON.stringify({ service: { [svc]: true } }) });
    return ts.find((t) => t.Status.State === 'running' && t.DesiredState === 'running');
  }, 30000);
}

/** A task's network namespace on a lab host. */
export const taskNetns = (lab: string, host: string, t: Json): string => `${lab}-${host}-c-${(t.ID as string).slice(0, 12)}`;

/** A replicated service of `sleep infinity` tasks that stop at once (busybox's sleep ignores SIGTERM). */
export function sleeperSpec(name: string, replicas: number, network?: string, constraints: string[] = []): Record<string, unknown> {
  return {
    Name: name,
    TaskTemplate: {
      ContainerSpec: { Image: 'busybox:local', Args: ['sleep', 'infinity'], StopGracePeriod: 100_000_000 },
      ...(network ? { Networks: [{ Target: network }] } : {}),
      ...(constraints.length ? { Placement: { Constraints: constraints } } : {}),
    },
    Mode: { Replicated: { Replicas: replicas } },
  };
}
