// Encrypted overlays' logic without root: WireGuard keys, the UAPI text both ways, tunnel
// addresses, and the peer lists the managers send (exactly the nodes sharing an encrypted network).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { generateWgKeyPair, isWgKey, parseUapiGet, uapiPeerChanges, wgPublicKey } from '../../src/kernel/wireguard.js';
import { nextTunnelIp } from '../../src/cluster/manager/manager.js';
import type { NodeRecord } from '../../src/cluster/manager/types.js';
import { nodeRecord } from './fixtures.js';

const hex = (b64: string): string => Buffer.from(b64, 'base64').toString('hex');

describe('WireGuard keys and UAPI', () => {
  it('a key pair is X25519: 32 bytes each in base64, the public key derived from the private one', async () => {
    const k = await generateWgKeyPair();
    assert.ok(isWgKey(k.privateKey) && isWgKey(k.publicKey));
    assert.equal(wgPublicKey(k.privateKey), k.publicKey);
    assert.notEqual((await generateWgKeyPair()).publicKey, k.publicKey);
    for (const bad of ['', 'abc', `${'A'.repeat(43)}`, `${'A'.repeat(42)}==`, 42, undefined]) assert.equal(isWgKey(bad), false, String(bad));
  });

  it("parses wireguard-go's get answer: own key, port, peers with endpoint, address, handshake and bytes", async () => {
    const own = await generateWgKeyPair();
    const p1 = await generateWgKeyPair();
    const p2 = await generateWgKeyPair();
    const text = [
      `private_key=${hex(own.privateKey)}`,
      'listen_port=51820',
      `public_key=${hex(p1.publicKey)}`,
      'endpoint=192.168.1.5:51820',
      'last_handshake_time_sec=1796210033',
      'last_handshake_time_nsec=962642036',
      'tx_bytes=532',
      'rx_bytes=476',
      'persistent_keepalive_interval=0',
      'allowed_ip=198.18.0.2/32',
      `public_key=${hex(p2.publicKey)}`,
      'endpoint=172.31.1.6:51820',
      'last_handshake_time_sec=0',
      'last_handshake_time_nsec=0',
      'tx_bytes=0',
      'rx_bytes=0',
      'allowed_ip=198.18.0.3/32',
      'errno=0',
      '',
      '',
    ].join('\n');
    const st = parseUapiGet(text);
    assert.equal(st.errno, 0);
    assert.equal(st.publicKey, own.publicKey);
    assert.equal(st.listenPort, 51820);
    assert.equal(st.peers.length, 2);
    assert.deepEqual(
      { ...st.peers[0], lastHandshake: st.peers[0]!.lastHandshake?.toISOString() },
      {
        publicKey: p1.publicKey,
        endpoint: '192.168.1.5:51820',
        allowedIp: '198.18.0.2/32',
        rxBytes: 476,
        txBytes: 532,
        lastHandshake: '2026-12-02T11:13:53.962Z',
      },
    );
    assert.equal(st.peers[1]!.lastHandshake, undefined, 'never: no handshake');
    assert.equal(parseUapiGet('errno=1\n\n').errno, 1);
  });

  it('peer changes touch only what differs: removals, new and moved peers; nothing when equal', async () => {
    const [a, b, c] = await Promise.all([generateWgKeyPair(), generateWgKeyPair(), generateWgKeyPair()]);
    const pa = { publicKey: a.publicKey, endpoint: '10.1.0.1:51820', allowedIp: '198.18.0.1/32' };
    const pb = { publicKey: b.publicKey, endpoint: '10.1.0.2:51820', allowedIp: '198.18.0.2/32' };
    const pc = { publicKey: c.publicKey, endpoint: '10.1.0.3:51820', allowedIp: '198.18.0.3/32' };
    assert.equal(uapiPeerChanges([pa, pb], [pb, pa]), '', 'same peers in another order');
    assert.equal(
      uapiPeerChanges([pa, pb], [pa, pc]).split('\n').join('|'),
      [
        `public_key=${hex(b.publicKey)}`,
        'remove=true',
        `public_key=${hex(c.publicKey)}`,
        'endpoint=10.1.0.3:51820',
        'replace_allowed_ips=true',
        'allowed_ip=198.18.0.3/32',
      ].join('|'),
    );
    const moved = uapiPeerChanges([pa], [{ ...pa, endpoint: '10.9.0.1:51820' }]);
    assert.match(moved, /endpoint=10\.9\.0\.1:51820/);
    assert.doesNotMatch(moved, /remove=true/, 'a moved peer keeps its session');
    // A rotated key is a new peer: the old one goes, the new one takes its address.
    const rotated = uapiPeerChanges([pa], [{ ...pa, publicKey: b.publicKey }]);
    assert.match(rotated, new RegExp(`public_key=${hex(a.publicKey)}\\nremove=true\\npublic_key=${hex(b.publicKey)}`));
  });
});

describe('sizes as Docker prints them', () => {
  it('decimal units, four significant digits', async () => {
    const { humanBytes } = await import('../../src/core/human.js');
    assert.deepEqual([0, 999, 1000, 1234, 15_360_000, 2.5e9].map(humanBytes), ['0B', '999B', '1kB', '1.234kB', '15.36MB', '2.5GB']);
  });
});

describe('tunnel addresses', () => {
  const node = (id: string, tunnelIp?: string): NodeRecord => nodeRecord(id, { addr: '10.0.0.1', ...(tunnelIp ? { tunnelIp } : {}) });
  it('the lowest free one in 198.18.0.0/15, never the network address', () => {
    assert.equal(nextTunnelIp([]), '198.18.0.1');
    assert.equal(nextTunnelIp([node('a', '198.18.0.1'), node('b', '198.18.0.3'), node('c')]), '198.18.0.2');
    const many = Array.from({ length: 300 }, (_, i) => node(`n${i}`, `198.18.${(i + 1) >> 8}.${(i + 1) & 255}`));
    assert.equal(nextTunnelIp(many), '198.18.1.45');
  });
});
