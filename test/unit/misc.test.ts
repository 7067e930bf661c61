import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatMac } from '../../src/core/ids.js';
import { Mutex } from '../../src/core/mutex.js';
import { attr, macToBuffer, nested, parseAttrs, readStr, readU32, str, u32, u8 } from '../../src/kernel/nlattr.js';
import { planLab } from '../../src/lab/plan.js';

test('netlink attributes: encode, pad to 4, nest, parse back', () => {
  const a = str(3, 'eth0');
  assert.equal(a.length, 12); // 4 header + 5 bytes + 3 pad
  assert.equal(a.readUInt16LE(0), 9);
  const n = nested(18, [str(1, 'vxlan'), u32(2, 4097), u8(7, 0)]);
  assert.equal(n.readUInt16LE(2) & 0x8000, 0x8000);
  const outer = parseAttrs(Buffer.concat([a, n]));
  assert.equal(readStr(outer.get(3)), 'eth0');
  const inner = parseAttrs(outer.get(18)!);
  assert.equal(readStr(inner.get(1)), 'vxlan');
  assert.equal(readU32(inner.get(2)), 4097);
  assert.equal(formatMac(macToBuffer('02:ab:00:01:fe:ff')), '02:ab:00:01:fe:ff');
  assert.equal(attr(1, Buffer.alloc(0)).length, 4);
});

test('mutex serializes and survives a throwing section', async () => {
  const m = new Mutex();
  const order: number[] = [];
  const a = m.lock(async () => {
    await new Promise((r) => setTimeout(r, 5));
    order.push(1);
    throw new Error('boom');
  });
  const b = m.lock(async () => {
    order.push(2);
  });
  await assert.rejects(a, /boom/);
  await b;
  assert.deepEqual(order, [1, 2]);
});

test("lab plan: the seed's two networks, then more hosts spread over L2 networks", () => {
  const p = planLab('vxlab');
  assert.deepEqual(
    p.hosts.map((h) => [h.name, h.ip, p.nets[h.l2]!.cidr, h.netns]),
    [
      ['node1', '172.31.1.5', '172.31.1.0/24', 'vxlab-node1'],
      ['node2', '192.168.1.5', '192.168.1.0/24', 'vxlab-node2'],
    ],
  );
  assert.equal(p.nets[0]!.gateway, '172.31.1.1');
  // A one-host segment has no bridge: the gateway sits on the host's own router-side veth.
  assert.deepEqual(
    p.nets.map((n) => [n.routerIf, n.bridge]),
    [
      ['h1', undefined],
      ['h2', undefined],
    ],
  );
  const shared = planLab('sh', 3, 2);
  assert.deepEqual(
    shared.nets.map((n) => [n.routerIf, n.bridge]),
    [
      ['gw0', 'l2br0'],
      ['h2', undefined],
    ],
  );
  const big = planLab('big', 7, 3);
  assert.equal(big.nets.length, 3);
  assert.equal(new Set(big.hosts.map((h) => h.ip)).size, 7);
  assert.deepEqual(
    big.hosts.map((h) => h.l2),
    [0, 1, 2, 0, 1, 2, 0],
  );
  assert.throws(() => planLab('Bad_Name'), /invalid lab name/);
  assert.throws(() => planLab('x', 0), /invalid host count/);
  assert.throws(() => planLab('x', 2, 3), /invalid L2 network count/);
  assert.throws(() => planLab('x', 2, 2, 100), /invalid underlay MTU/);
});

test("our CLI's --publish takes docker's short and long forms and refuses what it cannot read", async () => {
  const { parsePublish } = await import('../../src/cli/workload-commands.js');
  assert.deepEqual(parsePublish('8080:80'), { Protocol: 'tcp', TargetPort: 80, PublishedPort: 8080, PublishMode: 'ingress' });
  assert.deepEqual(parsePublish('53:53/udp'), { Protocol: 'udp', TargetPort: 53, PublishedPort: 53, PublishMode: 'ingress' });
  assert.deepEqual(parsePublish('80'), { Protocol: 'tcp', TargetPort: 80, PublishMode: 'ingress' });
  assert.deepEqual(parsePublish('mode=host,target=80,published=8081'), { Protocol: 'tcp', TargetPort: 80, PublishedPort: 8081, PublishMode: 'host' });
  assert.throws(() => parsePublish('80:eighty'), /invalid publish/);
  assert.throws(() => parsePublish('mode=host,published=8081'), /target is required/);
  assert.throws(() => parsePublish('target=80,ip=1.2.3.4'), /invalid publish option "ip"/);
});

test('a lab has a client host outside the swarm, on an address no swarm network uses', () => {
  const p = planLab('x', 3);
  assert.equal(p.client?.netns, 'x-client');
  assert.equal(p.client?.ip, '203.0.113.10');
  assert.ok(!p.hosts.some((h) => h.ip.startsWith('203.0.113.')));
});
