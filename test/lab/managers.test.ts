// Several managers on etcd: joining as a manager (an etcd learner, promoted once caught up),
// every manager writing straight to etcd (a follower forwards only service logs), the leader's death or isolation (another
// manager takes the election key), demotion (out of etcd) and quorum loss.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import fs from 'node:fs';
import path from 'node:path';
import { hostPaths } from '../../src/lab/lab.js';
import { SwarmLab, hasDocker, waitFor } from './swarm-helpers.js';

const execFileP = promisify(execFile);

interface ControlStatus {
  id: string;
  leader: string;
  leading: boolean;
  revision: number;
  members: { ID: string; isLearner?: boolean }[];
  sessions: string[];
}

/** A manager's view of the control plane; undefined on a worker. */
async function control(lab: SwarmLab, host: string): Promise<ControlStatus | undefined> {
  const r = await lab.raw(host, 'GET', '/vxswarm/control').catch(() => undefined);
  return r?.status === 200 ? (JSON.parse(r.body) as ControlStatus) : undefined;
}

/** Waits until `host` follows the manager on `leaderHost` and its cache shows everything the leader's does. */
function caughtUp(lab: SwarmLab, host: string, leaderHost: string, what: string, timeoutMs: number): Promise<ControlStatus> {
  return waitFor(
    what,
    async () => {
      const [a, l] = [await control(lab, host), await control(lab, leaderHost)];
      return a && l && !a.leading && a.leader === l.id && a.revision >= l.revision ? a : undefined;
    },
    timeoutMs,
    100,
  );
}

