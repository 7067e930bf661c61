import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConflictError, InvalidArgumentError, NotFoundError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/log.js';
import { formatIp, parseIp } from '../../src/core/ipv4.js';
import { nextFitIp, planSubnets, planVnis } from '../../src/cluster/manager/allocator.js';
import { certInfo, createCsr, createRootCA, renewalDelayMs } from '../../src/cluster/manager/ca.js';
import { ForbiddenError, Manager } from '../../src/cluster/manager/manager.js';
import { Store } from '../../src/cluster/manager/store.js';
import { MemKv } from '../../src/cluster/etcd/memkv.js';
import { caDigest, formatToken, parseToken } from '../../src/cluster/manager/tokens.js';

const log = createLogger();
async function newManager(extra: Partial<Parameters<typeof Manager.init>[1]> = {}): Promise<Manager> {
  const m = await Manager.init(
    await Store.open(new MemKv()),
    {
      nodeId: 'self0000000000000000000000',
      hostname: 'node1',
      advertiseAddr: '172.31.1.5',
      managerAddr: '172.31.1.5:2377',
      engineVersion: 'test',
      ca: await createRootCA(),
      ...extra,
    },
    log,
  );
  return m;
}

test('tokens: format, parse, reject junk', () => {
  const d = caDigest(Buffer.from('ca'));
  assert.equal(d.length, 50);
  const t = formatToken(d, 'a'.repeat(25));
  assert.deepEqual(parseToken(t), { version: 1, caDigest: d, secret: 'a'.repeat(25) });
  for (const bad of ['', 'SWMTKN-1-abc-def', `SWMTKN-2-${d}-${'a'.repeat(25)}`, `SWMTKN-1-${d.toUpperCase()}-${'a'.repeat(25)}`])
    assert.throws(() => parseToken(bad), InvalidArgumentError);
});

test('allocator: pool subnets in order, user subnets validated, next-fit IPs', () => {
  const a = planSubnets([], [], ['10.0.0.0/8'], 24);
  assert.deepEqual(a, [{ subnet: '10.0.0.0/24', gateway: '10.0.0.1' }]);
  const b = planSubnets([{ network: parseIp('10.0.0.0'), prefix: 24 }], [], ['10.0.0.0/8'], 24);
  assert.equal(b[0]!.subnet, '10.0.1.0/24');
  assert.throws(() => planSubnets([], [{ subnet: '10.0.0.0/24', gateway: '10.0.1.1' }], [], 24), /outside subnet/);
  assert.throws(() => planSubnets([{ network: parseIp('10.0.0.0'), prefix: 16 }], [{ subnet: '10.0.5.0/24' }], [], 24), /overlaps/);
  assert.throws(() => planSubnets([], [{ gateway: '10.0.0.1' }], ['10.0.0.0/8'], 24), /needs a subnet/);
  assert.throws(() => planSubnets([{ network: parseIp('10.9.0.0'), prefix: 24 }], [], ['10.9.0.0/24'], 24), /could not find an available/);
  assert.deepEqual(planSubnets([], [{ subnet: '10.1.0.0/16', gateway: '10.1.0.254', ipRange: '10.1.1.0/24' }], [], 24), [
    { subnet: '10.1.0.0/16', gateway: '10.1.0.254', ipRange: '10.1.1.0/24' },
  ]);
  assert.deepEqual(planVnis(new Set([4096, 4098]), 2), [4097, 4099]);
  assert.throws(() => planVnis(new Set([5000]), 1, [5000]), /already in use/);
  const cfg = { subnet: '10.0.0.0/29', gateway: '10.0.0.1' };
  const taken = new Set<number>();
  const got: string[] = [];
  let last: number | undefined;
  for (let i = 0; i < 5; i++) {
    const ip = nextFitIp(cfg, last, (x) => taken.has(x))!;
    taken.add(ip);
    last = ip;
    got.push(formatIp(ip));
  }
  assert.deepEqual(got, ['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6']);
  assert.equal(
    nextFitIp(cfg, last, (x) => taken.has(x)),
    undefined,
  );
  taken.delete(parseIp('10.0.0.3'));
  taken.delete(parseIp('10.0.0.5'));
  // next-fit: after .6 wraps to .3, not straight back to the most recently freed .5
  assert.equal(formatIp(nextFitIp(cfg, last, (x) => taken.has(x))!), '10.0.0.3');
});

test('init: cluster, self node, ingress; tokens differ by role and pin the CA', async () => {
  const m = await newManager();
  const nodes = m.listNodes();
  assert.equal(nodes.length, 1);
  assert.equal(nodes[0]!.role, 'manager');
  const ingress = m.findNetwork('ingress');
  assert.equal(ingress.ingress, true);
  assert.deepEqual(ingress.vnis, [4096]);
  assert.equal(ingress.ipam.configs[0]!.subnet, '10.255.0.0/16');
  const t = m.joinTokens();
  assert.notEqual(t.worker, t.manager);
  assert.equal(parseToken(t.worker).caDigest, m.caDigest);
  const before = t.worker;
  await m.rotateToken('worker');
  assert.notEqual(m.joinTokens().worker, before);
  assert.equal(m.joinTokens().manager, t.manager);
  m.close();
});

