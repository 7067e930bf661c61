// A lab whose hosts run real vxswarm daemons; the stock docker CLI and our CLI drive them.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { ApiClient } from '../../src/cli/client.js';
import path from 'node:path';
import { stopStaleEtcd } from '../../src/cluster/etcd/member.js';
import { daemonSocket, hostPaths, labDown, labUp, startDaemon, stopDaemon } from '../../src/lab/lab.js';
import type { LabPlan } from '../../src/lab/plan.js';
import { uniqueLabName } from './helpers.js';

const execFileP = promisify(execFile);
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
export const DOCKER = '/usr/local/bin/docker';
export const hasDocker = fs.existsSync(DOCKER);

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class SwarmLab {
  plan!: LabPlan;
  constructor(readonly name: string) {}

  static async up(tag: string, hosts: number, reconcileMs?: number, extraArgs?: string[]): Promise<SwarmLab> {
    const lab = new SwarmLab(uniqueLabName(tag));
    try {
      lab.plan = await labUp(lab.name, hosts);
      await Promise.all(
        lab.plan.hosts.map((h) => startDaemon(lab.name, h.name, { ...(reconcileMs ? { reconcileMs } : {}), ...(extraArgs ? { extraArgs } : {}) })),
      );
    } catch (e) {
      await labDown(lab.name);
      throw e;
    }
    return lab;
  }

  async down(): Promise<void> {
    // For debugging a failure by hand: keep the hosts and daemons (remove with `vxswarm lab down --name`).
    if (process.env.VXSWARM_KEEP_LAB) return void console.log(`# kept lab ${this.name}`);
    // For reading a failure afterwards: every host's daemon log, kept under this directory.
    const keep = process.env.VXSWARM_LAB_LOGS;
    if (keep) {
      fs.mkdirSync(path.join(keep, this.name), { recursive: true });
      for (const h of this.plan?.hosts ?? []) {
        const log = hostPaths(this.name, h.name).log;
        if (fs.existsSync(log)) fs.copyFileSync(log, path.join(keep, this.name, `${h.name}.log`));
      }
    }
    await labDown(this.name);
  }

  host(name: string): LabPlan['hosts'][number] {
    return this.plan.hosts.find((h) => h.name === name)!;
  }
  socket(host: string): string {
    return daemonSocket(this.name, host);
  }
  api(host: string): ApiClient {
    return new ApiClient(`unix://${this.socket(host)}`);
  }
  start(host: string): Promise<number> {
    return startDaemon(this.name, host);
  }
  stop(host: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<boolean> {
    return stopDaemon(this.name, host, signal);
  }
  /** The host dies: its daemon and the etcd member a kill -9 of the daemon alone leaves running. */
  async crash(host: string): Promise<void> {
    await stopDaemon(this.name, host, 'SIGKILL');
    await stopStaleEtcd(path.join(hostPaths(this.name, host).root, 'etcd'), 'SIGKILL');
  }

  async docker(host: string, args: string[]): Promise<RunResult> {
    return run(DOCKER, args, { DOCKER_HOST: `unix://${this.socket(host)}` });
  }

  /** The docker CLI's output; a failure fails the test, with what it said. */
  async dockerOk(host: string, args: string[]): Promise<string> {
    const r = await this.docker(host, args);
    if (r.code !== 0) throw new Error(`docker ${args.join(' ')} on ${host} (exit ${r.code}): ${r.stderr}`);
    return r.stdout;
  }

  /** A service's tasks still wanted running, as the manager on `host` lists them. */
  async tasks(service: string, host = 'node1'): Promise<Json[]> {
    const all = await this.api(host).get<Json[]>(`/tasks?filters=${encodeURIComponent(JSON.stringify({ service: { [service]: true } }))}`);
    return all.filter((t) => t.DesiredState === 'running');
  }

  /** Our CLI, from the TypeScript source. */
  /** A container of a running task of `svc` on `host`, once there is one. */
  containerOf(host: string, svc: string, timeoutMs = 30_000): Promise<string> {
    return waitFor(
      `a running ${svc} container on ${host}`,
      async () => (await this.dockerOk(host, ['ps', '-q', '--filter', `label=com.docker.swarm.service.name=${svc}`])).split('\n').filter(Boolean)[0],
      timeoutMs,
      200,
    );
  }

  async vx(host: string, args: string[]): Promise<RunResult> {
    return run(process.execPath, ['--import', 'tsx', 'src/cli/entry.ts', '-H', `unix://${this.socket(host)}`, ...args], {});
  }

  /** Raw Engine API request (status and body), for bad-input checks. */
  raw(
    host: string,
    method: string,
    path: string,
    body?: string,
    headers: Record<string, string> = {},
    timeoutMs?: number,
  ): Promise<{ status: number; body: string }> {
    return rawRequest(this.socket(host), method, path, body, headers, timeoutMs);
  }
}

async function run(cmd: string, args: string[], env: Record<string, string>): Promise<RunResult> {
  try {
    const r = await execFileP(cmd, args, { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : 1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

async function rawRequest(
  socketPath: string,
  method: string,
  path: string,
  body?: string | Buffer,
  headers: Record<string, string> = {},
  timeoutMs?: number,
): Promise<{ status: number; body: string }> {
  const http = await import('node:http');
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        socketPath,
        method,
        path,
        headers: { ...(body !== undefined ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } : {}), ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('error', reject);
    if (timeoutMs) req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.end(body);
  });
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number, stepMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** init on node1, join every other host as a worker, import the busybox image everywhere. */
export async function formSwarm(lab: SwarmLab, image = 'busybox:local'): Promise<void> {
  const init = await lab.vx('node1', ['swarm', 'init', '--advertise-addr', lab.host('node1').ip]);
  if (init.code !== 0) throw new Error(`swarm init: ${init.stderr}`);
  const token = (await lab.vx('node1', ['swarm', 'join-token', '-q', 'worker'])).stdout.trim();
  for (const h of lab.plan.hosts) {
    if (h.name === 'node1') continue;
    const j = await lab.vx(h.name, ['swarm', 'join', '--token', token, `${lab.host('node1').ip}:2377`]);
    if (j.code !== 0) throw new Error(`swarm join ${h.name}: ${j.stderr}`);
  }
  await importBusybox(
    lab.name,
    lab.plan.hosts.map((h) => h.name),
    image,
  );
}

/** Imports the busybox test image (as `image`) on each of a lab's hosts. */
export async function importBusybox(labName: string, hosts: string[], image = 'busybox:local'): Promise<void> {
  const { buildBusyboxRootfs } = await import('../../src/lab/image.js');
  const tar = `/tmp/${labName}-rootfs.tar`;
  buildBusyboxRootfs(tar);
  try {
    const body = fs.readFileSync(tar);
    const [repo, tag] = image.split(':') as [string, string];
    for (const h of hosts) {
      const imp = await rawUpload(daemonSocket(labName, h), `/images/create?fromSrc=-&repo=${repo}&tag=${tag}`, body);
      if (imp.status !== 200) throw new Error(`import on ${h}: ${imp.status} ${imp.body}`);
    }
  } finally {
    fs.rmSync(tar, { force: true });
  }
}

export function rawUpload(socketPath: string, path: string, body: Buffer): Promise<{ status: number; body: string }> {
  return rawRequest(socketPath, 'POST', path, body, { 'Content-Type': 'application/x-tar' });
}
