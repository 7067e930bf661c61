// Test hosts on this machine: one namespace per host and one router namespace, with no
// link to the machine's own namespace, so lab traffic can never leave the machine.
import fs from 'node:fs';
import path from 'node:path';
import { NotFoundError } from '../core/errors.js';
import { createNetns, listNetns, netnsExists, writeSysctl } from '../kernel/netns.js';
import { Rtnl } from '../kernel/rtnl.js';
import { destroyNetns } from '../kernel/teardown.js';
import { planLab, type LabPlan } from './plan.js';

export const LAB_STATE_DIR = '/run/vxswarm/labs';
const statePath = (name: string): string => path.join(LAB_STATE_DIR, `${name}.json`);

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
      for (const n of plan.nets) {
        await r.ensureBridge(n.bridge, { mtu });
        const br = await r.mustGetLink(n.bridge);
        await r.replaceAddress(br.index, n.gateway, n.prefix);
        await r.setLink(br.index, { up: true });
      }
      for (const h of plan.hosts) {
        createNetns(h.netns);
        await r.createVeth(h.routerIf, { mtu, peerName: 'eth0', peerNetns: h.netns });
        const v = await r.mustGetLink(h.routerIf);
        const br = await r.mustGetLink(plan.nets[h.l2]!.bridge);
        await r.setLink(v.index, { master: br.index, up: true });
        const net = plan.nets[h.l2]!;
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
    } finally {
      r.close();
    }
  } catch (e) {
    await labDown(name).catch(() => undefined);
    throw e;
  }
  return plan;
}

export function labPlan(name: string): LabPlan {
  try {
    return JSON.parse(fs.readFileSync(statePath(name), 'utf8')) as LabPlan;
  } catch {
    throw new NotFoundError(`lab ${name} is not up`);
  }
}

/** Removes every namespace whose name starts with "<name>-" (hosts, router, and what lived in them), VTEPs first. */
export async function labDown(name: string): Promise<string[]> {
  const removed: string[] = [];
  // Reverse order removes "x-node1-ov-..." before "x-node1": children before the host they hang off.
  for (const ns of listNetns(`${name}-`).reverse()) {
    await destroyNetns(ns);
    removed.push(ns);
  }
  fs.rmSync(statePath(name), { force: true });
  return removed;
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
