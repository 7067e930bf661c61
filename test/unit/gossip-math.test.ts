import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BroadcastQueue } from '../../src/gossip/broadcasts.js';
import { FakeClock } from '../../src/core/clock.js';
import { expectedSpreadRounds, retransmitLimit, scaleByHealth, suspicionTimeoutMs, suspicionTimeoutWithConfirmations } from '../../src/gossip/math.js';

test('suspicion timeout follows memberlist: 4 intervals up to 10 nodes, log10 scaling above', () => {
  assert.equal(suspicionTimeoutMs(4, 3, 1000), 4000);
  assert.equal(suspicionTimeoutMs(4, 10, 1000), 4000);
  assert.equal(suspicionTimeoutMs(4, 100, 1000), 8000);
  assert.equal(suspicionTimeoutMs(4, 1000, 200), 2400);
});

test('retransmit limit grows with log10(n+1)', () => {
  assert.equal(retransmitLimit(4, 1), 4);
  assert.equal(retransmitLimit(4, 9), 4);
  assert.equal(retransmitLimit(4, 10), 8);
  assert.equal(retransmitLimit(4, 200), 12);
});

test('Lifeguard: the timeout shrinks from max to min as confirmations arrive', () => {
  const t = [0, 1, 2, 3, 4].map((c) => suspicionTimeoutWithConfirmations(c, 3, 1000, 6000));
  assert.equal(t[0], 6000);
  assert.equal(t[3], 1000);
  assert.equal(t[4], 1000);
  for (let i = 1; i < t.length; i++) assert.ok(t[i]! <= t[i - 1]!);
  assert.equal(suspicionTimeoutWithConfirmations(0, 0, 1000, 6000), 1000);
  assert.equal(scaleByHealth(200, 0), 200);
  assert.equal(scaleByHealth(200, 7), 1600);
  assert.ok(expectedSpreadRounds(1000, 3) < 15);
});

test('broadcast queue: least-sent first, retired at the limit, newer replaces older', () => {
  const q = new BroadcastQueue<string>();
  q.push('a', 'a1');
  q.push('b', 'b1');
  q.push('a', 'a2');
  assert.equal(q.size, 2);
  assert.deepEqual(q.take(5, 2).sort(), ['a2', 'b1']);
  assert.deepEqual(q.take(1, 2).length, 1);
  assert.equal(q.size, 1);
});

test('fake clock runs timers in order and lets promises settle between them', async () => {
  const c = new FakeClock();
  const seen: string[] = [];
  c.after(20, () => seen.push('b'));
  c.after(10, () => {
    seen.push('a');
    void Promise.resolve().then(() => c.after(5, () => seen.push('a+5')));
  });
  const t = c.after(30, () => seen.push('never'));
  t.cancel();
  await c.advance(40);
  assert.deepEqual(seen, ['a', 'a+5', 'b']);
  assert.equal(c.now(), 40);
});
