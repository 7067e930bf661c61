// A history check of the managers on etcd: one client per manager creates uniquely named
// networks and lists them, while the leader is killed (kill -9 of its daemon) or cut off at the
// router, again and again. At the end every manager shows the same networks; every create that
// was acknowledged is there; every name any read returned is there (nothing was ever visible
// that did not commit); no create refused for certain is there. A 503 "outcome unknown" may be
// either, as with any consensus write that times out.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { SwarmLab, waitFor } from './swarm-helpers.js';

/** The swarm's networks (Docker's local ones, bridge and the like, are every node's own). */
const SWARM_NETWORKS = `/networks?filters=${encodeURIComponent(JSON.stringify({ scope: { swarm: true } }))}`;

const execFileP = promisify(execFile);
const FAULTS = Number(process.env.HISTORY_FAULTS ?? 20);
const MANAGERS = ['node1', 'node2', 'node3'];

interface Control {
  id: string;
  leading: boolean;
  leader: string;
  revision: number;
  members: { isLearner?: boolean }[];
}

test(`history: concurrent writes and reads on every manager across ${FAULTS} leader faults`, { timeout: 420_000 }, async () => {
  const lab = await SwarmLab.up('mgh', 3);
  let running = true;
  try {
    const ip1 = lab.host('node1').ip;
    assert.equal((await lab.vx('node1', ['swarm', 'init', '--advertise-addr', ip1])).code, 0);
    const token = (await lab.vx('node1', ['swarm', 'join-token', '-q', 'manager'])).stdout.trim();
    for (const h of ['node2', 'node3']) {
      const j = await lab.vx(h, ['swarm', 'join', '--token', token, `${ip1}:2377`]);
      assert.equal(j.code, 0, j.stderr);
    }
    const control = async (h: string): Promise<Control | undefined> => {
      const r = await lab.raw(h, 'GET', '/vxswarm/control').catch(() => undefined);
      return r?.status === 200 ? (JSON.parse(r.body) as Control) : undefined;
    };
    await waitFor(
      'three voting members',
      async () => {
        const m = (await control('node1'))?.members ?? [];
        return m.length === 3 && m.every((x) => !x.isLearner) ? true : undefined;
      },
      30_000,
      200,
    );
    const leader = (): Promise<string> =>
      waitFor(
        'a leader',
        async () => {
          for (const h of MANAGERS) if ((await control(h))?.leading) return h;
          return undefined;
        },
        20_000,
        50,
      );

    const acked = new Set<string>();
    const refused = new Set<string>();
    const unknown = new Set<string>();
    const seen = new Map<string, string>(); // name → which read saw it
    const hung: string[] = [];
    let slowest = 0;
    let reads = 0;
    const client = async (h: string): Promise<void> => {
      for (let i = 0; running; i++) {
        const name = `${h}-w${i}`;
        let r: { status: number; body: string } | undefined;
        const t1 = Date.now();
        try {
          r = await lab.raw(h, 'POST', '/networks/create', JSON.stringify({ Name: name, Driver: 'overlay' }), {}, 15_000);
        } catch (e) {
          // The daemon is down (nothing was sent), or the answer never came (that is a finding).
          if (/no answer within/.test(String(e))) hung.push(`${name} sent ${new Date(t1).toISOString()}`);
          unknown.add(name);
          await new Promise((res) => setTimeout(res, 200));
          continue;
        }
        slowest = Math.max(slowest, Date.now() - t1);
        if (r.status === 201) acked.add(name);
        else if (r.status >= 400 && r.status < 500) refused.add(name);
        else unknown.add(name);
        if (i % 3 === 0) {
          const l = await lab.raw(h, 'GET', SWARM_NETWORKS, undefined, {}, 15_000).catch(() => undefined);
          if (l?.status === 200) {
            reads++;
            for (const n of JSON.parse(l.body) as { Name: string }[]) if (!seen.has(n.Name)) seen.set(n.Name, `${h} read ${reads}`);
          }
        }
        await new Promise((res) => setTimeout(res, 150));
      }
    };
    const clients = MANAGERS.map((h) => client(h));

    const t0 = Date.now();
    for (let f = 0; f < FAULTS; f++) {
      const l = await leader();
      if (f % 2 === 0) {
        await lab.stop(l, 'SIGKILL');
        await new Promise((r) => setTimeout(r, 500));
        await lab.start(l);
      } else {
        const link = (up: boolean): Promise<unknown> => execFileP('ip', ['-n', lab.plan.router, 'link', 'set', lab.host(l).routerIf, up ? 'up' : 'down']);
        await link(false);
        await new Promise((r) => setTimeout(r, 2500));
        await link(true);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    console.log(`# ${FAULTS} faults in ${Math.round((Date.now() - t0) / 1000)} s`);
    running = false;
    await Promise.all(clients);

    // Every manager settles on one leader and one state.
    const l = await leader();
    const lc = (await control(l))!;
    for (const h of MANAGERS)
      await waitFor(
        `${h} to catch up`,
        async () => {
          const c = await control(h);
          return c && c.leader === lc.id && c.revision >= lc.revision ? true : undefined;
        },
        30_000,
        200,
      );
    const finals = await Promise.all(
      MANAGERS.map(async (h) => {
        const r = await lab.raw(h, 'GET', SWARM_NETWORKS);
        assert.equal(r.status, 200, r.body);
        return new Set((JSON.parse(r.body) as { Name: string }[]).map((n) => n.Name));
      }),
    );
    console.log(
      `# ${acked.size} acknowledged, ${unknown.size} outcome unknown, ${refused.size} refused; ${reads} reads saw ${seen.size} names; ${finals[0]!.size} networks at the end; slowest answer ${slowest} ms`,
    );
    assert.ok(acked.size > 50, `enough writes got through (${acked.size})`);
    assert.deepEqual(hung, [], 'every write was answered (within 15 s here; the daemon promises 5 s)');
    for (const [i, fin] of finals.entries()) {
      assert.deepEqual([...fin].sort(), [...finals[0]!].sort(), `${MANAGERS[i]} shows what ${MANAGERS[0]} shows`);
      for (const n of acked) assert.ok(fin.has(n), `acknowledged ${n} is on ${MANAGERS[i]}`);
      for (const n of refused) assert.ok(!fin.has(n), `refused ${n} is not on ${MANAGERS[i]}`);
    }
    for (const [n, where] of seen) assert.ok(finals[0]!.has(n), `${n} (seen by ${where}) committed: no read showed a write that did not`);
    // Only what was asked for exists: nothing appeared from nowhere.
    for (const n of finals[0]!) assert.ok(n === 'ingress' || acked.has(n) || unknown.has(n), `${n} was written by a client`);
  } finally {
    running = false;
    await lab.down();
  }
});
