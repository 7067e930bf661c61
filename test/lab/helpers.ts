// Lab test scaffolding: a lab with a unique name per test, removed even when the test fails.
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import type { TestContext } from 'node:test';
import { createNetns } from '../../src/kernel/netns.js';
import { labDown, labUp } from '../../src/lab/lab.js';
import type { LabPlan } from '../../src/lab/plan.js';
import { OverlayHost } from '../../src/overlay/host.js';
import type { Endpoint } from '../../src/overlay/network.js';

const execFileP = promisify(execFile);

export const isRoot = process.getuid?.() === 0;
export const skipUnlessRoot = isRoot ? false : 'lab tests need root';

export function uniqueLabName(tag: string): string {
  return `${tag.slice(0, 4)}${randomBytes(4).toString('hex').slice(0, 7)}`;
}

export interface Lab {
  name: string;
  plan: LabPlan;
  hosts: OverlayHost[];
  /** makes a container namespace "<lab>-<tag>" */
  container(tag: string): string;
}

export async function startLab(t: TestContext, opts: { tag: string; hosts?: number; mtu?: number; reconcileMs?: number; l2?: number }): Promise<Lab> {
  const name = uniqueLabName(opts.tag);
  t.after(async () => {
    for (const h of lab.hosts) await h.close().catch(() => undefined);
    await labDown(name);
  });
  const lab: Lab = {
    name,
    plan: undefined as unknown as LabPlan,
    hosts: [],
    container(tag: string): string {
      const ns = `${name}-${tag}`;
      createNetns(ns);
      return ns;
    },
  };
  lab.plan = await labUp(name, opts.hosts ?? 2, opts.l2, opts.mtu ?? 1500);
  for (const h of lab.plan.hosts) {
    const host = new OverlayHost({ prefix: `${name}-${h.name}-`, underlayIp: h.ip, hostNetns: h.netns, reconcileMs: opts.reconcileMs ?? 0 });
    await host.start();
    lab.hosts.push(host);
  }
  return lab;
}

/** Points each host's peers of `networkId` at the endpoints on the other hosts. */
export async function meshPeers(lab: Lab, networkId: string, endpoints: Array<{ host: number; ep: Endpoint }>): Promise<void> {
  await Promise.all(
    lab.hosts.map((h, i) =>
      h.setPeers(
        networkId,
        endpoints.filter((e) => e.host !== i).map((e) => ({ ip: e.ep.ip, mac: e.ep.mac, vtep: lab.plan.hosts[e.host]!.ip })),
      ),
    ),
  );
}

/**
 * The common shape of a data-plane test: the network on both hosts, one endpoint on each
 * (container namespaces c1 and c2), and each host's peers pointed at the other's endpoint.
 */
export async function endpointPair(
  lab: Lab,
  spec: Parameters<OverlayHost['createNetwork']>[0],
  ips: [string, string],
): Promise<{ c1: string; c2: string; e1: Endpoint; e2: Endpoint }> {
  await Promise.all(lab.hosts.map((h) => h.createNetwork(spec)));
  const c1 = lab.container('c1');
  const c2 = lab.container('c2');
  const e1 = await lab.hosts[0]!.attach(spec.id, { id: 'c1', netns: c1, ip: ips[0] });
  const e2 = await lab.hosts[1]!.attach(spec.id, { id: 'c2', netns: c2, ip: ips[1] });
  await meshPeers(lab, spec.id, [
    { host: 0, ep: e1 },
    { host: 1, ep: e2 },
  ]);
  return { c1, c2, e1, e2 };
}

export async function nsRun(ns: string, cmd: string[], timeoutMs = 20000): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await execFileP('ip', ['netns', 'exec', ns, ...cmd], { timeout: timeoutMs, encoding: 'utf8' });
    return { code: 0, out: stdout + stderr };
  } catch (e) {
    const ee = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof ee.code === 'number' ? ee.code : 1, out: `${ee.stdout ?? ''}${ee.stderr ?? ''}` };
  }
}

/** ping; returns the loss percentage (100 when ping itself failed to report). */
export async function pingLoss(ns: string, ip: string, count = 5, extra: string[] = []): Promise<number> {
  const r = await nsRun(ns, ['ping', '-c', String(count), '-i', '0.2', '-W', '1', ...extra, ip]);
  const m = /(\d+(?:\.\d+)?)% packet loss/.exec(r.out);
  return m ? Number(m[1]) : 100;
}

/** ICMP echo requests a namespace has received (from /proc/net/snmp, which is per namespace). */
export function icmpInEchos(ns: string): number {
  const lines = execFileSync('ip', ['netns', 'exec', ns, 'cat', '/proc/net/snmp'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.startsWith('Icmp:'));
  const keys = lines[0]!.split(/\s+/);
  const vals = lines[1]!.split(/\s+/);
  return Number(vals[keys.indexOf('InEchos')]);
}

export function mountsMatching(fragment: string): string[] {
  return execFileSync('cat', ['/proc/self/mountinfo'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.includes(fragment));
}
