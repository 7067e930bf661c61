// Kernel objects of one overlay network on one host: the sandbox namespace, and per
// subnet a bridge with the gateway address plus a VXLAN VTEP whose UDP socket stays in
// the host namespace. Every step is idempotent so the reconciler can re-run it.
import { ConflictError, KernelError } from '../core/errors.js';
import { formatIp } from '../core/ipv4.js';
import { deleteNetns, listNetns, writeSysctl } from '../kernel/netns.js';
import { createNetnsAsync } from '../kernel/thread.js';
import { destroyNetns } from '../kernel/teardown.js';
import { Rtnl, type LinkInfo } from '../kernel/rtnl.js';
import { bridgeName, sandboxPrefix, vxlanName } from './names.js';
import type { ParsedSubnet } from './spec.js';

export interface SandboxConfig {
  name: string;
  subnets: ParsedSubnet[];
  mtu: number;
  port: number;
  /** the VTEPs' source: the underlay address, or the tunnel's for an encrypted network */
  underlayIp: string;
  encrypted?: boolean;
  /** namespace holding the underlay (undefined: ours) */
  hostNetns: string | undefined;
}

/** Creates the namespace and its devices. On failure everything made so far is removed. */
export async function buildSandbox(cfg: SandboxConfig, host: Rtnl): Promise<Rtnl> {
  await createNetnsAsync(cfg.name);
  let sbx: Rtnl | undefined;
  try {
    sbx = Rtnl.open(cfg.name);
    await ensureSandboxLinks(cfg, host, sbx);
    return sbx;
  } catch (e) {
    if (sbx) await destroySandbox(cfg.name, sbx).catch(() => undefined);
    else deleteNetns(cfg.name);
    throw e;
  }
}

/**
 * Makes the devices in a sandbox match `cfg`. Returns how many devices or addresses it
 * had to create or fix: on a sandbox built earlier, each one is drift that got repaired.
 */
export async function ensureSandboxLinks(cfg: SandboxConfig, host: Rtnl, sbx: Rtnl): Promise<number> {
  let fixes = 0;
  const links = new Map((await sbx.getLinks()).map((l) => [l.name, l]));
  const addrs = await sbx.getAddresses();
  const lo = links.get('lo');
  if (lo && !lo.up) await sbx.setLink(lo.index, { up: true });
  if (cfg.subnets.length > 1) writeSysctl(cfg.name, 'net.ipv4.ip_forward', '1');
  for (const s of cfg.subnets) {
    const name = bridgeName(s.index);
    let br = links.get(name);
    if (!br || br.kind !== 'bridge') {
      await sbx.ensureBridge(name, { mtu: cfg.mtu });
      br = await sbx.mustGetLink(name);
      fixes++;
    } else if (br.mtu !== cfg.mtu || !br.up) {
      fixes++;
    }
    if (br.mtu !== cfg.mtu || !br.up) await sbx.setLink(br.index, { mtu: cfg.mtu, up: true });
    const gw = formatIp(s.gateway);
    const brIndex = br.index;
    if (!addrs.some((a) => a.index === brIndex && a.ip === gw && a.prefix === s.cidr.prefix)) {
      await sbx.replaceAddress(brIndex, gw, s.cidr.prefix);
      fixes++;
    }
    fixes += await ensureVxlan(cfg, host, sbx, s, brIndex, links.get(vxlanName(s.index)));
  }
  return fixes;
}

async function ensureVxlan(cfg: SandboxConfig, host: Rtnl, sbx: Rtnl, s: ParsedSubnet, brIndex: number, have: LinkInfo | undefined): Promise<number> {
  const name = vxlanName(s.index);
  const ok =
    have?.kind === 'vxlan' &&
    have.vxlan?.vni === s.vni &&
    have.vxlan.port === cfg.port &&
    have.vxlan.local === cfg.underlayIp &&
    !have.vxlan.learning &&
    have.vxlan.proxy;
  let vx = have;
  let fixes = 0;
  if (!ok) {
    if (have) await sbx.deleteLink(have.index);
    try {
      await host.createVxlan(name, { vni: s.vni, port: cfg.port, local: cfg.underlayIp, mtu: cfg.mtu, learning: false, proxy: true, netns: cfg.name });
    } catch (e) {
      if (e instanceof KernelError && e.code === 'EEXIST')
        throw new ConflictError(`VNI ${s.vni} (port ${cfg.port}) is already used by another VXLAN device on this host`);
      throw e;
    }
    vx = await sbx.mustGetLink(name);
    fixes++;
  }
  if (!vx) throw new KernelError('get link', name, 19, 'ENODEV');
  if (vx.master !== brIndex || vx.mtu !== cfg.mtu || !vx.up) {
    await sbx.setLink(vx.index, { master: brIndex, mtu: cfg.mtu, up: true });
    if (ok) fixes++;
  }
  return fixes;
}

/** Deletes the sandbox (VTEPs first); closes `sbx` if given. */
export async function destroySandbox(name: string, sbx?: Rtnl): Promise<void> {
  await destroyNetns(name, sbx);
}

/** Removes every sandbox under `prefix` (what a crashed run left behind). */
export async function removeStaleSandboxes(prefix: string, keep: ReadonlySet<string> = new Set()): Promise<string[]> {
  const removed: string[] = [];
  for (const name of listNetns(sandboxPrefix(prefix))) {
    if (keep.has(name)) continue;
    await destroySandbox(name);
    removed.push(name);
  }
  return removed;
}
