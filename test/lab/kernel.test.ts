// kernel/: batching, error attribution and namespace handling against the real kernel.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { KernelError } from '../../src/core/errors.js';
import { createNetns, deleteNetns, listNetns, netnsExists } from '../../src/kernel/netns.js';
import { Rtnl } from '../../src/kernel/rtnl.js';
import { destroyNetns } from '../../src/kernel/teardown.js';
import { skipUnlessRoot } from './helpers.js';

test('a failing request in the middle of a batch rejects alone, naming its object and namespace', { skip: skipUnlessRoot }, async (t) => {
  const ns = `kt${randomBytes(4).toString('hex')}`;
  createNetns(ns);
  const r = Rtnl.open(ns);
  t.after(() => destroyNetns(ns, r));
  await r.ensureBridge('br0', { mtu: 1400 });
  const br = await r.mustGetLink('br0');
  const results = await Promise.allSettled([
    r.replaceAddress(br.index, '10.1.0.1', 24),
    r.setLink(999999, { up: true }),
    r.replaceAddress(br.index, '10.2.0.1', 24),
    r.getLink('br0'),
  ]);
  assert.deepEqual(
    results.map((x) => x.status),
    ['fulfilled', 'rejected', 'fulfilled', 'fulfilled'],
  );
  const err = (results[1] as PromiseRejectedResult).reason as KernelError;
  assert.ok(err instanceof KernelError);
  assert.equal(err.code, 'ENODEV');
  assert.match(err.message, new RegExp(`set link ifindex 999999 in netns ${ns}: ENODEV`));
  assert.equal((results[3] as PromiseFulfilledResult<{ mtu: number }>).value.mtu, 1400);
  const addrs = (await r.getAddresses()).filter((a) => a.index === br.index).map((a) => a.ip);
  assert.deepEqual(addrs.sort(), ['10.1.0.1', '10.2.0.1']);
});

test('thousands of requests at once stay within the window and all complete', { skip: skipUnlessRoot }, async (t) => {
  const ns = `kt${randomBytes(4).toString('hex')}`;
  createNetns(ns);
  const r = Rtnl.open(ns);
  t.after(() => destroyNetns(ns, r));
  await r.createVxlan('vx0', { vni: 100, port: 4789, mtu: 1450, learning: false, proxy: true });
  const vx = await r.mustGetLink('vx0');
  const n = 5000;
  const mac = (i: number): string => `02:00:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
  await Promise.all(Array.from({ length: n }, (_, i) => r.replaceFdb(vx.index, mac(i), `192.0.2.${1 + (i % 200)}`)));
  const fdb = (await r.getFdb(vx.index)).filter((f) => f.self && f.dst);
  assert.equal(fdb.length, n);
  // A second, identical pass replaces in place.
  await Promise.all(Array.from({ length: n }, (_, i) => r.replaceFdb(vx.index, mac(i), `192.0.2.${1 + (i % 200)}`)));
  assert.equal((await r.getFdb(vx.index)).filter((f) => f.self && f.dst).length, n);
});

test('namespaces: create refuses a duplicate, delete is idempotent, bad names are rejected', { skip: skipUnlessRoot }, () => {
  const ns = `kt${randomBytes(4).toString('hex')}`;
  createNetns(ns);
  try {
    assert.ok(netnsExists(ns));
    assert.throws(
      () => createNetns(ns),
      (e: unknown) => e instanceof KernelError && e.code === 'EEXIST',
    );
    assert.throws(
      () => createNetns('../etc'),
      (e: unknown) => e instanceof KernelError && e.code === 'EINVAL',
    );
  } finally {
    deleteNetns(ns);
  }
  assert.ok(!netnsExists(ns));
  assert.ok(!listNetns(ns).length);
  assert.doesNotThrow(() => deleteNetns(ns));
});