/** Network names as `host` lists them. */
async function networkNames(lab: SwarmLab, host: string): Promise<string[]> {
  const r = await lab.vx(host, ['network', 'ls', '--filter', 'scope=swarm', '--format', '{{.Name}}']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim().split('\n').sort();
}

/** What a write says when the managers have no quorum (or the call's outcome is unknown). */
const NO_QUORUM = /lost their quorum|does not have a leader|outcome of the call is unknown/;

/** Waits until `node ls` on `host` satisfies `ok`; returns that table. */
function tableWhen(lab: SwarmLab, host: string, what: string, ok: (t: Map<string, [string, string]>) => boolean, timeoutMs: number) {
  return waitFor(
    what,
    async () => {
      const t = await nodeTable(lab, host).catch(() => undefined);
      return t && ok(t) ? t : undefined;
    },
    timeoutMs,
    200,
  );
}

/** init on node1, then join `managers` with the manager token and `workers` with the worker token. */
async function swarmOf(lab: SwarmLab, managers: string[], workers: string[]): Promise<void> {
  const ip1 = lab.host('node1').ip;
  assert.equal((await lab.vx('node1', ['swarm', 'init', '--advertise-addr', ip1])).code, 0);
  for (const [role, hosts] of [
    ['manager', managers],
    ['worker', workers],
  ] as const) {
    const token = (await lab.vx('node1', ['swarm', 'join-token', '-q', role])).stdout.trim();
    for (const h of hosts) {
      const j = await lab.vx(h, ['swarm', 'join', '--token', token, `${ip1}:2377`]);
      assert.equal(j.code, 0, j.stderr);
    }
  }
}

/** The host whose manager holds the election, among `hosts`. */
function leaderAmong(lab: SwarmLab, hosts: string[], timeoutMs = 15_000): Promise<string> {
  return waitFor(
    `a leader among ${hosts.join(', ')}`,
    async () => {
      for (const h of hosts) if ((await control(lab, h))?.leading) return h;
      return undefined;
    },
    timeoutMs,
    50,
  );
}

/** `node ls` as a map hostname → [status, manager status]. */
async function nodeTable(lab: SwarmLab, host: string): Promise<Map<string, [string, string]>> {
  const r = await lab.vx(host, ['node', 'ls', '--format', '{{.Hostname}} {{.Status}} {{.ManagerStatus}}']);
  assert.equal(r.code, 0, r.stderr);
  return new Map(
    r.stdout
      .trim()
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .map(([h, s, m]) => [h!, [s!, m ?? '']]),
  );
}

test('three managers: join, replicate, write on any manager, elect a new one when it dies, catch up on restart', { timeout: 240_000 }, async () => {
  const lab = await SwarmLab.up('mgr', 4);
  try {
    const ip1 = lab.host('node1').ip;
    assert.equal((await lab.vx('node1', ['swarm', 'init', '--advertise-addr', ip1])).code, 0);
    const token = (await lab.vx('node1', ['swarm', 'join-token', '-q', 'manager'])).stdout.trim();
    const workerToken = (await lab.vx('node1', ['swarm', 'join-token', '-q', 'worker'])).stdout.trim();
    const j2 = await lab.vx('node2', ['swarm', 'join', '--token', token, `${ip1}:2377`]);
    assert.equal(j2.code, 0, j2.stderr);
    assert.match(j2.stdout, /This node joined a swarm as a manager\./);
    const j3 = hasDocker
      ? await lab.docker('node3', ['swarm', 'join', '--token', token, `${ip1}:2377`])
      : await lab.vx('node3', ['swarm', 'join', '--token', token, `${ip1}:2377`]);
    assert.equal(j3.code, 0, j3.stderr);
    assert.match(j3.stdout, /This node joined a swarm as a manager\./);
    // A worker joins through a follower: it is sent on to the leader.
    const j4 = await lab.vx('node4', ['swarm', 'join', '--token', workerToken, `${lab.host('node3').ip}:2377`]);
    assert.equal(j4.code, 0, j4.stderr);
    assert.match(j4.stdout, /This node joined a swarm as a worker\./);

    // Every manager holds the state; node ls from any of them names the same leader.
    for (const h of ['node1', 'node2', 'node3']) {
      const t = await waitFor(
        `node ls on ${h} to show 3 reachable managers`,
        async () => {
          const t = await nodeTable(lab, h);
          const ms = [...t.values()].map((x) => x[1]);
          return t.size === 4 && ms.filter((m) => m === 'Reachable').length === 2 && ms.includes('Leader') ? t : undefined;
        },
        10_000,
        200,
      );
      assert.equal(t.get('node1')![1], 'Leader', `on ${h}`);
      assert.equal(t.get('node4')![1], '', 'a worker has no manager status');
    }
    if (hasDocker) {
      const ls = await lab.docker('node2', ['node', 'ls']);
      assert.equal(ls.code, 0, ls.stderr);
      assert.match(ls.stdout, /node1\s+Ready\s+Active\s+Leader/);
      assert.match(ls.stdout, /node3\s+Ready\s+Active\s+Reachable/);
      const info = await lab.docker('node4', ['info', '--format', '{{len .Swarm.RemoteManagers}}']);
      assert.equal(info.stdout.trim(), '3', 'the worker knows every manager');
    }

    // Three voting etcd members (the joiners were learners until caught up).
    const members = await waitFor(
      'three voting etcd members',
      async () => {
        const m = (await control(lab, 'node1'))?.members ?? [];
        return m.length === 3 && m.every((x) => !x.isLearner) ? m : undefined;
      },
      10_000,
      200,
    );
    assert.equal(members.length, 3);
    // A change made on a follower goes straight to etcd and is seen by every manager.
    const nc = await lab.vx('node3', ['network', 'create', '-d', 'overlay', 'uber-net']);
    assert.equal(nc.code, 0, nc.stderr);
    const leader = (await control(lab, 'node1'))!;
    assert.ok(leader.leading);
    for (const h of ['node2', 'node3']) {
      const st = await caughtUp(lab, h, 'node1', `${h} to see the change`, 5000);
      assert.equal(st.leader, leader.id);
      assert.ok((await networkNames(lab, h)).includes('uber-net'));
    }
    // The worker joined through node3 and keeps its session there, not with the leader; every
    // manager node's own session is with its own manager.
    const ids = new Map(
      (JSON.parse((await lab.raw('node1', 'GET', '/nodes')).body) as { ID: string; Description: { Hostname: string } }[]).map((n) => [
        n.Description.Hostname,
        n.ID,
      ]),
    );
    const sessionsOn = async (h: string): Promise<string[]> => ((await control(lab, h))?.sessions ?? []).sort();
    assert.deepEqual(await sessionsOn('node3'), [ids.get('node3')!, ids.get('node4')!].sort());
    assert.deepEqual(await sessionsOn('node1'), [ids.get('node1')!]);
    // The leader dies: the other two elect a new one and the swarm keeps working. The worker,
    // whose session is with a manager that lives, never stops being Ready.
    const t0 = Date.now();
    await lab.stop('node1', 'SIGKILL');
    const states = new Set<string>();
    let watching = true;
    const watch = (async () => {
      while (watching) {
        const r = await lab.raw('node3', 'GET', '/nodes').catch(() => undefined);
        if (r?.status === 200)
          for (const n of JSON.parse(r.body) as { ID: string; Status: { State: string } }[]) if (n.ID === ids.get('node4')) states.add(n.Status.State);
        await new Promise((res) => setTimeout(res, 50));
      }
    })();
    const newLeader = await leaderAmong(lab, ['node2', 'node3']);
    console.log(`new leader ${newLeader} after ${Date.now() - t0} ms`);
    await new Promise((res) => setTimeout(res, 4000));
    watching = false;
    await watch;
    assert.deepEqual([...states], ['ready'], 'node4 stayed Ready through the failover');
    const other = newLeader === 'node2' ? 'node3' : 'node2';
    const t = await tableWhen(lab, other, 'node1 Down and Unreachable', (t) => t.get('node1')?.[0] === 'Down' && t.get('node1')?.[1] === 'Unreachable', 15_000);
    assert.equal(t.get(newLeader)![1], 'Leader');
    assert.equal(t.get('node4')![0], 'Ready', 'the worker found the new leader');
    const nc2 = await lab.vx(other, ['network', 'create', '-d', 'overlay', 'after-net']);
    assert.equal(nc2.code, 0, nc2.stderr);
    assert.deepEqual(await networkNames(lab, newLeader), ['after-net', 'ingress', 'uber-net']);

    // node1 comes back as a follower and catches up; the leader keeps leading.
    await lab.start('node1');
    await caughtUp(lab, 'node1', newLeader, 'node1 to catch up', 15_000);
    const back = await tableWhen(
      lab,
      'node1',
      'node1 Ready and Reachable again',
      (t) => t.get('node1')?.[0] === 'Ready' && t.get('node1')?.[1] === 'Reachable',
      15_000,
    );
    assert.equal(back.get(newLeader)![1], 'Leader');
    // Leaving as a manager needs --force, and says what it costs.
    const leave = await lab.vx(other, ['swarm', 'leave']);
    assert.notEqual(leave.code, 0);
    assert.match(leave.stderr, /Removing this node leaves 2 managers out of 3/);

    // A live manager cannot be removed; a dead one is demoted (out of etcd), then removed.
    const live = await lab.vx(newLeader, ['node', 'rm', '--force', 'node1']);
    assert.notEqual(live.code, 0);
    assert.match(live.stderr, /is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal/);
    await lab.crash(other);
    await waitFor(`${other} Down`, async () => ((await nodeTable(lab, newLeader)).get(other)?.[0] === 'Down' ? true : undefined), 15_000, 200);
    // With one of three down, demoting a live one would leave one reachable of two: refused.
    const lose = await lab.vx('node1', ['node', 'demote', 'node1']);
    assert.notEqual(lose.code, 0);
    assert.match(lose.stderr, /would not make a quorum/);
    const dm = await lab.vx('node1', ['node', 'demote', other]);
    assert.equal(dm.code, 0, dm.stderr);
    const rm = await lab.vx('node1', ['node', 'rm', other]);
    assert.equal(rm.code, 0, rm.stderr);
    const after = await nodeTable(lab, 'node1');
    assert.deepEqual([...after.keys()].sort(), ['node1', newLeader, 'node4'].sort());
    await waitFor('etcd to have two members left', async () => ((await control(lab, newLeader))?.members.length === 2 ? true : undefined), 10_000, 200);
    // Two managers still make a quorum: changes commit.
    assert.equal((await lab.vx('node1', ['network', 'create', '-d', 'overlay', 'last-net'])).code, 0);
  } finally {
    await lab.down();
  }
});

test('promote two workers, then demote the leader itself: a new leader takes over and the old one works on as a worker', { timeout: 180_000 }, async () => {
  const lab = await SwarmLab.up('mgp', 3);
  try {
    await swarmOf(lab, [], ['node2', 'node3']);
    const cli = hasDocker ? lab.docker.bind(lab) : lab.vx.bind(lab);
    const pr = await cli('node1', ['node', 'promote', 'node2', 'node3']);
    assert.equal(pr.code, 0, pr.stderr);
    assert.match(pr.stdout, /Node node2 promoted to a manager in the swarm\.\s+Node node3 promoted to a manager in the swarm\./);
    // Each takes a manager certificate and starts its etcd member, a learner until promoted.
    for (const h of ['node2', 'node3']) {
      await caughtUp(lab, h, 'node1', `${h} to be a caught-up manager`, 15_000);
    }
    const t = await tableWhen(lab, 'node3', 'two Reachable managers', (t) => [...t.values()].filter((x) => x[1] === 'Reachable').length === 2, 10_000);
    assert.equal(t.get('node1')![1], 'Leader');

    // node1's manager certificate, kept as someone who later holds it would: it reaches node2's etcd now.
    const certDir = path.join(hostPaths(lab.name, 'node1').root, 'swarm', 'certificates');
    const keep = path.join(hostPaths(lab.name, 'node1').dir, 'old-manager-cert');
    fs.mkdirSync(keep, { recursive: true });
    for (const f of ['swarm-root-ca.crt', 'swarm-node.crt', 'swarm-node.key']) fs.copyFileSync(path.join(certDir, f), path.join(keep, f));
    const peerPort = (): Promise<boolean> =>
      execFileP('ip', [
        ...['netns', 'exec', lab.host('node1').netns, 'curl', '-sS', '--http1.1', '-m', '5', '--cacert', path.join(keep, 'swarm-root-ca.crt')],
        ...['--cert', path.join(keep, 'swarm-node.crt'), '--key', path.join(keep, 'swarm-node.key'), `https://${lab.host('node2').ip}:2380/version`],
      ]).then(
        (r) => /etcdserver/.test(r.stdout),
        () => false,
      );
    assert.equal(await peerPort(), true, "a manager's certificate reaches another manager's etcd");

    // Demoting the leader: the change commits, it steps down, the others elect a new leader.
    const dm = await cli('node1', ['node', 'demote', 'node1']);
    assert.equal(dm.code, 0, dm.stderr);
    assert.match(dm.stdout, /Manager node1 demoted in the swarm\./);
    const leader = await leaderAmong(lab, ['node2', 'node3']);
    // node1 becomes a worker: no etcd member, no cluster view, still Ready in the swarm.
    await waitFor('node1 to drop its etcd member', async () => ((await control(lab, 'node1')) === undefined ? true : undefined), 15_000, 100);
    await waitFor('etcd to have two members', async () => ((await control(lab, leader))?.members.length === 2 ? true : undefined), 10_000, 200);
    // Its old manager certificate is revoked: the remaining members' etcd refuses it at the handshake.
    await waitFor('the demoted certificate refused', async () => ((await peerPort()) ? undefined : true), 5000, 200);
    const ls1 = await lab.vx('node1', ['node', 'ls']);
    assert.notEqual(ls1.code, 0);
    assert.match(ls1.stderr, /This node is not a swarm manager/);
    const after = await tableWhen(lab, leader, 'node1 Ready as a worker', (t) => t.get('node1')?.[0] === 'Ready' && t.get('node1')?.[1] === '', 15_000);
    assert.equal(after.get(leader)![1], 'Leader');
    assert.equal([...after.values()].filter((x) => x[1] === 'Reachable').length, 1);
    assert.equal((await lab.vx('node3', ['network', 'create', '-d', 'overlay', 'after-demote'])).code, 0);
    // Down to one manager by demotion; the last one cannot be demoted.
    const other = leader === 'node2' ? 'node3' : 'node2';
    const last = await lab.vx(leader, ['node', 'demote', other]);
    assert.equal(last.code, 0, last.stderr);
    const only = await lab.vx(leader, ['node', 'demote', leader]);
    assert.notEqual(only.code, 0);
    assert.match(only.stderr, /attempting to demote the last manager of the swarm/);
  } finally {
    await lab.down();
  }
});

test(
  'the leader is cut off: the majority elects another, agents follow it, the old leader steps down; its failed write is never seen anywhere',
  { timeout: 180_000 },
  async () => {
    const lab = await SwarmLab.up('mgq', 4);
    try {
      await swarmOf(lab, ['node2', 'node3'], ['node4']);
      await leaderAmong(lab, ['node1'], 5000);

      // Cut on the router's side: node1 keeps its own addresses and routes, as a host whose cable is pulled.
      const cut = (up: boolean): Promise<unknown> => execFileP('ip', ['-n', lab.plan.router, 'link', 'set', lab.host('node1').routerIf, up ? 'up' : 'down']);
      await cut(false);
      // A write on the cut-off leader cannot commit: it fails within 5 s instead of hanging, and
      // no manager ever shows it (no dirty read). A write to a follower goes straight to its own
      // etcd member, which is with the majority: it commits, within 5 s, leader or no leader.
      // Timed on the Engine API itself (the CLI's own start-up is not the daemon's answer).
      const create = async (h: string, name: string): Promise<{ status: number; body: string; ms: number }> => {
        const t0 = Date.now();
        const r = await lab.raw(h, 'POST', '/networks/create', JSON.stringify({ Name: name, Driver: 'overlay' }), { 'Content-Type': 'application/json' });
        return { ...r, ms: Date.now() - t0 };
      };
      const [stranded, onFollower] = await Promise.all([create('node1', 'stranded'), create('node2', 'early-net')]);
      console.log(`# writes right after the cut: leader ${stranded.status} in ${stranded.ms} ms, follower ${onFollower.status} in ${onFollower.ms} ms`);
      for (const w of [stranded, onFollower]) assert.ok(w.ms < 5000, `answered in ${w.ms} ms: ${w.body}`);
      assert.equal(stranded.status, 503);
      assert.match(stranded.body, NO_QUORUM);
      assert.equal(onFollower.status, 201, `the follower's write: ${onFollower.body}`);
      // A read there either fails as Docker's does without a leader, or does not show the failed write.
      const seen = await lab.vx('node1', ['network', 'ls', '--format', '{{.Name}}']);
      if (seen.code === 0) assert.ok(!seen.stdout.split('\n').includes('stranded'), 'the cut-off leader does not show its failed write');
      else assert.match(seen.stderr, NO_QUORUM);
      for (const h of ['node2', 'node3']) assert.ok(!(await networkNames(lab, h).catch((): string[] => [])).includes('stranded'), `${h} does not show it`);
      const leader = await leaderAmong(lab, ['node2', 'node3']);
      await waitFor('the cut-off leader to step down', async () => ((await control(lab, 'node1'))?.leading === false ? true : undefined), 10_000, 100);
      const t = await tableWhen(
        lab,
        leader,
        'the worker on the new leader, node1 Down',
        (t) => t.get('node4')?.[0] === 'Ready' && t.get('node1')?.[0] === 'Down',
        20_000,
      );
      assert.equal(t.get('node1')![1], 'Unreachable');
      assert.equal((await lab.vx(leader, ['network', 'create', '-d', 'overlay', 'majority-net'])).code, 0);

      await cut(true);
      await caughtUp(lab, 'node1', leader, 'node1 to rejoin as a follower with the majority state', 20_000);
      for (const h of ['node1', 'node2', 'node3']) {
        const names = await networkNames(lab, h);
        assert.deepEqual(names, ['early-net', 'ingress', 'majority-net'], `on ${h}: the failed write was never made, the majority ones are there`);
      }
      // Its session key comes back once its lease is renewed: seconds, more with two lab tests on two cores.
      await waitFor('node1 Ready again', async () => ((await nodeTable(lab, leader)).get('node1')?.[0] === 'Ready' ? true : undefined), 30_000, 200);
    } finally {
      await lab.down();
    }
  },
);

test('all three managers restart (stopped, then killed): a leader is elected and the state is whole', { timeout: 180_000 }, async () => {
  const lab = await SwarmLab.up('mgr3', 3);
  try {
    await swarmOf(lab, ['node2', 'node3'], []);
    assert.equal((await lab.vx('node2', ['network', 'create', '-d', 'overlay', '--subnet', '10.9.0.0/24', 'kept-net'])).code, 0);
    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      for (const h of ['node1', 'node2', 'node3']) await lab.stop(h, signal);
      for (const h of ['node1', 'node2', 'node3']) await lab.start(h);
      const t = await tableWhen(
        lab,
        'node3',
        `a leader and three Ready managers after ${signal}`,
        (t) => {
          const v = [...t.values()];
          return v.every((x) => x[0] === 'Ready') && v.filter((x) => x[1] === 'Leader').length === 1 && v.filter((x) => x[1] === 'Reachable').length === 2;
        },
        30_000,
      );
      assert.equal(t.size, 3);
      // Every manager's store serves again once its etcd member is back in the quorum.
      for (const h of ['node1', 'node2', 'node3']) {
        const subnet = await waitFor(
          `kept-net on ${h} after ${signal}`,
          async () => {
            const r = await lab.vx(h, ['network', 'inspect', '--format', '{{range .IPAM.Config}}{{.Subnet}}{{end}}', 'kept-net']);
            return r.code === 0 ? r.stdout.trim() : undefined;
          },
          15_000,
          200,
        );
        assert.equal(subnet, '10.9.0.0/24', `on ${h} after ${signal}`);
      }
    }
  } finally {
    await lab.down();
  }
});