test('join: wrong secret is refused, right one yields a worker certificate', async () => {
  const m = await newManager();
  const { csrPem } = await createCsr();
  const good = m.joinTokens().worker;
  const wrong = formatToken(m.caDigest, 'z'.repeat(25));
  await assert.rejects(m.join({ token: wrong, csrPem, hostname: 'node2', addr: '192.168.1.5', engineVersion: 'x' }), ForbiddenError);
  const otherCa = formatToken('1'.repeat(50), parseToken(good).secret);
  await assert.rejects(m.join({ token: otherCa, csrPem, hostname: 'node2', addr: '192.168.1.5', engineVersion: 'x' }), /another swarm/);
  await assert.rejects(m.join({ token: 'garbage', csrPem, hostname: 'node2', addr: '192.168.1.5', engineVersion: 'x' }), /invalid join token/);
  assert.equal(m.listNodes().length, 1);
  const r = await m.join({ token: good, csrPem, hostname: 'node2', addr: '192.168.1.5', engineVersion: 'x' });
  assert.equal(r.role, 'worker');
  const info = certInfo(r.certPem);
  assert.deepEqual([info.nodeId, info.role, info.clusterId], [r.nodeId, 'worker', m.cluster().id]);
  const days = (info.notAfter.getTime() - info.notBefore.getTime()) / 86400000;
  assert.ok(days > 89.9 && days < 90.1, `${days} days`);
  const delay = renewalDelayMs(info.notBefore, info.notAfter, info.notBefore.getTime(), () => 0);
  assert.equal(Math.round((delay / 86400000 / 90) * 100), 50);
  assert.equal(m.findNode('node2').id, r.nodeId);
  m.close();
});

test('networks: create, lookup, duplicate, bad input changes nothing, in-use and ingress removal refused', async () => {
  const m = await newManager();
  const n = await m.createNetwork({ name: 'uber-net', driver: 'overlay' });
  assert.deepEqual(n.ipam.configs, [{ subnet: '10.0.0.0/24', gateway: '10.0.0.1' }]);
  assert.equal(n.options['com.docker.network.driver.overlay.vxlanid_list'], '4097');
  assert.equal(m.findNetwork(n.id.slice(0, 5)).name, 'uber-net');
  const count = m.listNetworks().length;
  const bad: Array<[Parameters<Manager['createNetwork']>[0], typeof InvalidArgumentError]> = [
    [{ name: 'uber-net' }, ConflictError],
    [{ name: 'a/b' }, InvalidArgumentError],
    [{ name: '' }, InvalidArgumentError],
    [{ name: 'x', driver: 'bridge' }, InvalidArgumentError],
    [{ name: 'x', subnets: [{ subnet: '10.0.0.0/16' }] }, InvalidArgumentError],
    [{ name: 'x', subnets: [{ subnet: 'nope' }] }, InvalidArgumentError],
    [{ name: 'x', options: { 'com.docker.network.driver.mtu': '20' } }, InvalidArgumentError],
    [{ name: 'x', options: { 'com.docker.network.driver.overlay.vxlanid_list': '4097' } }, InvalidArgumentError],
  ];
  for (const [req, cls] of bad) await assert.rejects(m.createNetwork(req), cls, JSON.stringify(req));
  assert.equal(m.listNetworks().length, count);
  const multi = await m.createNetwork({ name: 'prod-net', subnets: [{ subnet: '10.1.1.0/24' }, { subnet: '10.2.1.0/24' }] });
  assert.deepEqual(multi.vnis, [4098, 4099]);
  const { attachment } = await m.attach('uber-net', m.selfId, 'ep1');
  assert.equal(attachment.ip, '10.0.0.2');
  await assert.rejects(m.removeNetwork('uber-net'), /in use by 1 endpoint/);
  await assert.rejects(m.removeNetwork('ingress'), ForbiddenError);
  await m.detach(attachment.id);
  await m.removeNetwork('uber-net');
  assert.throws(() => m.findNetwork('uber-net'), NotFoundError);
  // its VNI and subnet are free again
  assert.equal((await m.createNetwork({ name: 'again' })).ipam.configs[0]!.subnet, '10.0.0.0/24');
  m.close();
});

test('attachments: next-fit addresses, exhaustion is a clear error', async () => {
  const m = await newManager();
  await m.createNetwork({ name: 'tiny', subnets: [{ subnet: '10.9.0.0/29' }] });
  const ips = [];
  for (let i = 0; i < 5; i++) ips.push((await m.attach('tiny', m.selfId, `e${i}`)).attachment);
  assert.deepEqual(
    ips.map((a) => a.ip),
    ['10.9.0.2', '10.9.0.3', '10.9.0.4', '10.9.0.5', '10.9.0.6'],
  );
  await assert.rejects(m.attach('tiny', m.selfId, 'e5'), /could not find an available IP address on network tiny/);
  await m.detach(ips[1]!.id);
  assert.equal((await m.attach('tiny', m.selfId, 'e6')).attachment.ip, '10.9.0.3');
  assert.equal(new Set(ips.map((a) => a.mac)).size, 5);
  m.close();
});

test('a custom default pool and subnet size drive ingress and user networks', async () => {
  const m = await newManager({ defaultAddrPool: ['10.20.0.0/16'], subnetSize: 26 });
  assert.equal(m.findNetwork('ingress').ipam.configs[0]!.subnet, '10.20.0.0/26');
  assert.equal((await m.createNetwork({ name: 'n' })).ipam.configs[0]!.subnet, '10.20.0.64/26');
  m.close();
  await assert.rejects(newManager({ defaultAddrPool: ['10.20.0.0/16'], subnetSize: 8 }), /smaller than the subnet size/);
});
