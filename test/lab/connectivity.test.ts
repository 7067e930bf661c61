// Issue 2, tests 1-4: real kernel VXLAN between lab hosts on separate L2 networks.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { endpointPair, icmpInEchos, meshPeers, nsRun, pingLoss, skipUnlessRoot, startLab } from './helpers.js';

test('two endpoints on two hosts across the router: ping both ways, traceroute one hop', { skip: skipUnlessRoot }, async (t) => {
  const lab = await startLab(t, { tag: 'conn' });
  const spec = { id: 'uber-net', subnets: [{ subnet: '10.0.0.0/24', gateway: '10.0.0.1', vni: 4097 }] };
  const { c1, c2, e1 } = await endpointPair(lab, spec, ['10.0.0.3', '10.0.0.4']);
  assert.equal(await pingLoss(c1, '10.0.0.4'), 0);
  assert.equal(await pingLoss(c2, '10.0.0.3'), 0);
  const tr = await nsRun(c1, ['traceroute', '-n', '-q', '1', '-w', '2', '10.0.0.4']);
  assert.equal(tr.code, 0, tr.out);
  const hops = tr.out.split('\n').filter((l) => /^\s*\d+\s/.test(l));
  assert.equal(hops.length, 1, tr.out);
  assert.match(hops[0]!, /^\s*1\s+10\.0\.0\.4\s/);
  // MACs are random and locally administered, not 02:42 + IP.
  assert.notEqual(e1.mac, '02:42:0a:00:00:03');
  assert.equal(parseInt(e1.mac.slice(0, 2), 16) & 0x03, 0x02);
  // The underlay really is routed: two hops between the hosts.
  const under = await nsRun(lab.plan.hosts[0]!.netns, ['traceroute', '-n', '-q', '1', '-w', '2', lab.plan.hosts[1]!.ip]);
  assert.equal(under.out.split('\n').filter((l) => /^\s*\d+\s/.test(l)).length, 2, under.out);
});

test('two overlays with different VNIs and identical subnets stay apart', { skip: skipUnlessRoot }, async (t) => {
  const lab = await startLab(t, { tag: 'iso' });
  const nets = [
    { id: 'neta', subnets: [{ subnet: '10.5.0.0/24', gateway: '10.5.0.1', vni: 5001 }] },
    { id: 'netb', subnets: [{ subnet: '10.5.0.0/24', gateway: '10.5.0.1', vni: 5002 }] },
  ];
  const ns: Record<string, string> = {};
  for (const spec of nets) {
    await Promise.all(lab.hosts.map((h) => h.createNetwork(spec)));
    const tag = spec.id.slice(-1);
    ns[`${tag}1`] = lab.container(`${tag}1`);
    ns[`${tag}2`] = lab.container(`${tag}2`);
    const x1 = await lab.hosts[0]!.attach(spec.id, { id: `${tag}1`, netns: ns[`${tag}1`]!, ip: '10.5.0.3' });
    const x2 = await lab.hosts[1]!.attach(spec.id, { id: `${tag}2`, netns: ns[`${tag}2`]!, ip: '10.5.0.4' });
    await meshPeers(lab, spec.id, [
      { host: 0, ep: x1 },
      { host: 1, ep: x2 },
    ]);
  }
  const bBefore = icmpInEchos(ns.b2!);
  const aBefore = icmpInEchos(ns.a2!);
  assert.equal(await pingLoss(ns.a1!, '10.5.0.4', 10), 0);
  const aGot = icmpInEchos(ns.a2!) - aBefore;
  const bGot = icmpInEchos(ns.b2!) - bBefore;
  assert.equal(aGot, 10, `a2 received ${aGot} echo requests`);
  assert.equal(bGot, 0, 'an endpoint of the other VNI with the same address saw the echo requests');
  assert.equal(await pingLoss(ns.b1!, '10.5.0.4', 3), 0);
});

