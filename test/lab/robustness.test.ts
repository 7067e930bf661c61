// Issue 2, tests 5-8: drift repair, crash cleanup, endpoint churn, bad input.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { ConflictError, InvalidArgumentError, NotFoundError } from '../../src/core/errors.js';
import { listNetns } from '../../src/kernel/netns.js';
import { Rtnl } from '../../src/kernel/rtnl.js';
import { OverlayHost } from '../../src/overlay/host.js';
import { endpointPair, mountsMatching, nsRun, pingLoss, skipUnlessRoot, startLab } from './helpers.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function linkNames(ns: string): Promise<string[]> {
  const r = Rtnl.open(ns);
  try {
    return (await r.getLinks()).map((l) => l.name).sort();
  } finally {
    r.close();
  }
}

test('reconciler restores hand-deleted FDB and neighbour entries within one period and counts the repair', { skip: skipUnlessRoot }, async (t) => {
  const period = 500;
  const lab = await startLab(t, { tag: 'drift', reconcileMs: period });
  const spec = { id: 'driftnet', subnets: [{ subnet: '10.30.0.0/24', gateway: '10.30.0.1', vni: 4300 }] };
  const { c1, e2 } = await endpointPair(lab, spec, ['10.30.0.3', '10.30.0.4']);
  assert.equal(await pingLoss(c1, '10.30.0.4', 3), 0);
  const net = lab.hosts[0]!.network('driftnet');
  const before = { ...net.repairs };
  const sbx = net.sandbox;
  const del1 = await nsRun(sbx, ['bridge', 'fdb', 'del', e2.mac, 'dev', 'vxlan0', 'dst', lab.plan.hosts[1]!.ip, 'self']);
  const del2 = await nsRun(sbx, ['ip', 'neigh', 'del', '10.30.0.4', 'dev', 'vxlan0']);
  assert.equal(del1.code, 0, del1.out);
  assert.equal(del2.code, 0, del2.out);
  // A foreign entry someone added by hand goes too.
  assert.equal((await nsRun(sbx, ['bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'vxlan0', 'dst', '192.0.2.99', 'self', 'permanent'])).code, 0);
  // Each drift is counted once whichever timer pass finds it.
  const deadline = Date.now() + period * 2 + 500;
  while (Date.now() < deadline && (net.repairs.neigh - before.neigh < 1 || net.repairs.fdb - before.fdb < 2)) await sleep(50);
  assert.equal(net.repairs.neigh - before.neigh, 1, 'neighbour repair counted');
  assert.equal(net.repairs.fdb - before.fdb, 2, 'missing and foreign FDB entries repaired');
  assert.match((await nsRun(sbx, ['ip', 'neigh', 'show', 'dev', 'vxlan0'])).out, new RegExp(`10\\.30\\.0\\.4 lladdr ${e2.mac} PERMANENT`));
  const fdb = (await nsRun(sbx, ['bridge', 'fdb', 'show', 'dev', 'vxlan0'])).out;
  assert.match(fdb, new RegExp(`${e2.mac} dst ${lab.plan.hosts[1]!.ip.replace(/\./g, '\\.')} .*self permanent`));
  assert.doesNotMatch(fdb, /192\.0\.2\.99/);
  assert.equal(await pingLoss(c1, '10.30.0.4', 3), 0);

  // A deleted VTEP is rebuilt too, by the timer.
  const linksBefore = net.repairs.links;
  assert.equal((await nsRun(sbx, ['ip', 'link', 'del', 'vxlan0'])).code, 0);
  const deadline2 = Date.now() + period * 2 + 500;
  while (Date.now() < deadline2 && net.repairs.links === linksBefore) await sleep(50);
  assert.ok(net.repairs.links > linksBefore, 'VTEP re-created');
  assert.equal(await pingLoss(c1, '10.30.0.4', 3), 0);
});

test('kill -9 while building sandboxes: the next start leaves no namespace, link or mount behind', { skip: skipUnlessRoot }, async (t) => {
  const lab = await startLab(t, { tag: 'crash', hosts: 1 });
  const h = lab.plan.hosts[0]!;
  const prefix = `${lab.name}-x-`;
  const containers = [lab.container('k1'), lab.container('k2'), lab.container('k3')];
  for (const delayMs of [0, 15, 40, 90, 200]) {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/lab/fixtures/build-loop.ts', prefix, h.ip, h.netns, ...containers], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      child.on('exit', (code) => reject(new Error(`build loop exited early with ${code}`)));
    });
    await sleep(delayMs);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const host = new OverlayHost({ prefix, underlayIp: h.ip, hostNetns: h.netns, reconcileMs: 0 });
    await host.start();
    await host.close();
    assert.deepEqual(listNetns(prefix), [], `namespaces left after kill at ${delayMs} ms`);
    assert.deepEqual(mountsMatching(prefix), [], 'mounts left');
    assert.deepEqual(await linkNames(h.netns), ['eth0', 'lo'], 'links left in the host namespace');
    for (const c of containers) assert.deepEqual(await linkNames(c), ['lo'], `links left in ${c}`);
  }
});

test('200 endpoints attached and detached on one host leave nothing behind', { skip: skipUnlessRoot }, async (t) => {
  const lab = await startLab(t, { tag: 'churn', hosts: 1 });
  const host = lab.hosts[0]!;
  const net = await host.createNetwork({ id: 'churn', subnets: [{ subnet: '10.40.0.0/23', gateway: '10.40.0.1', vni: 4400 }] });
  const baseline = await linkNames(net.sandbox);
  const containers = Array.from({ length: 200 }, (_, i) => lab.container(`e${i}`));
  const eps = [];
  for (const [i, c] of containers.entries()) eps.push(await host.attach('churn', { id: `e${i}`, netns: c, ip: `10.40.${i < 200 ? 0 : 1}.${10 + i}` }));
  assert.equal(net.endpointCount, 200);
  assert.equal((await linkNames(net.sandbox)).length, baseline.length + 200);
  assert.equal(new Set(eps.map((e) => e.mac)).size, 200, 'MACs unique');
  for (const e of eps) await host.detach('churn', e.id);
  assert.equal(net.endpointCount, 0);
  assert.deepEqual(await linkNames(net.sandbox), baseline);
  for (const c of containers.slice(0, 20)) assert.deepEqual(await linkNames(c), ['lo']);
  const r = await net.reconcile();
  assert.equal(r.repairs.endpoints + r.repairs.links, 0);
  const sbx = net.sandbox;
  await host.deleteNetwork('churn');
  assert.ok(!listNetns(lab.name).includes(sbx));
  assert.deepEqual(mountsMatching(sbx), []);
});

test('bad input: a typed error and no kernel object left half made', { skip: skipUnlessRoot }, async (t) => {
  const lab = await startLab(t, { tag: 'bad', hosts: 1 });
  const host = lab.hosts[0]!;
  const bad = async (spec: Parameters<OverlayHost['createNetwork']>[0], cls: typeof InvalidArgumentError, re: RegExp): Promise<void> => {
    const before = listNetns(lab.name);
    await assert.rejects(host.createNetwork(spec), (e: unknown) => e instanceof cls && re.test((e as Error).message));
    assert.deepEqual(listNetns(lab.name), before);
  };
  await bad({ id: 'n', subnets: [{ subnet: '10.0.0.0/33', gateway: '10.0.0.1', vni: 4097 }] }, InvalidArgumentError, /invalid CIDR "10\.0\.0\.0\/33"/);
  await bad({ id: 'n', subnets: [{ subnet: '10.0.0.300/24', gateway: '10.0.0.1', vni: 4097 }] }, InvalidArgumentError, /invalid CIDR/);
  await bad({ id: 'n', subnets: [{ subnet: '10.0.0.5/24', gateway: '10.0.0.1', vni: 4097 }] }, InvalidArgumentError, /host bits set/);
  await bad({ id: 'n', subnets: [{ subnet: '10.0.0.0/24', gateway: '10.0.1.1', vni: 4097 }] }, InvalidArgumentError, /gateway 10\.0\.1\.1 is outside/);
  await bad({ id: 'n', subnets: [{ subnet: '10.0.0.0/24', gateway: '10.0.0.1', vni: 0 }] }, InvalidArgumentError, /invalid VNI 0/);
  await bad({ id: 'n', subnets: [{ subnet: '10.0.0.0/24', gateway: '10.0.0.1', vni: 1 << 24 }] }, InvalidArgumentError, /invalid VNI 16777216/);
  await bad({ id: 'n/../x', subnets: [{ subnet: '10.0.0.0/24', gateway: '10.0.0.1', vni: 4097 }] }, InvalidArgumentError, /invalid network ID/);
  await bad(
    {
      id: 'n',
      subnets: [
        { subnet: '10.0.0.0/16', gateway: '10.0.0.1', vni: 4097 },
        { subnet: '10.0.1.0/24', gateway: '10.0.1.1', vni: 4098 },
      ],
    },
    InvalidArgumentError,
    /overlap/,
  );

  const net = await host.createNetwork({ id: 'good', subnets: [{ subnet: '10.50.0.0/24', gateway: '10.50.0.1', vni: 4500 }] });
  // Same VNI for another network on this host: conflict, nothing made.
  await bad({ id: 'other', subnets: [{ subnet: '10.51.0.0/24', gateway: '10.51.0.1', vni: 4500 }] }, ConflictError, /VNI 4500 is already used/);
  const c = lab.container('c');
  const links = await linkNames(net.sandbox);
  const badEp = async (attach: () => Promise<unknown>, cls: typeof InvalidArgumentError, re: RegExp): Promise<void> => {
    const before = await linkNames(net.sandbox);
    await assert.rejects(attach(), (e: unknown) => e instanceof cls && re.test((e as Error).message));
    assert.deepEqual(await linkNames(net.sandbox), before);
  };
  await badEp(
    () => host.attach('good', { id: 'e1', netns: c, ip: '10.60.0.3' }),
    InvalidArgumentError,
    /10\.60\.0\.3 is outside the network's subnets \(10\.50\.0\.0\/24\)/,
  );
  await badEp(() => host.attach('good', { id: 'e1', netns: c, ip: '10.50.0.1' }), InvalidArgumentError, /is the gateway/);
  await badEp(() => host.attach('good', { id: 'e1', netns: c, ip: 'banana' }), InvalidArgumentError, /invalid IPv4 address "banana"/);
  await badEp(() => host.attach('good', { id: 'e1', netns: `${lab.name}-nosuch`, ip: '10.50.0.3' }), NotFoundError, /container namespace .* not found/);
  assert.deepEqual(await linkNames(net.sandbox), links);
  await host.attach('good', { id: 'e1', netns: c, ip: '10.50.0.3' });
  const withOne = await linkNames(net.sandbox);
  await badEp(() => host.attach('good', { id: 'e1', netns: c, ip: '10.50.0.4' }), ConflictError, /endpoint e1 is already attached/);
  const c2 = lab.container('c2');
  await badEp(() => host.attach('good', { id: 'e2', netns: c2, ip: '10.50.0.3' }), ConflictError, /address 10\.50\.0\.3 is already used by endpoint e1/);
  // Same interface name already in the container: the half-made veth is removed.
  await badEp(() => host.attach('good', { id: 'e3', netns: c, ip: '10.50.0.5' }), ConflictError, /interface eth0 already exists/);
  assert.deepEqual(await linkNames(net.sandbox), withOne);
  assert.deepEqual(await linkNames(c2), ['lo']);
  await assert.rejects(net.setPeers([{ ip: '10.50.0.9', mac: 'zz:00:00:00:00:01', vtep: '192.168.1.5' }]), InvalidArgumentError);
  await assert.rejects(net.setPeers([{ ip: '10.99.0.9', mac: '02:00:00:00:00:01', vtep: '192.168.1.5' }]), /outside the network's subnets/);
  assert.equal(net.listPeers().length, 0);
});
