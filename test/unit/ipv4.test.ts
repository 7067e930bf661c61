import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidArgumentError } from '../../src/core/errors.js';
import { broadcastOf, contains, formatCidr, formatIp, overlaps, parseCidr, parseIp, sizeOf } from '../../src/core/ipv4.js';

test('parseIp/formatIp round-trip and reject junk', () => {
  for (const s of ['0.0.0.0', '10.0.0.1', '255.255.255.255', '192.168.1.5']) assert.equal(formatIp(parseIp(s)), s);
  for (const s of ['', '1.2.3', '1.2.3.4.5', '256.0.0.1', '01.2.3.4', 'a.b.c.d', '1.2.3.-1', ' 1.2.3.4']) {
    assert.throws(() => parseIp(s), InvalidArgumentError, s);
  }
});

test('parseCidr requires zero host bits and a sane prefix', () => {
  assert.deepEqual(parseCidr('10.0.0.0/24'), { network: parseIp('10.0.0.0'), prefix: 24 });
  assert.deepEqual(parseCidr('0.0.0.0/0'), { network: 0, prefix: 0 });
  assert.throws(() => parseCidr('10.0.0.1/24'), /host bits set \(did you mean 10\.0\.0\.0\/24\?\)/);
  assert.throws(() => parseCidr('10.0.0.0/33'), /prefix length 33 exceeds 32/);
  assert.throws(() => parseCidr('10.0.0.0'), /expected a\.b\.c\.d\/len/);
  assert.throws(() => parseCidr('10.0.0/8'), /not an IPv4 address/);
});

test('contains, overlaps, broadcast, size', () => {
  const a = parseCidr('10.0.0.0/16');
  const b = parseCidr('10.0.5.0/24');
  const c = parseCidr('10.1.0.0/16');
  assert.ok(contains(a, parseIp('10.0.255.255')));
  assert.ok(!contains(a, parseIp('10.1.0.0')));
  assert.ok(overlaps(a, b) && overlaps(b, a));
  assert.ok(!overlaps(a, c));
  assert.equal(formatIp(broadcastOf(b)), '10.0.5.255');
  assert.equal(sizeOf(b), 256);
  assert.equal(formatCidr(b), '10.0.5.0/24');
});
