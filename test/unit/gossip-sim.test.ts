// Gossip simulations: hundreds of nodes in one process on the in-memory transport and a fake clock.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../../src/core/clock.js';
import { Keyring } from '../../src/gossip/keyring.js';
import { expectedSpreadRounds } from '../../src/gossip/math.js';
import { Membership } from '../../src/gossip/membership.js';
import { NetworkDB } from '../../src/gossip/networkdb.js';
import { seededRng } from '../../src/gossip/random.js';
import { MemNetwork } from '../../src/gossip/transport.js';

interface Sim {
  clock: FakeClock;
  net: MemNetwork;
  nodes: Membership[];
  dbs: NetworkDB[];
}

async function cluster(n: number, seed = 1, keyring?: () => Keyring): Promise<Sim> {
  const clock = new FakeClock();
  const rng = seededRng(seed);
  const net = new MemNetwork(clock, rng);
  const nodes: Membership[] = [];
  const dbs: NetworkDB[] = [];
  for (let i = 0; i < n; i++) {
    const m = new Membership({
      name: `n${i}`,
      transport: net.create(`10.1.${i >> 8}.${i & 255}:7946`),
      clock,
      rng,
      incarnation: 1,
      ...(keyring ? { keyring: keyring() } : {}),
    });
    const db = new NetworkDB(m, clock, { rng });
    nodes.push(m);
    dbs.push(db);
    m.start();
    db.start();
  }
  for (let i = 1; i < n; i++) {
    void nodes[i]!.join([nodes[0]!.self.addr]);
    await clock.advance(2);
  }
  // Join announcements spread by gossip, and push-pull (every 7.5-22.5 s) catches the stragglers.
  for (let t = 0; t < 60_000 && Math.min(...nodes.map((m) => m.live().length)) < n; t += 500) await clock.advance(500);
  return { clock, net, nodes, dbs };
}

function stop(s: Sim): void {
  for (const n of s.nodes) n.shutdown();
  for (const d of s.dbs) d.stop();
}

test('200 nodes: everyone learns everyone; 5% loss for a minute kills nobody; a crashed node is declared dead by all', async () => {
  const s = await cluster(200, 7);
  assert.equal(Math.min(...s.nodes.map((n) => n.live().length)), 200);
  s.net.loss = 0.05;
  await s.clock.advance(60_000);
  s.net.loss = 0;
  assert.equal(
    s.nodes.reduce((a, n) => a + n.stats.deaths, 0),
    0,
    'a live node was declared dead under 5% loss',
  );
  assert.ok(s.nodes.reduce((a, n) => a + n.stats.suspicionsRaised, 0) > 0, 'loss should cause (refuted) suspicions');
  const victim = s.nodes[42]!;
  victim.shutdown();
  s.net.remove(victim.self.addr);
  const t0 = s.clock.now();
  let detected = -1;
  for (let t = 0; t < 20_000 && detected < 0; t += 50) {
    await s.clock.advance(50);
    if (s.nodes.every((n) => n === victim || n.get('n42')?.state === 'dead')) detected = s.clock.now() - t0;
  }
  assert.ok(detected > 0, 'not every node declared the crashed node dead');
  assert.ok(detected <= 5000, `detection took ${detected} ms`);
  stop(s);
});

test('200 nodes, a network on 100 of them: an entry reaches every member in O(log n) rounds and no outsider sees table traffic', async () => {
  const s = await cluster(200, 11);
  const members = s.dbs.filter((_, i) => i % 2 === 0);
  const outsiders = s.dbs.filter((_, i) => i % 2 === 1);
  for (const d of members) d.joinNetwork('net1');
  await s.clock.advance(2000);
  members[0]!.put('overlay_peer_table', 'net1', 'ep1', { ip: '10.0.0.3', mac: '02:00:00:00:00:03', vtep: '172.31.1.5' });
  const rounds = { n: 0 };
  const interval = 50;
  while (members.some((d) => d.list('overlay_peer_table', 'net1').length !== 1) && rounds.n < 100) {
    await s.clock.advance(interval);
    rounds.n++;
  }
  assert.ok(
    members.every((d) => d.list('overlay_peer_table', 'net1').length === 1),
    'entry did not reach every member',
  );
  const bound = Math.ceil(3 * expectedSpreadRounds(100, 3));
  assert.ok(rounds.n <= bound, `took ${rounds.n} rounds, bound ${bound}`);
  assert.equal(
    outsiders.reduce((a, d) => a + d.stats.eventsReceived + d.dump().length, 0),
    0,
    'an outsider received table traffic',
  );
  stop(s);
});

