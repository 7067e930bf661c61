// explain path on a two-node topology as the kernels would report it (the lab test reads real ones):
// every hop when all is well, and each fault named when one entry is missing or wrong.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { explainPath, formatExplanation } from '../../src/daemon/explain.js';
import type { ClusterTopology, NodeTopology } from '../../src/daemon/topology.js';

const MAC_A = '02:00:00:00:00:0a';
const MAC_B = '02:00:00:00:00:0b';

function node(
  name: string,
  ip: string,
  gw: string,
  ep: { ip: string; mac: string; netns: string },
  peer?: { ip: string; mac: string; vtep: string },
): NodeTopology {
  return {
    node: { id: `id-${name}`, hostname: name, role: 'worker', addr: ip },
    underlay: { ip, prefix: 24, device: 'eth0', mtu: 1500, gateway: gw },
    networks: [
      {
        id: 'net1',
        name: 'uber-net',
        sandbox: `${name}-ov-net1`,
        mtu: 1450,
        subnets: [
          {
            index: 0,
            subnet: '10.0.0.0/24',
            gateway: '10.0.0.1',
            wantVni: 4097,
            bridge: { name: 'br0', mtu: 1450, up: true },
            vxlan: { name: 'vxlan0', vni: 4097, port: 4789, local: ip, mtu: 1450, up: true },
          },
        ],
        endpoints: [
          {
            id: `ep-${name}`,
            netns: ep.netns,
            ifname: 'eth0',
            ip: ep.ip,
            mac: ep.mac,
            subnet: '10.0.0.0/24',
            gateway: '10.0.0.1',
            mtu: 1450,
            veth: `veth-${name}`,
            defaultRoute: false,
            vethMaster: 'br0',
            vethUp: true,
            vethMtu: 1450,
            present: true,
          },
        ],
        peers: peer ? [{ ...peer, subnet: 0, device: 'vxlan0', neigh: 'ok', neighMac: peer.mac, fdb: 'ok', fdbDst: [peer.vtep] }] : [],
        stale: [],
        sources: peer ? { [peer.ip]: { key: 'ep-node2', owner: 'id-node2', ownerHost: 'node2' } } : {},
      },
    ],
    containers: [{ id: `c-${name}`, name: `test.${name}`, netns: ep.netns, status: 'running' }],
    members: [],
    at: '',
  };
}

function world(): ClusterTopology {
  return {
    nodes: [
      node('node1', '172.31.1.5', '172.31.1.1', { ip: '10.0.0.3', mac: MAC_A, netns: 'ns-a' }, { ip: '10.0.0.4', mac: MAC_B, vtep: '192.168.1.5' }),
      node('node2', '192.168.1.5', '192.168.1.1', { ip: '10.0.0.4', mac: MAC_B, netns: 'ns-b' }, { ip: '10.0.0.3', mac: MAC_A, vtep: '172.31.1.5' }),
    ],
    at: '',
  };
}

const explain = (t: ClusterTopology, target = '10.0.0.4', vips = new Map<string, string[]>()) =>
  explainPath({ topology: t, container: 'test.node1', target, resolve: (n) => (n === 'test' ? '10.0.0.2' : undefined), vips: () => vips });

/** The world with the ingress network on both nodes: node1's ingress sandbox, node2's task publishing 8080 → 80. */
function withIngress(): ClusterTopology {
  const t = world();
  const [n1, n2] = t.nodes as [NodeTopology, NodeTopology];
  const ingress = (
    n: NodeTopology,
    ip: string,
    mac: string,
    netns: string,
    peer: { ip: string; mac: string; vtep: string },
  ): NodeTopology['networks'][number] => {
    const base = structuredClone(n.networks[0]!);
    base.id = 'ingress';
    base.name = 'ingress';
    base.sandbox = `${n.node.hostname}-ov-ingress`;
    base.subnets[0] = { ...base.subnets[0]!, subnet: '10.255.0.0/16', gateway: '10.255.0.1', wantVni: 4096, vxlan: { ...base.subnets[0]!.vxlan!, vni: 4096 } };
    base.endpoints = [{ ...base.endpoints[0]!, id: `ing-${n.node.hostname}`, ip, mac, netns, subnet: '10.255.0.0/16' }];
    base.peers = [{ ...base.peers[0]!, ...peer }];
    base.sources = { [peer.ip]: { key: 'ing', owner: 'x', ownerHost: peer.vtep === '192.168.1.5' ? 'node2' : 'node1' } };
    return base;
  };
  n1.networks.push(ingress(n1, '10.255.0.2', '02:00:00:00:01:01', 'sbox1', { ip: '10.255.0.5', mac: '02:00:00:00:01:05', vtep: '192.168.1.5' }));
  n2.networks.push(ingress(n2, '10.255.0.5', '02:00:00:00:01:05', 'ns-b', { ip: '10.255.0.2', mac: '02:00:00:00:01:01', vtep: '172.31.1.5' }));
  n1.mesh = { sboxNetns: 'sbox1', node: { 'tcp/8080': { to: ['172.18.0.2'], port: 8080 } }, sbox: { 'tcp/8080': { to: ['10.255.0.5'], port: 80 } } };
  return t;
}