test('one overlay with two subnets: endpoints in different subnets on different hosts reach each other', { skip: skipUnlessRoot }, async (t) => {
  const lab = await startLab(t, { tag: 'msub' });
  // 10.1.1.0/24 and 10.2.1.0/24 stand in for the seed's 10.1.1.0/24 and 11.1.1.0/24 (11/8 is public address space).
  const spec = {
    id: 'prod-net',
    subnets: [
      { subnet: '10.1.1.0/24', gateway: '10.1.1.1', vni: 6001 },
      { subnet: '10.2.1.0/24', gateway: '10.2.1.1', vni: 6002 },
    ],
  };
  const { c1, c2 } = await endpointPair(lab, spec, ['10.1.1.3', '10.2.1.3']);
  const sbx = lab.hosts[0]!.network('prod-net').sandbox;
  const links = await nsRun(sbx, ['ip', '-br', 'link']);
  for (const dev of ['br0', 'br1', 'vxlan0', 'vxlan1']) assert.match(links.out, new RegExp(`^${dev}\\b`, 'm'));
  assert.equal(await pingLoss(c1, '10.2.1.3'), 0);
  assert.equal(await pingLoss(c2, '10.1.1.3'), 0);
  const routes = await nsRun(c1, ['ip', 'route']);
  assert.match(routes.out, /10\.2\.1\.0\/24 via 10\.1\.1\.1/);
});

test("MTU: full-size don't-fragment UDP and ICMP cross; one byte more is refused locally, not black-holed", { skip: skipUnlessRoot }, async (t) => {
  // Underlay 1550 so the overlay carries a standard 1500-byte packet: a 1472-byte DF datagram.
  const lab = await startLab(t, { tag: 'mtu', mtu: 1550 });
  const spec = { id: 'mtunet', subnets: [{ subnet: '10.7.0.0/24', gateway: '10.7.0.1', vni: 4200 }] };
  await Promise.all(lab.hosts.map((h) => h.createNetwork(spec)));
  assert.equal(lab.hosts[0]!.network('mtunet').mtu, 1500);
  const c1 = lab.container('c1');
  const c2 = lab.container('c2');
  const e1 = await lab.hosts[0]!.attach('mtunet', { id: 'c1', netns: c1, ip: '10.7.0.3' });
  const e2 = await lab.hosts[1]!.attach('mtunet', { id: 'c2', netns: c2, ip: '10.7.0.4' });
  await meshPeers(lab, 'mtunet', [
    { host: 0, ep: e1 },
    { host: 1, ep: e2 },
  ]);
  assert.equal(await pingLoss(c1, '10.7.0.4', 3, ['-M', 'do', '-s', '1472']), 0);
  const tooBig = await nsRun(c1, ['ping', '-c', '1', '-W', '1', '-M', 'do', '-s', '1473', '10.7.0.4']);
  assert.notEqual(tooBig.code, 0);
  assert.match(tooBig.out, /message too long|mtu/i);

  const server = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('10.7.0.4', 9999)); s.settimeout(5)
data, _ = s.recvfrom(65535); print(len(data))`;
  const client = `
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO: DF set, never fragment
for _ in range(10):
    s.sendto(b'x' * 1472, ('10.7.0.4', 9999)); time.sleep(0.1)`;
  const got = nsRun(c2, ['python3', '-c', server]);
  await new Promise((r) => setTimeout(r, 300));
  const sent = await nsRun(c1, ['python3', '-c', client]);
  assert.equal(sent.code, 0, sent.out);
  const r = await got;
  assert.equal(r.code, 0, r.out);
  assert.equal(r.out.trim(), '1472');

  const eth = await nsRun(c1, ['ip', '-o', 'link', 'show', 'eth0']);
  assert.match(eth.out, /mtu 1500 /);
});

test('default underlay 1500: container MTU is 1450 and 1422-byte DF ICMP crosses', { skip: skipUnlessRoot }, async (t) => {
  const lab = await startLab(t, { tag: 'mtud' });
  const spec = { id: 'mtunet', subnets: [{ subnet: '10.8.0.0/24', gateway: '10.8.0.1', vni: 4201 }] };
  const { c1 } = await endpointPair(lab, spec, ['10.8.0.3', '10.8.0.4']);
  assert.match((await nsRun(c1, ['ip', '-o', 'link', 'show', 'eth0'])).out, /mtu 1450 /);
  assert.equal(await pingLoss(c1, '10.8.0.4', 3, ['-M', 'do', '-s', '1422']), 0);
  const tooBig = await nsRun(c1, ['ping', '-c', '1', '-W', '1', '-M', 'do', '-s', '1423', '10.8.0.4']);
  assert.match(tooBig.out, /message too long|mtu/i);
});