test(
  'quorum lost: writes fail clearly; swarm init --force-new-cluster carries on alone; an old manager returns as a worker and can be promoted again',
  { timeout: 180_000 },
  async () => {
    const lab = await SwarmLab.up('mgf', 3);
    try {
      await swarmOf(lab, ['node2', 'node3'], []);
      assert.equal((await lab.vx('node1', ['network', 'create', '-d', 'overlay', 'before-net'])).code, 0);
      await lab.crash('node2');
      await lab.crash('node3');
      const lost = await lab.vx('node1', ['network', 'create', '-d', 'overlay', 'lost-net']);
      assert.notEqual(lost.code, 0);
      assert.match(lost.stderr, NO_QUORUM);
      const cli = hasDocker ? lab.docker.bind(lab) : lab.vx.bind(lab);
      const f = await cli('node1', ['swarm', 'init', '--force-new-cluster', '--advertise-addr', lab.host('node1').ip]);
      assert.equal(f.code, 0, f.stderr);
      assert.match(f.stdout, /Swarm initialized: current node \(\w+\) is now a manager\./);
      const t = await tableWhen(lab, 'node1', 'node1 leading alone', (t) => t.get('node1')?.[1] === 'Leader', 10_000);
      assert.deepEqual(
        [t.get('node2'), t.get('node3')],
        [
          ['Down', ''],
          ['Down', ''],
        ],
      );
      assert.equal((await lab.vx('node1', ['network', 'create', '-d', 'overlay', 'after-net'])).code, 0);
      // The write without a quorum never committed: it is nowhere.
      assert.deepEqual(await networkNames(lab, 'node1'), ['after-net', 'before-net', 'ingress']);
      // node2 comes back with its old state: it learns it is a worker now and drops its etcd member.
      await lab.start('node2');
      await tableWhen(lab, 'node1', 'node2 Ready as a worker', (t) => t.get('node2')?.[0] === 'Ready' && t.get('node2')?.[1] === '', 20_000);
      await waitFor('node2 to drop its etcd member', async () => ((await control(lab, 'node2')) === undefined ? true : undefined), 15_000, 100);
      assert.equal((await control(lab, 'node1'))?.leading, true);
      const pr = await lab.vx('node1', ['node', 'promote', 'node2']);
      assert.equal(pr.code, 0, pr.stderr);
      await caughtUp(lab, 'node2', 'node1', 'node2 a caught-up manager of the new cluster', 20_000);
      assert.equal((await lab.vx('node2', ['network', 'create', '-d', 'overlay', 'two-managers-net'])).code, 0);
    } finally {
      await lab.down();
    }
  },
);