describe('explain path', () => {
  it('a published port: the node sends it to its ingress sandbox, which picks the task; then the ingress overlay to it', () => {
    const e = explainPath({ topology: withIngress(), container: '-', target: '172.31.1.5:8080', resolve: () => undefined, vips: () => undefined });
    assert.equal(e.delivered, true, formatExplanation(e));
    assert.equal(e.target, '10.255.0.5');
    assert.deepEqual(
      e.hops.slice(0, 3).map((h) => `${h.node} ${h.what}`),
      ['node1 published port', 'node1 ingress sandbox', 'node1 container'],
    );
    assert.match(e.hops[0]!.entry ?? '', /table ip vxswarm_ports: .*tcp \. 8080 → dnat to 172\.18\.0\.2:8080/);
    assert.match(e.hops.at(-1)!.detail, /eth0 10\.255\.0\.5 .*delivered/);
    const off = explainPath({ topology: withIngress(), container: '-', target: '172.31.1.5:9999', resolve: () => undefined, vips: () => undefined });
    assert.match(off.fault ?? '', /tcp\/9999 is not published on node1/);
    const t = withIngress();
    (t.nodes[0] as NodeTopology).mesh!.sbox['tcp/8080']!.to = [];
    assert.match(
      explainPath({ topology: t, container: '-', target: '172.31.1.5:8080', resolve: () => undefined, vips: () => undefined }).fault ?? '',
      /no task of the service publishing tcp\/8080 is running/,
    );
  });

  it('names every hop across two nodes, with the entries used, and delivers', () => {
    const e = explain(world());
    assert.equal(e.delivered, true);
    assert.deepEqual(
      e.hops.map((h) => `${h.node} ${h.what}`),
      [
        'node1 container',
        'node1 veth',
        'node1 neighbour',
        'node1 FDB',
        'node1 VTEP',
        'node1 underlay',
        'node2 VTEP',
        'node2 bridge',
        'node2 veth',
        'node2 container',
      ],
    );
    const text = formatExplanation(e);
    assert.match(
      text,
      /entry: fdb 02:00:00:00:00:0b dev vxlan0 dst 192\.168\.1\.5 self permanent \(gossip entry ep-node2 in overlay_peer_table, written by node2\)/,
    );
    assert.match(text, /underlay: eth0 172\.31\.1\.5\/24 → 192\.168\.1\.5 via the router 172\.31\.1\.1/);
    assert.match(text, /result: delivered/);
  });

  it('a missing FDB entry, a wrong neighbour entry, a VNI that differs, an MTU too big: each is the fault', () => {
    const t1 = world();
    (t1.nodes[0] as NodeTopology).networks[0]!.peers[0]!.fdb = 'missing';
    assert.match(explain(t1).fault ?? '', /^missing FDB entry 02:00:00:00:00:0b dst 192\.168\.1\.5 on vxlan0 in node1-ov-net1 \(gossip entry ep-node2/);
    const t2 = world();
    Object.assign((t2.nodes[0] as NodeTopology).networks[0]!.peers[0]!, { neigh: 'wrong', neighMac: '02:00:00:00:00:99' });
    assert.match(explain(t2).fault ?? '', /neighbour entry 10\.0\.0\.4 on vxlan0 says 02:00:00:00:00:99/);
    const t3 = world();
    (t3.nodes[1] as NodeTopology).networks[0]!.subnets[0]!.vxlan!.vni = 5000;
    assert.match(explain(t3).fault ?? '', /VNI differs: node1 sends 4097, node2's vxlan0 listens for 5000/);
    const t4 = world();
    (t4.nodes[0] as NodeTopology).underlay!.mtu = 1450;
    assert.match(explain(t4).fault ?? '', /has MTU 1450, more than the underlay eth0 \(1450\) carries/);
    for (const t of [t1, t2, t3, t4]) assert.equal(explain(t).delivered, false);
  });

  it('a stale gossip entry (the endpoint is gone from its node) and an unreachable node are named', () => {
    const t = world();
    (t.nodes[1] as NodeTopology).networks[0]!.endpoints = [];
    assert.match(explain(t).fault ?? '', /node2 has no endpoint 10\.0\.0\.4 on uber-net: gossip entry ep-node2 .* is stale/);
    const u = world();
    u.nodes[1] = { node: { id: 'id-node2', hostname: 'node2', addr: '192.168.1.5' }, error: 'member id-node2 is not alive' };
    assert.match(explain(u).fault ?? '', /could not read node2's kernel state: member id-node2 is not alive/);
    const v = world();
    (v.nodes[0] as NodeTopology).networks[0]!.peers = [];
    assert.match(explain(v).fault ?? '', /node2 has 10\.0\.0\.4 on uber-net, but its peer entry has not reached node1/);
  });

  it("a VIP: the name resolves, the container's nftables choice is shown, then the path to the backend", () => {
    const e = explain(world(), 'test', new Map([['10.0.0.2', ['10.0.0.4']]]));
    assert.equal(e.delivered, true);
    assert.equal(e.target, '10.0.0.4');
    assert.deepEqual(
      e.hops.slice(0, 3).map((h) => h.what),
      ['DNS', 'VIP', 'container'],
    );
    assert.match(e.hops[1]!.entry ?? '', /map vips \{ 10\.0\.0\.2 : goto vip_10_0_0_2 \}, dnat to 10\.0\.0\.4/);
    const none = explain(world(), '10.0.0.2', new Map([['10.0.0.2', []]]));
    assert.match(none.fault ?? '', /VIP 10\.0\.0\.2 has no backend/);
  });

  it('an address on no overlay of the container leaves by its default route; an unknown container is said so', () => {
    const e = explain(world(), '192.168.1.1');
    assert.equal(e.delivered, true);
    assert.match(e.hops.at(-1)!.detail, /on none of test\.node1's overlay networks .*docker_gwbridge/);
    assert.match(
      explainPath({ topology: world(), container: 'nope', target: '10.0.0.4', resolve: () => undefined, vips: () => undefined }).fault ?? '',
      /no container nope on node1/,
    );
  });
});
