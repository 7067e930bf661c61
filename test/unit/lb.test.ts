// The load balancer's nft scripts and the read-back of what the kernel holds (the JSON below is
// what nft 1.0.6 prints for a table we made; the lab test runs the real kernel).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { lbScript, parseLbTable, type LbSpec } from '../../src/overlay/lb.js';

const spec = (o: Record<string, string[]>): LbSpec => new Map(Object.entries(o));

const listed = JSON.stringify({
  nftables: [
    { metainfo: { version: '1.0.6', json_schema_version: 1 } },
    { table: { family: 'ip', name: 'vxswarm', handle: 1 } },
    {
      map: {
        family: 'ip',
        name: 'vips',
        table: 'vxswarm',
        type: 'ipv4_addr',
        handle: 3,
        map: 'verdict',
        elem: [
          ['10.0.0.2', { goto: { target: 'vip_10_0_0_2' } }],
          ['10.0.0.9', { goto: { target: 'vip_10_0_0_9' } }],
        ],
      },
    },
    { chain: { family: 'ip', table: 'vxswarm', name: 'out', handle: 1, type: 'nat', hook: 'output', prio: -100, policy: 'accept' } },
    { chain: { family: 'ip', table: 'vxswarm', name: 'vip_10_0_0_2', handle: 2 } },
    { chain: { family: 'ip', table: 'vxswarm', name: 'vip_10_0_0_9', handle: 5 } },
    {
      rule: {
        family: 'ip',
        table: 'vxswarm',
        chain: 'out',
        handle: 4,
        expr: [{ vmap: { key: { payload: { protocol: 'ip', field: 'daddr' } }, data: '@vips' } }],
      },
    },
    {
      rule: {
        family: 'ip',
        table: 'vxswarm',
        chain: 'vip_10_0_0_2',
        handle: 6,
        expr: [
          {
            dnat: {
              addr: {
                map: {
                  key: { numgen: { mode: 'random', mod: 3, offset: 0 } },
                  data: {
                    set: [
                      [1, '10.0.0.4'],
                      [0, '10.0.0.3'],
                      [2, '10.0.0.5'],
                    ],
                  },
                },
              },
            },
          },
        ],
      },
    },
    { rule: { family: 'ip', table: 'vxswarm', chain: 'vip_10_0_0_9', handle: 7, expr: [{ dnat: { addr: '10.0.0.7' } }] } },
  ],
});

describe('load balancer scripts', () => {
  it('from nothing: the frame, then per VIP a chain, its rule and its element; nothing at all for nothing', () => {
    assert.equal(lbScript(undefined, new Map()), '');
    const s = lbScript(undefined, spec({ '10.0.0.2': ['10.0.0.3', '10.0.0.4'], '10.0.0.9': ['10.0.0.7'] }));
    assert.deepEqual(s.split('\n'), [
      'add table ip vxswarm',
      'add map ip vxswarm vips { type ipv4_addr : verdict; }',
      'add chain ip vxswarm out { type nat hook output priority -100; policy accept; }',
      'add rule ip vxswarm out ip daddr vmap @vips',
      'add chain ip vxswarm vip_10_0_0_2',
      'add rule ip vxswarm vip_10_0_0_2 dnat to numgen random mod 2 map { 0 : 10.0.0.3, 1 : 10.0.0.4 }',
      'add element ip vxswarm vips { 10.0.0.2 : goto vip_10_0_0_2 }',
      'add chain ip vxswarm vip_10_0_0_9',
      'add rule ip vxswarm vip_10_0_0_9 dnat to 10.0.0.7',
      'add element ip vxswarm vips { 10.0.0.9 : goto vip_10_0_0_9 }',
    ]);
  });
  it('a change touches only what differs: one VIP rule replaced, one element removed, none added twice', () => {
    const have = spec({ '10.0.0.2': ['10.0.0.3', '10.0.0.4'], '10.0.0.9': ['10.0.0.7'] });
    assert.equal(lbScript(have, have), '');
    assert.deepEqual(lbScript(have, spec({ '10.0.0.2': ['10.0.0.3'], '10.0.0.9': ['10.0.0.7'] })).split('\n'), [
      'flush chain ip vxswarm vip_10_0_0_2',
      'add rule ip vxswarm vip_10_0_0_2 dnat to 10.0.0.3',
    ]);
    assert.deepEqual(lbScript(have, spec({ '10.0.0.2': ['10.0.0.3', '10.0.0.4'] })).split('\n'), [
      'delete element ip vxswarm vips { 10.0.0.9 }',
      'delete chain ip vxswarm vip_10_0_0_9',
    ]);
    // No backend left: the chain stays, without a rule.
    assert.deepEqual(lbScript(have, spec({ '10.0.0.2': [], '10.0.0.9': ['10.0.0.7'] })).split('\n'), ['flush chain ip vxswarm vip_10_0_0_2']);
  });
  it('reads back what the kernel holds, backends in map order; a frame not as we made it is broken', () => {
    const r = parseLbTable(listed);
    assert.equal(r.broken, false);
    assert.deepEqual(
      [...r.spec],
      [
        ['10.0.0.2', ['10.0.0.3', '10.0.0.4', '10.0.0.5']],
        ['10.0.0.9', ['10.0.0.7']],
      ],
    );
    const j = JSON.parse(listed) as { nftables: Record<string, unknown>[] };
    const without = (pred: (i: Record<string, unknown>) => boolean): string => JSON.stringify({ nftables: j.nftables.filter((i) => !pred(i)) });
    // The hook's rule deleted by hand: broken (rebuilt whole).
    assert.equal(parseLbTable(without((i) => (i.rule as { chain?: string } | undefined)?.chain === 'out')).broken, true);
    // A VIP's rule deleted by hand: read as no backends, which differs from what was programmed.
    assert.deepEqual(parseLbTable(without((i) => (i.rule as { chain?: string } | undefined)?.chain === 'vip_10_0_0_9')).spec.get('10.0.0.9'), []);
  });
});