test("a crashed owner's entries leave every table; its restart brings fresh ones back", async () => {
  const s = await cluster(20, 3);
  for (const d of s.dbs) d.joinNetwork('net1');
  await s.clock.advance(1000);
  s.dbs[5]!.put('overlay_peer_table', 'net1', 'ep5', { ip: '10.0.0.5' });
  await s.clock.advance(1000);
  assert.ok(s.dbs.every((d) => d.list('overlay_peer_table', 'net1').length === 1));
  s.nodes[5]!.shutdown();
  s.dbs[5]!.stop();
  s.net.remove(s.nodes[5]!.self.addr);
  await s.clock.advance(5000);
  assert.ok(
    s.dbs.every((d, i) => i === 5 || d.list('overlay_peer_table', 'net1').length === 0),
    'stale entry of a dead node',
  );
  // Restart: a new process (new incarnation, Lamport time ahead) re-creates its endpoint.
  const m = new Membership({ name: 'n5', transport: s.net.create(s.nodes[5]!.self.addr), clock: s.clock, rng: seededRng(99), incarnation: s.clock.now() });
  const db = new NetworkDB(m, s.clock, { rng: seededRng(98) });
  m.start();
  db.start();
  const joined = m.join([s.nodes[0]!.self.addr]);
  await s.clock.advance(100); // the fake clock carries the join's packets
  assert.equal(await joined, 1);
  db.joinNetwork('net1');
  await s.clock.advance(500);
  db.put('overlay_peer_table', 'net1', 'ep5', { ip: '10.0.0.5', mac: 'new' });
  await s.clock.advance(3000);
  for (const [i, d] of s.dbs.entries()) {
    if (i === 5) continue;
    const l = d.list('overlay_peer_table', 'net1');
    assert.deepEqual(
      l.map((e) => (e.value as { mac: string }).mac),
      ['new'],
      `node ${i}`,
    );
  }
  m.shutdown();
  db.stop();
  stop(s);
});

test('a 30 s partition heals to identical tables', async () => {
  const s = await cluster(30, 5);
  for (const d of s.dbs) d.joinNetwork('net1');
  await s.clock.advance(1000);
  const left = s.nodes.slice(0, 15).map((n) => n.self.addr);
  const right = s.nodes.slice(15).map((n) => n.self.addr);
  s.net.partition(left, right);
  s.dbs.forEach((d, i) => d.put('overlay_peer_table', 'net1', `ep${i}`, { i }));
  await s.clock.advance(30_000);
  s.net.heal();
  await s.clock.advance(60_000);
  const view = (d: NetworkDB): string =>
    JSON.stringify(
      d
        .list('overlay_peer_table', 'net1')
        .map((e) => e.key)
        .sort(),
    );
  const first = view(s.dbs[0]!);
  assert.equal(JSON.parse(first).length, 30);
  for (const d of s.dbs) assert.equal(view(d), first);
  assert.equal(Math.min(...s.nodes.map((n) => n.live().length)), 30);
  stop(s);
});

