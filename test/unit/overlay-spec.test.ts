import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidArgumentError } from '../../src/core/errors.js';
import { randomMac } from '../../src/core/ids.js';
import { sandboxName, vethName } from '../../src/overlay/names.js';
import { checkEndpointSpec, checkPeerSpec, parseNetworkSpec, subnetFor } from '../../src/overlay/spec.js';

const net = (subnets: Array<{ subnet: string; gateway: string; vni: number }>, extra = {}) => ({ id: 'n1', subnets, ...extra });

test('network spec: valid multi-subnet network parses', () => {
  const s = parseNetworkSpec(
    net([
      { subnet: '10.1.1.0/24', gateway: '10.1.1.1', vni: 4097 },
      { subnet: '10.2.1.0/24', gateway: '10.2.1.1', vni: 4098 },
    ]),
  );
  assert.deepEqual(
    s.map((x) => [x.index, x.text, x.vni]),
    [
      [0, '10.1.1.0/24', 4097],
      [1, '10.2.1.0/24', 4098],
    ],
  );
});

test('network spec: each kind of bad input has its own message', () => {
  const cases: Array<[object, RegExp]> = [
    [net([]), /at least one subnet/],
    [net([{ subnet: '10.0.0.0/31', gateway: '10.0.0.1', vni: 1 }]), /too small/],
    [net([{ subnet: '10.0.0.0/24', gateway: '10.0.0.0', vni: 1 }]), /network or broadcast/],
    [net([{ subnet: '10.0.0.0/24', gateway: '10.0.0.255', vni: 1 }]), /network or broadcast/],
    [net([{ subnet: '10.0.0.0/24', gateway: '10.0.0.1', vni: 1.5 }]), /invalid VNI 1\.5/],
    [net([{ subnet: '10.0.0.0/24', gateway: '10.0.0.1', vni: 1 }], { mtu: 67 }), /invalid MTU 67/],
    [net([{ subnet: '10.0.0.0/24', gateway: '10.0.0.1', vni: 1 }], { port: 70000 }), /invalid VXLAN port/],
    [
      net([
        { subnet: '10.0.0.0/24', gateway: '10.0.0.1', vni: 7 },
        { subnet: '10.0.1.0/24', gateway: '10.0.1.1', vni: 7 },
      ]),
      /VNI 7 is used by two subnets/,
    ],
    [{ id: '', subnets: [] }, /invalid network ID/],
    [{ id: 'a/b', subnets: [] }, /invalid network ID/],
  ];
  for (const [spec, re] of cases)
    assert.throws(
      () => parseNetworkSpec(spec as never),
      (e: unknown) => e instanceof InvalidArgumentError && re.test((e as Error).message),
      String(re),
    );
});

test('subnetFor picks the right subnet and rejects reserved addresses', () => {
  const s = parseNetworkSpec(
    net([
      { subnet: '10.1.1.0/24', gateway: '10.1.1.1', vni: 1 },
      { subnet: '10.2.1.0/24', gateway: '10.2.1.1', vni: 2 },
    ]),
  );
  assert.equal(subnetFor(s, '10.2.1.9', 'ip').index, 1);
  assert.throws(() => subnetFor(s, '10.2.1.1', 'ip'), /is the gateway/);
  assert.throws(() => subnetFor(s, '10.2.1.255', 'ip'), /broadcast/);
  assert.throws(() => subnetFor(s, '10.3.0.1', 'ip'), /outside the network's subnets \(10\.1\.1\.0\/24, 10\.2\.1\.0\/24\)/);
});

test('endpoint and peer checks', () => {
  assert.doesNotThrow(() => checkEndpointSpec({ id: 'e', netns: 'x', ip: '10.0.0.2' }));
  assert.throws(() => checkEndpointSpec({ id: 'e', netns: '', ip: '10.0.0.2' }), /container namespace is required/);
  assert.throws(() => checkEndpointSpec({ id: 'e', netns: 'x', ip: '1.1.1.1', ifname: 'a-very-long-interface-name' }), /invalid interface name/);
  assert.throws(() => checkPeerSpec({ ip: '10.0.0.2', mac: '01:00:5e:00:00:01', vtep: '1.2.3.4' }), /multicast/);
  assert.throws(() => checkPeerSpec({ ip: '10.0.0.2', mac: '02:00:00:00:00:01', vtep: 'x' }), /invalid IPv4 address "x"/);
});

test('random MACs are unicast, locally administered and distinct', () => {
  const macs = new Set(Array.from({ length: 1000 }, randomMac));
  assert.equal(macs.size, 1000);
  for (const m of macs) {
    assert.match(m, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    assert.equal(parseInt(m.slice(0, 2), 16) & 0x03, 0x02);
  }
});

test('names fit IFNAMSIZ and are stable per endpoint', () => {
  assert.equal(vethName('abc'), vethName('abc'));
  assert.notEqual(vethName('abc'), vethName('abd'));
  assert.ok(vethName('x'.repeat(64)).length <= 15);
  assert.equal(sandboxName('vxs-', '5gj0t3t0qtj1ble2a6jbyll7g'), 'vxs-ov-5gj0t3t0qtj1');
});
