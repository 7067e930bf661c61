import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { INGRESS_CODEC, markOf, portsCodec, type PortSpec } from '../../src/overlay/mesh.js';
import { meshWant } from '../../src/daemon/mesh.js';

const node = portsCodec({ kind: 'node' });
const sbox = portsCodec({ kind: 'sbox', iif: 'gw0' });

/** What `nft -j list table ip vxswarm_ports` prints for a node table holding `spec` (the shape libnftables gives). */
function listing(spec: PortSpec, frame: 'node' | 'sbox'): string {
  const t = 'vxswarm_ports';
  const vmap = { vmap: { key: { concat: [{ meta: { key: 'l4proto' } }, { payload: { protocol: 'th', field: 'dport' } }] }, data: '@ports' } };
  const items: unknown[] = [
    {
      map: {
        family: 'ip',
        name: 'ports',
        table: t,
        type: ['inet_proto', 'inet_service'],
        map: 'verdict',
        elem: [...spec.keys()].map((k) => [{ concat: [k.split('/')[0], Number(k.split('/')[1])] }, { goto: { target: `port_${k.replace('/', '_')}` } }]),
      },
    },
    { chain: { name: 'pre', type: 'nat', hook: 'prerouting' } },
    { rule: { chain: 'pre', expr: [vmap] } },
  ];
  if (frame === 'node')
    items.push(
      { chain: { name: 'out', type: 'nat', hook: 'output' } },
      { rule: { chain: 'out', expr: [vmap] } },
      { chain: { name: 'post', type: 'nat', hook: 'postrouting' } },
      { rule: { chain: 'post', expr: [{ masquerade: null }] } },
      { rule: { chain: 'post', expr: [{ masquerade: null }] } },
      { rule: { chain: 'post', expr: [{ masquerade: null }] } },
      { chain: { name: 'hairpin', type: 'filter', hook: 'prerouting' } },
      { rule: { chain: 'hairpin', expr: [{ mangle: { key: { meta: { key: 'mark' } }, value: 16384 } }] } },
    );
  for (const [k, v] of spec) {
    const chain = `port_${k.replace('/', '_')}`;
    items.push({ chain: { name: chain } });
    if (v.to.length) {
      const addr =
        v.to.length === 1 ? v.to[0] : { map: { key: { numgen: { mode: 'random', mod: v.to.length } }, data: { set: v.to.map((ip, i) => [i, ip]) } } };
      items.push({ rule: { chain, expr: [{ match: { left: { meta: { key: 'l4proto' } }, right: k.split('/')[0] } }, { dnat: { addr, port: v.port } }] } });
    }
  }
  return JSON.stringify({ nftables: items });
}

describe('published port tables', () => {
  const spec: PortSpec = new Map([
    ['tcp/8080', { to: ['10.255.0.5', '10.255.0.6'], port: 80 }],
    ['udp/5353', { to: ['10.255.0.7'], port: 53 }],
  ]);

  it('from nothing: the frame for its place, then per port a chain with one DNAT and its element', () => {
    const s = sbox.script(undefined, spec);
    assert.match(s, /add rule ip vxswarm_ports pre iifname "gw0" meta l4proto \. th dport vmap @ports/);
    assert.match(s, /add rule ip vxswarm_ports port_tcp_8080 meta l4proto tcp dnat to numgen random mod 2 map \{ 0 : 10\.255\.0\.5, 1 : 10\.255\.0\.6 \}:80/);
    assert.match(s, /add element ip vxswarm_ports ports \{ udp \. 5353 : goto port_udp_5353 \}/);
    const n = node.script(undefined, new Map([['tcp/8080', { to: ['172.18.0.2'], port: 8080 }]]));
    assert.match(n, /fib daddr type local meta l4proto \. th dport vmap @ports/);
    assert.match(n, /hook output/);
    assert.match(n, /ip saddr 127\.0\.0\.0\/8 ct status dnat masquerade/);
    assert.match(n, /ip saddr 172\.18\.0\.0\/16 ct status dnat masquerade/, 'a task reaching its own node');
    assert.match(n, /hairpin iifname \{ "docker_gwbridge", "docker0" \} ct status dnat meta mark set meta mark \| 16384/);
    assert.match(n, /dnat to 172\.18\.0\.2:8080/);
    assert.equal(node.script(undefined, new Map()), '');
  });

  it('a change touches only what differs: one backend, one port removed; nothing for nothing', () => {
    const next: PortSpec = new Map([['tcp/8080', { to: ['10.255.0.5'], port: 80 }]]);
    const s = sbox.script(spec, next).split('\n');
    assert.deepEqual(s, [
      'delete element ip vxswarm_ports ports { udp . 5353 }',
      'delete chain ip vxswarm_ports port_udp_5353',
      'flush chain ip vxswarm_ports port_tcp_8080',
      'add rule ip vxswarm_ports port_tcp_8080 meta l4proto tcp dnat to 10.255.0.5:80',
    ]);
    assert.equal(sbox.script(spec, new Map(spec)), '');
  });

  it('reads back what it wrote; a missing hook or a foreign element is a broken frame', () => {
    for (const [codec, frame] of [
      [node, 'node'],
      [sbox, 'sbox'],
    ] as const) {
      const r = codec.parse(listing(spec, frame));
      assert.equal(r.broken, false);
      assert.ok(codec.same(r.spec, spec), JSON.stringify([...r.spec]));
    }
    const j = JSON.parse(listing(spec, 'node'));
    j.nftables = j.nftables.filter((i: { rule?: { chain: string } }) => i.rule?.chain !== 'out');
    assert.equal(node.parse(JSON.stringify(j)).broken, true, 'output hook gone');
    const old = JSON.parse(listing(spec, 'node'));
    let seen = 0;
    old.nftables = old.nftables.filter((i: { rule?: { chain: string } }) => i.rule?.chain !== 'post' || seen++ === 0);
    assert.equal(node.parse(JSON.stringify(old)).broken, true, "a table from before the bridges' hairpin rules is made again");
    const k = JSON.parse(listing(spec, 'sbox'));
    k.nftables[0].map.elem.push([{ concat: ['tcp', 9999] }, { goto: { target: 'elsewhere' } }]);
    assert.equal(sbox.parse(JSON.stringify(k)).broken, true, 'an element going somewhere else');
  });

  it('while adopting, a port keeps the backends it had besides the new ones', () => {
    const merged = sbox.merge!(new Map([['tcp/8080', { to: ['10.255.0.9'], port: 80 }]]), spec);
    assert.deepEqual(merged.get('tcp/8080')!.to, ['10.255.0.5', '10.255.0.6', '10.255.0.9']);
  });
});