test('a node with the wrong key cannot inject entries; its packets are dropped and counted', async () => {
  const good = Keyring.generateKey();
  const s = await cluster(5, 9, () => new Keyring([good]));
  for (const d of s.dbs) d.joinNetwork('net1');
  await s.clock.advance(500);
  const wrong = new Keyring([Keyring.generateKey()]);
  const rogueTransport = s.net.create('10.9.9.9:7946');
  const rogue = new Membership({ name: 'rogue', transport: rogueTransport, clock: s.clock, incarnation: 1, keyring: wrong });
  const rdb = new NetworkDB(rogue, s.clock);
  rogue.start();
  rdb.start();
  const joined = rogue.join([s.nodes[0]!.self.addr]);
  await s.clock.advance(6000);
  assert.equal(await joined, 0, 'the push-pull reply of a node with another key cannot be read');
  rdb.joinNetwork('net1');
  rdb.put('overlay_peer_table', 'net1', 'evil', { ip: '10.0.0.66' });
  // Forged table events claiming to come from a member, sealed with the wrong key.
  const forged = {
    t: 'user',
    from: 'n1',
    d: { k: 'tbl', nid: 'net1', evs: [{ tb: 'overlay_peer_table', k: 'evil', v: {}, o: 'n1', lt: 1e15, del: false }] },
    p: [],
  };
  for (const n of s.nodes) rogueTransport.sendPacket(n.self.addr, wrong.seal(Buffer.from(JSON.stringify(forged))));
  await s.clock.advance(3000);
  assert.ok(s.dbs.every((d) => d.list('overlay_peer_table', 'net1').length === 0));
  assert.ok(s.nodes.every((n) => !n.get('rogue')));
  assert.ok(
    s.nodes.every((n) => n.stats.rejected >= 1),
    'every node counted the forged packet it dropped',
  );
  rogue.shutdown();
  rdb.stop();
  stop(s);
});

test('keyring: rotation keeps messages flowing; unknown keys are dropped and counted', () => {
  const k1 = Keyring.generateKey();
  const k2 = Keyring.generateKey();
  const a = new Keyring([k1]);
  const b = new Keyring([k1]);
  const sealed = a.seal(Buffer.from('hello'));
  assert.equal(b.open(sealed)?.toString(), 'hello');
  b.set([k1, k2], k1); // b accepts k2 before anyone sends with it
  a.set([k1, k2], k2); // a switches its primary
  assert.equal(b.open(a.seal(Buffer.from('rotated')))?.toString(), 'rotated');
  const c = new Keyring([Keyring.generateKey()]);
  assert.equal(c.open(a.seal(Buffer.from('x'))), undefined);
  assert.equal(c.dropped, 1);
  const tampered = a.seal(Buffer.from('y'));
  tampered[tampered.length - 1]! ^= 1;
  assert.equal(b.open(tampered), undefined);
  assert.throws(() => new Keyring([Buffer.alloc(7)]), /16, 24 or 32 bytes/);
});

test("list() by table and network: other tables and networks left out, a delete at once, the tombstone's reap and a leave keep the index whole", async () => {
  const clock = new FakeClock();
  const rng = seededRng(5);
  const net = new MemNetwork(clock, rng);
  const m = new Membership({ name: 'solo', transport: net.create('10.9.0.1:7946'), clock, rng, incarnation: 1 });
  const db = new NetworkDB(m, clock, { rng, reapMs: 1000 });
  m.start();
  db.start();
  try {
    db.joinNetwork('a');
    db.joinNetwork('b');
    db.put('t1', 'a', 'k1', { v: 1 });
    db.put('t1', 'a', 'k2', { v: 2 });
    db.put('t2', 'a', 'k1', { v: 3 });
    db.put('t1', 'b', 'k1', { v: 4 });
    const keys = (table: string, nid: string): string[] =>
      db
        .list(table, nid)
        .map((e) => `${e.key}=${(e.value as { v: number }).v}`)
        .sort();
    assert.deepEqual(keys('t1', 'a'), ['k1=1', 'k2=2']);
    assert.deepEqual(keys('t2', 'a'), ['k1=3']);
    assert.deepEqual(keys('t1', 'b'), ['k1=4']);
    db.put('t1', 'a', 'k1', { v: 5 });
    db.remove('t1', 'a', 'k2');
    assert.deepEqual(keys('t1', 'a'), ['k1=5'], 'an update replaces, a delete hides at once');
    await clock.advance(6000);
    assert.equal(db.dump('a').filter((e) => e.key === 'k2').length, 0, 'the tombstone reaped');
    db.put('t1', 'a', 'k2', { v: 6 });
    assert.deepEqual(keys('t1', 'a'), ['k1=5', 'k2=6'], 'written again after its reap');
    db.leaveNetwork('b');
    assert.deepEqual(keys('t1', 'b'), []);
    assert.deepEqual(keys('t1', 'a'), ['k1=5', 'k2=6']);
  } finally {
    m.shutdown();
    db.stop();
  }
});