describe('ingress replies', () => {
  it('marks a connection by the sandbox MAC it came from; the mark is the sandbox address as a number', () => {
    const a = { ip: '10.255.0.2', mac: '02:42:0a:ff:00:02' };
    assert.equal(markOf(a), 0x0aff0002);
    const s = INGRESS_CODEC.script(undefined, { ifname: 'eth0', marks: new Map([[a.mac, markOf(a)]]) });
    assert.match(s, /iifname "eth0" ct state new ct mark set ether saddr map @sboxes/);
    assert.match(s, /type route hook output .*\n.*ct mark != 0 meta mark set ct mark/);
    assert.match(s, /add element ip vxswarm_ingress sboxes \{ 02:42:0a:ff:00:02 : 184483842 \}/);
    // Another interface: the table is made again; a new sandbox: one element.
    assert.match(INGRESS_CODEC.script({ ifname: 'eth1', marks: new Map() }, { ifname: 'eth0', marks: new Map() }), /^delete table ip vxswarm_ingress/);
    assert.equal(
      INGRESS_CODEC.script({ ifname: 'eth0', marks: new Map() }, { ifname: 'eth0', marks: new Map([['aa:bb:cc:dd:ee:ff', 7]]) }),
      'add element ip vxswarm_ingress sboxes { aa:bb:cc:dd:ee:ff : 7 }',
    );
  });
});

describe("a node's mesh, from the manager's ports and the ingress endpoint table", () => {
  const ingress = [
    { name: 'web.1.x', ip: '10.255.0.6', service: 'web' },
    { name: 'web.2.y', ip: '10.255.0.5', service: 'web' },
    { name: 'api.1.z', ip: '10.255.0.9', service: 'api' },
    { name: 'ingress-endpoint', ip: '10.255.0.2', sbox: true, mac: '02:00:00:00:00:02' },
    { name: 'ingress-endpoint', ip: '10.255.0.3', sbox: true, mac: '02:00:00:00:00:03' },
  ];
  const ports = [{ service: 'web', protocol: 'tcp' as const, publishedPort: 8080, targetPort: 80 }];

  it('the node sends every ingress port to its sandbox, the sandbox to the tasks; host-mode ports to the local task', () => {
    const w = meshWant({
      ports,
      sboxGw: '172.18.0.2',
      ingress,
      hostTasks: [{ ip: '172.18.0.4', ports: [{ protocol: 'udp', targetPort: 53, publishedPort: 5353, publishMode: 'host' }] }],
    });
    assert.deepEqual(
      [...w.node],
      [
        ['tcp/8080', { to: ['172.18.0.2'], port: 8080 }],
        ['udp/5353', { to: ['172.18.0.4'], port: 53 }],
      ],
    );
    assert.deepEqual([...w.sbox], [['tcp/8080', { to: ['10.255.0.5', '10.255.0.6'], port: 80 }]]);
    assert.deepEqual(
      w.sboxes.map((s) => s.ip),
      ['10.255.0.2', '10.255.0.3'],
    );
  });

  it('no sandbox yet: the node takes no ingress port; a service with no task: the port has no backend', () => {
    const w = meshWant({ ports: [...ports, { service: 'gone', protocol: 'tcp', publishedPort: 9000, targetPort: 90 }], ingress, hostTasks: [] });
    assert.equal(w.node.size, 0);
    assert.deepEqual(w.sbox.get('tcp/9000'), { to: [], port: 90 });
  });
});
