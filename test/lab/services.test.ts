// Issue 5: containers and services on real daemons: the seed's service across two L2 networks,
// scaling, rescheduling after a daemon dies, daemon restarts, images, and bad input.
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { createNetns, listNetns } from '../../src/kernel/netns.js';
import { hostPaths } from '../../src/lab/lab.js';
import { skipUnlessRoot } from './helpers.js';
import { DOCKER, SwarmLab, formSwarm, hasDocker, waitFor } from './swarm-helpers.js';

const execFileP = promisify(execFile);

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe('services on two lab hosts', { skip: skipUnlessRoot || (!hasDocker && 'needs the docker CLI') }, () => {
  let lab: SwarmLab;
  const tasksOf = async (svc: string): Promise<Json[]> =>
    lab.api('node1').get<Json[]>(`/tasks?filters=${encodeURIComponent(JSON.stringify({ service: { [svc]: true } }))}`);
  const running = async (svc: string, n: number): Promise<Json[] | undefined> => {
    const live = (await tasksOf(svc)).filter((t) => t.DesiredState === 'running' && t.Status.State === 'running');
    return live.length === n ? live : undefined;
  };
  const nodeIds = async (): Promise<Record<string, string>> =>
    Object.fromEntries((await lab.api('node1').get<Json[]>('/nodes')).map((n) => [n.Description.Hostname as string, n.ID as string]));
  const containerOn = async (host: string, svc: string): Promise<string[]> =>
    (await lab.docker(host, ['ps', '-q', '--filter', `label=com.docker.swarm.service.name=${svc}`])).stdout.split('\n').filter(Boolean);

  before(async () => {
    lab = await SwarmLab.up('svc', 2);
    await formSwarm(lab);
    const n = await lab.docker('node1', ['network', 'create', '-d', 'overlay', 'uber-net']);
    assert.equal(n.code, 0, n.stderr);
  });
  after(async () => {
    await lab?.down();
  });

  it("the seed's service: one task per node, cross-host ping from inside, inspect --format, exec with and without a TTY", async () => {
    const c = await lab.docker('node1', [
      'service',
      'create',
      '-d',
      '--name',
      'test',
      '--network',
      'uber-net',
      '--replicas',
      '2',
      'busybox:local',
      'sleep',
      'infinity',
    ]);
    assert.equal(c.code, 0, c.stderr);
    const tasks = await waitFor('2 running tasks', () => running('test', 2), 20000);
    const ids = await nodeIds();
    assert.deepEqual(tasks.map((t) => t.NodeID).sort(), [ids.node1, ids.node2].sort(), 'one task per node');
    const ps = await lab.docker('node1', ['service', 'ps', 'test', '--format', '{{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}}']);
    assert.equal(ps.code, 0, ps.stderr);
    assert.deepEqual(
      ps.stdout
        .trim()
        .split('\n')
        .map((l) => l.split(' ').slice(0, 4).join(' '))
        .sort(),
      ['test.1', 'test.2']
        .map((n) => n)
        .map((n, i) => `${n} ${tasks.find((t) => t.Slot === i + 1)!.NodeID === ids.node1 ? 'node1' : 'node2'} Running Running`)
        .sort(),
    );
    const [c1] = await containerOn('node1', 'test');
    const [c2] = await containerOn('node2', 'test');
    assert.ok(c1 && c2, 'a container on each node');
    const ip2 = (await lab.docker('node2', ['inspect', '--format', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', c2!])).stdout.trim();
    assert.match(ip2, /^10\.0\.0\.\d+$/);
    const ping = await lab.docker('node1', ['exec', c1!, 'ping', '-c', '3', '-W', '2', ip2]);
    assert.equal(ping.code, 0, ping.stdout + ping.stderr);
    assert.match(ping.stdout, / 0% packet loss/);
    const code = await lab.docker('node1', ['exec', c1!, 'sh', '-c', 'echo out; echo err >&2; exit 7']);
    assert.equal(code.code, 7);
    assert.equal(code.stdout, 'out\n');
    assert.equal(code.stderr, 'err\n');
    // Our CLI too.
    const vps = await lab.vx('node1', ['exec', c1!, 'ping', '-c', '1', ip2]);
    assert.equal(vps.code, 0, vps.stderr);
    const vin = await lab.vx('node2', ['inspect', '--format', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', c2!]);
    assert.equal(vin.stdout.trim(), ip2);

    // docker exec -it in a real terminal (tmux): a pty inside, resize, exit code.
    const session = `${lab.name}-tty`;
    const host = `unix://${lab.socket('node1')}`;
    try {
      execFileSync('tmux', ['new-session', '-d', '-s', session, '-x', '120', '-y', '40', `docker -H ${host} exec -it ${c1} sh; echo EXITED=$?; sleep 60`]);
      const pane = (): string => execFileSync('tmux', ['capture-pane', '-p', '-t', session], { encoding: 'utf8' });
      await waitFor('a shell prompt', async () => (pane().includes('/ #') ? true : undefined), 10000, 100);
      execFileSync('tmux', ['send-keys', '-t', session, 'stty size; tty', 'Enter']);
      await waitFor('stty output', async () => (/40 120/.test(pane()) ? true : undefined), 5000, 100);
      execFileSync('tmux', ['resize-window', '-t', session, '-x', '100', '-y', '30']);
      await new Promise((r) => setTimeout(r, 300));
      execFileSync('tmux', ['send-keys', '-t', session, 'stty size; exit 3', 'Enter']);
      await waitFor('exit code', async () => (pane().includes('EXITED=3') ? true : undefined), 5000, 100);
      const text = pane();
      assert.match(text, /\/dev\/pts\/\d+/);
      assert.match(text, /30 100/);
    } finally {
      spawnSync('tmux', ['kill-session', '-t', session]);
    }
  });

  it('scale 2 → 20 → 2: even spread, then released addresses and no stray containers', async () => {
    const u = await lab.docker('node1', ['service', 'update', '-d', '--stop-grace-period', '1s', 'test']);
    assert.equal(u.code, 0, u.stderr);
    // A rolling update, one slot at a time: a running task is there all along.
    let minRunning = 2;
    await waitFor(
      '2 up-to-date tasks running',
      async () => {
        const all = await tasksOf('test');
        minRunning = Math.min(minRunning, all.filter((t) => t.Status.State === 'running').length);
        const fresh = await lab
          .api('node1')
          .get<Json[]>(
            `/tasks?filters=${encodeURIComponent(JSON.stringify({ service: { test: true }, '_up-to-date': { true: true }, 'desired-state': { running: true } }))}`,
          );
        return fresh.filter((t) => t.Status.State === 'running').length === 2 ? true : undefined;
      },
      60000,
      100,
    );
    assert.ok(minRunning >= 1, 'never both replicas down during the update');
    const state = await lab.docker('node1', ['service', 'inspect', '--format', '{{.UpdateStatus.State}}', 'test']);
    assert.equal(state.stdout.trim(), 'completed');
    // The docker CLI's --update-* flags land in the spec.
    const uc = await lab.docker('node1', [
      'service',
      'update',
      '-d',
      '--update-parallelism',
      '2',
      '--update-order',
      'start-first',
      '--update-delay',
      '1s',
      'test',
    ]);
    assert.equal(uc.code, 0, uc.stderr);
    const got = await lab.docker('node1', [
      'service',
      'inspect',
      '--format',
      '{{.Spec.UpdateConfig.Parallelism}} {{.Spec.UpdateConfig.Order}} {{.Spec.UpdateConfig.Delay}}',
      'test',
    ]);
    assert.equal(got.stdout.trim(), '2 start-first 1s');
    // And back: the previous spec returns; the tasks already run it, so none is replaced.
    const before = (await tasksOf('test')).filter((t) => t.DesiredState === 'running').map((t) => t.ID);
    const rb = await lab.docker('node1', ['service', 'rollback', '-d', 'test']);
    assert.equal(rb.code, 0, rb.stderr);
    const back = await lab.docker('node1', ['service', 'inspect', '--format', '{{.Spec.UpdateConfig.Order}} {{.UpdateStatus.State}}', 'test']);
    assert.match(back.stdout.trim(), /^stop-first rollback_(started|completed)$/);
    const after = (await tasksOf('test')).filter((t) => t.DesiredState === 'running').map((t) => t.ID);
    assert.deepEqual(after.sort(), before.sort());
    // Our CLI's rollback goes back the other way (the previous spec is now the start-first one).
    const vrb = await lab.vx('node1', ['service', 'rollback', '-d', 'test']);
    assert.equal(vrb.code, 0, vrb.stderr);
    assert.equal(vrb.stdout, 'test\nrollback: manually requested rollback\n');
    const again = await lab.docker('node1', ['service', 'inspect', '--format', '{{.Spec.UpdateConfig.Order}}', 'test']);
    assert.equal(again.stdout.trim(), 'start-first');
    const s = await lab.docker('node1', ['service', 'scale', '-d', 'test=20']);
    assert.equal(s.code, 0, s.stderr);
    const twenty = await waitFor('20 running', () => running('test', 20), 60000, 100);
    const ids = await nodeIds();
    assert.equal(twenty.filter((t) => t.NodeID === ids.node1).length, 10);
    assert.equal(twenty.filter((t) => t.NodeID === ids.node2).length, 10);
    const ips = new Set(twenty.map((t) => t.NetworksAttachments[0].Addresses[0]));
    assert.equal(ips.size, 20, 'distinct addresses');
    await lab.docker('node1', ['service', 'scale', '-d', 'test=2']);
    await waitFor('2 running', () => running('test', 2), 30000, 100);
    await waitFor(
      'containers removed',
      async () => ((await containerOn('node1', 'test')).length + (await containerOn('node2', 'test')).length === 2 ? true : undefined),
      30000,
      200,
    );
    const endpoints = async (): Promise<number> =>
      (await lab.api('node1').get<Json[]>('/vxswarm/endpoints')).length + (await lab.api('node2').get<Json[]>('/vxswarm/endpoints')).length;
    await waitFor('endpoints released', async () => ((await endpoints()) === 2 ? true : undefined), 10000, 100).catch(() => undefined);
    const eps = await endpoints();
    assert.equal(eps, 2, 'only the two remaining tasks keep endpoints');
    const containerNs = listNetns(`${lab.name}-`).filter((n) => /-c-/.test(n));
    assert.equal(containerNs.length, 2, `container namespaces: ${containerNs.join(' ')}`);
  });

  it('kill -9 of node2: its task comes back on node1; node2 restarted: no duplicates, nothing stale', async () => {
    const ids = await nodeIds();
    const onNode2 = (await running('test', 2))!.filter((t) => t.NodeID === ids.node2);
    assert.equal(onNode2.length, 1);
    const oldContainer = (await containerOn('node2', 'test'))[0]!;
    await lab.stop('node2', 'SIGKILL');
    const t0 = Date.now();
    await waitFor(
      'both tasks on node1',
      async () => {
        const r = await running('test', 2);
        return r && r.every((t) => t.NodeID === ids.node1) ? r : undefined;
      },
      20000,
      100,
    );
    process.stderr.write(`# rescheduled in ${Date.now() - t0} ms\n`);
    await lab.start('node2');
    await waitFor(
      'node2 ready',
      async () => ((await lab.api('node1').get<Json[]>('/nodes')).every((n) => n.Status.State === 'ready') ? true : undefined),
      15000,
      100,
    );
    await waitFor(
      'old container gone from node2',
      async () => ((await lab.docker('node2', ['ps', '-aq'])).stdout.includes(oldContainer.slice(0, 12)) ? undefined : true),
      20000,
      200,
    );
    const r = await running('test', 2);
    assert.ok(r, 'still exactly two running tasks');
    assert.equal((await containerOn('node1', 'test')).length, 2);
    assert.equal((await containerOn('node2', 'test')).length, 0);
  });

  it('a daemon restart keeps containers running, listed and reachable', async () => {
    const before1 = await containerOn('node1', 'test');
    const pids = await Promise.all(before1.map(async (c) => (await lab.api('node1').get<Json>(`/containers/${c}/json`)).State.Pid as number));
    await lab.stop('node1', 'SIGTERM');
    for (const p of pids) assert.ok(fs.existsSync(`/proc/${p}`), 'container process survives the daemon');
    // A crash leftover: a task namespace nothing uses. The restart removes it.
    const stray = `${lab.host('node1').netns}-c-stray0000000`;
    createNetns(stray);
    await lab.start('node1');
    // The API serves at once; sandboxes are adopted and leftovers removed in the background.
    await waitFor('the stray task namespace gone', async () => (listNetns(stray).includes(stray) ? undefined : true), 10000, 50);
    const after1 = await containerOn('node1', 'test');
    assert.deepEqual(after1.sort(), before1.sort());
    await waitFor(
      'nodes ready after the manager restart',
      async () => ((await lab.api('node1').get<Json[]>('/nodes')).every((n) => n.Status.State === 'ready') ? true : undefined),
      15000,
      100,
    );
    const [a, b] = after1;
    const ipB = (await lab.docker('node1', ['inspect', '--format', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', b!])).stdout.trim();
    const ping = await lab.docker('node1', ['exec', a!, 'ping', '-c', '1', '-W', '2', ipB]);
    assert.equal(ping.code, 0, ping.stdout + ping.stderr);
    assert.ok(await running('test', 2));
  });

  it('service logs gathers the lines of every node', async (t) => {
    const c = await lab.docker('node1', [
      'service',
      'create',
      '-d',
      '--name',
      'talk',
      '--replicas',
      '2',
      'busybox:local',
      'sh',
      '-c',
      'echo hello from $(hostname); while sleep 0.5; do echo tick; done',
    ]);
    assert.equal(c.code, 0, c.stderr);
    t.after(async () => void (await lab.docker('node1', ['service', 'rm', 'talk'])));
    await waitFor('2 running', () => running('talk', 2), 20000);
    const out = await waitFor(
      'both lines',
      async () => {
        const l = await lab.docker('node1', ['service', 'logs', 'talk']);
        return (l.stdout.match(/hello from/g) ?? []).length === 2 ? l.stdout : undefined;
      },
      10000,
      200,
    );
    assert.match(out, /^talk\.\d\.\w{12}@node1 +\| hello from \w{12}$/m);
    assert.match(out, /^talk\.\d\.\w{12}@node2 +\| hello from \w{12}$/m);
    const v = await lab.vx('node1', ['service', 'logs', 'talk']);
    assert.equal((v.stdout.match(/hello from/g) ?? []).length, 2);
    // --follow: lines written on node2 after the command started keep arriving, each once.
    const follow = spawn(DOCKER, ['service', 'logs', '-f', '--timestamps', 'talk'], { env: { ...process.env, DOCKER_HOST: `unix://${lab.socket('node1')}` } });
    let text = '';
    follow.stdout.on('data', (b: Buffer) => (text += b.toString()));
    try {
      const ticks = (): string[] => text.split('\n').filter((l) => /@node2 .*tick$/.test(l));
      const first = await waitFor('node2 ticks', async () => (ticks().length ? ticks().length : undefined), 10_000, 100);
      await waitFor('more node2 ticks, followed', async () => (ticks().length >= first + 4 ? true : undefined), 10_000, 100);
      assert.equal(follow.exitCode, null, 'still following');
      assert.equal(new Set(ticks()).size, ticks().length, 'no line twice');
    } finally {
      follow.kill('SIGKILL');
    }
  });

  it('a global service: one task on every node, through the docker CLI; a drained node loses its task and gets it back', async () => {
    const c = await lab.docker('node1', [
      'service',
      'create',
      '--mode',
      'global',
      '--name',
      'agent',
      '--network',
      'uber-net',
      'busybox:local',
      'sleep',
      'infinity',
    ]);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /overall progress: 2 out of 2 tasks/);
    const ids = await nodeIds();
    const ls = await lab.docker('node1', ['service', 'ls', '--filter', 'name=agent', '--format', '{{.Mode}} {{.Replicas}}']);
    assert.equal(ls.stdout.trim(), 'global 2/2');
    const ps = await lab.docker('node1', ['service', 'ps', 'agent', '--format', '{{.Name}} {{.Node}}']);
    assert.deepEqual(ps.stdout.trim().split('\n').sort(), [`agent.${ids.node1} node1`, `agent.${ids.node2} node2`].sort());
    assert.equal((await containerOn('node2', 'agent')).length, 1);
    assert.match((await lab.docker('node1', ['service', 'scale', 'agent=3'])).stderr, /scale can only be used with replicated/);
    assert.equal((await lab.docker('node1', ['node', 'update', '--availability', 'drain', 'node2'])).code, 0);
    await waitFor('node2 without its task', async () => ((await containerOn('node2', 'agent')).length === 0 ? true : undefined), 20000);
    assert.equal((await lab.docker('node1', ['service', 'ls', '--filter', 'name=agent', '--format', '{{.Replicas}}'])).stdout.trim(), '1/1');
    assert.equal((await lab.docker('node1', ['node', 'update', '--availability', 'active', 'node2'])).code, 0);
    await waitFor('node2 with its task again', () => running('agent', 2), 20000);
    assert.equal((await lab.docker('node1', ['service', 'rm', 'agent'])).code, 0);
    await waitFor(
      'no agent containers left',
      async () => ((await containerOn('node1', 'agent')).length + (await containerOn('node2', 'agent')).length === 0 ? true : undefined),
      20000,
    );
  });

  it('bad input gets clear errors and leaves nothing half made', async () => {
    const unknownNet = await lab.docker('node1', ['service', 'create', '-d', '--name', 'bad1', '--network', 'nosuch', 'busybox:local', 'sleep', '1']);
    assert.notEqual(unknownNet.code, 0);
    assert.match(unknownNet.stderr, /network nosuch not found/);
    const body = (replicas: unknown, name = 'bad2'): string =>
      JSON.stringify({
        Name: name,
        TaskTemplate: { ContainerSpec: { Image: 'busybox:local', Args: ['sleep', '1'] } },
        Mode: { Replicated: { Replicas: replicas } },
      });
    for (const [r, name] of [
      [-1, 'bad2'],
      [100000, 'bad2'],
      ['two', 'bad2'],
      [1, 'bad/name'],
      [1, ''],
    ] as const) {
      const res = await lab.raw('node1', 'POST', '/services/create', body(r, name));
      assert.equal(res.status, 400, `${r} ${name}: ${res.body}`);
      assert.match(JSON.parse(res.body).message, /\w/);
    }
    assert.deepEqual(
      (await lab.api('node1').get<Json[]>('/services')).map((s) => s.Spec.Name),
      ['test'],
      'nothing was created',
    );

    const noImage = await lab.docker('node1', ['service', 'create', '-d', '--name', 'noimage', 'nosuch:image', 'sleep', '1']);
    assert.equal(noImage.code, 0, noImage.stderr);
    const rejected = await waitFor('rejected', async () => (await tasksOf('noimage')).find((t) => t.Status.State === 'rejected'), 15000, 100);
    assert.match(rejected.Status.Err, /No such image: nosuch:image/);

    const noNode = await lab.docker('node1', [
      'service',
      'create',
      '-d',
      '--name',
      'nonode',
      '--constraint',
      'node.labels.zone==mars',
      'busybox:local',
      'sleep',
      '1',
    ]);
    assert.equal(noNode.code, 0, noNode.stderr);
    const pending = await waitFor('pending', async () => (await tasksOf('nonode')).find((t) => t.Status.Err), 15000, 100);
    assert.equal(pending.Status.State, 'pending');
    assert.match(pending.Status.Err, /no suitable node \(scheduling constraints not satisfied on 2 nodes\)/);

    const noCmd = await lab.docker('node1', ['service', 'create', '-d', '--name', 'nocmd', '--network', 'uber-net', 'busybox:local', 'nosuchcmd']);
    assert.equal(noCmd.code, 0, noCmd.stderr);
    const failed = await waitFor('failed', async () => (await tasksOf('nocmd')).find((t) => t.Status.State === 'failed'), 15000, 100);
    assert.match(failed.Status.Err, /executable file not found/);
    const psErr = await lab.docker('node1', ['service', 'ps', 'nocmd', '--no-trunc', '--format', '{{.Error}}']);
    assert.match(psErr.stdout, /executable file not found/);

    for (const s of ['noimage', 'nonode', 'nocmd']) assert.equal((await lab.docker('node1', ['service', 'rm', s])).code, 0);
    const testId = (await lab.api('node1').get<Json>('/services/test')).ID as string;
    await waitFor(
      'tasks of removed services gone',
      async () => ((await lab.api('node1').get<Json[]>('/tasks')).every((t) => t.ServiceID === testId) ? true : undefined),
      30000,
      200,
    ).catch(async (e: unknown) => {
      const left = (await lab.api('node1').get<Json[]>('/tasks')).filter((t) => t.ServiceID !== testId);
      throw new Error(`${(e as Error).message}: ${JSON.stringify(left.map((t) => [t.ID, t.NodeID, t.DesiredState, t.Status]))}`);
    });
    const stray =
      (await lab.docker('node1', ['ps', '-a', '--format', '{{.Names}}'])).stdout + (await lab.docker('node2', ['ps', '-a', '--format', '{{.Names}}'])).stdout;
    assert.doesNotMatch(stray, /noimage|nonode|nocmd/);
    const mounts = fs
      .readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .filter((l) => l.includes(hostPaths(lab.name, 'node1').root)).length;
    assert.equal(mounts, (await containerOn('node1', 'test')).length, 'one rootfs mount per live container');
  });

  it('--limit-cpu, --limit-memory and --reserve-memory reach the cgroup; --replicas-max-per-node keeps a replica pending and says why', async () => {
    const c = await lab.docker('node1', [
      'service',
      'create',
      '-d',
      '--name',
      'capped',
      '--replicas',
      '3',
      '--limit-cpu',
      '0.5',
      '--limit-memory',
      '64m',
      '--reserve-memory',
      '32m',
      '--replicas-max-per-node',
      '1',
      'busybox:local',
      'sleep',
      'infinity',
    ]);
    assert.equal(c.code, 0, c.stderr);
    try {
      await waitFor('2 running', () => running('capped', 2), 20000);
      const pending = await waitFor(
        'the third pending',
        async () => (await tasksOf('capped')).find((t) => t.Status.State === 'pending' && t.Status.Err),
        10000,
        100,
      );
      assert.match(pending.Status.Err, /max replicas per node limit exceed/);
      const [id] = await containerOn('node1', 'capped');
      assert.ok(id, 'a capped container on node1');
      const full = (await lab.docker('node1', ['inspect', '-f', '{{.Id}} {{.HostConfig.NanoCpus}}', id!])).stdout.trim().split(' ');
      assert.equal(full[1], '500000000');
      // cgroup v1 here (cpu and memory hierarchies), v2 elsewhere.
      const parent = `${lab.host('node1').netns}`;
      const read = (p: string): string | undefined => (fs.existsSync(p) ? fs.readFileSync(p, 'utf8').trim() : undefined);
      const v2 = read(`/sys/fs/cgroup/${parent}/${full[0]}/cpu.max`);
      if (v2 !== undefined) {
        assert.equal(v2, '50000 100000');
        assert.equal(read(`/sys/fs/cgroup/${parent}/${full[0]}/memory.max`), String(64 << 20));
        assert.equal(read(`/sys/fs/cgroup/${parent}/${full[0]}/memory.low`), String(32 << 20));
      } else {
        assert.equal(read(`/sys/fs/cgroup/cpu/${parent}/${full[0]}/cpu.cfs_quota_us`), '50000');
        assert.equal(read(`/sys/fs/cgroup/cpu/${parent}/${full[0]}/cpu.cfs_period_us`), '100000');
        assert.equal(read(`/sys/fs/cgroup/memory/${parent}/${full[0]}/memory.limit_in_bytes`), String(64 << 20));
        assert.equal(read(`/sys/fs/cgroup/memory/${parent}/${full[0]}/memory.soft_limit_in_bytes`), String(32 << 20), 'the reservation is the soft limit');
      }
    } finally {
      await lab.docker('node1', ['service', 'rm', 'capped']);
    }
  });

  it('swarm leave on a worker running a task answers, takes its containers down, and the node can join again', async () => {
    const ids = await nodeIds();
    const c = await lab.docker('node1', [
      'service',
      'create',
      '-d',
      '--name',
      'pinned',
      '--constraint',
      'node.hostname==node2',
      'busybox:local',
      'sleep',
      'infinity',
    ]);
    assert.equal(c.code, 0, c.stderr);
    await waitFor('the task running on node2', () => running('pinned', 1), 20000);
    const t0 = Date.now();
    const leave = await lab.docker('node2', ['swarm', 'leave']);
    assert.equal(leave.code, 0, leave.stderr);
    assert.equal(leave.stdout, 'Node left the swarm.\n');
    console.log(`# swarm leave answered in ${Date.now() - t0} ms`);
    assert.deepEqual(await containerOn('node2', 'pinned'), [], 'its containers are gone');
    // Its mesh sandbox and published-port table went with it.
    assert.ok(!listNetns(`${lab.host('node2').netns}-`).some((n) => n.endsWith('ingress_sbox')), 'no ingress sandbox left');
    await assert.rejects(execFileP('ip', ['netns', 'exec', lab.host('node2').netns, 'nft', 'list', 'table', 'ip', 'vxswarm_ports']), /No such file/);
    await waitFor(
      'node2 Down at the manager',
      async () => ((await lab.api('node1').get<Json[]>('/nodes')).find((n) => n.ID === ids.node2)?.Status.State === 'down' ? true : undefined),
      10000,
      100,
    );
    // the task it ran is no longer running anywhere (its only eligible node is gone)
    await waitFor(
      'no task of pinned running',
      async () => ((await tasksOf('pinned')).some((t) => t.Status.State === 'running') ? undefined : true),
      10000,
      100,
    );
    const token = (await lab.docker('node1', ['swarm', 'join-token', '-q', 'worker'])).stdout.trim();
    const join = await lab.docker('node2', ['swarm', 'join', '--token', token, `${lab.host('node1').ip}:2377`]);
    assert.equal(join.code, 0, join.stderr);
    assert.equal((await lab.docker('node1', ['node', 'rm', ids.node2!])).code, 0);
    await waitFor('the task back on the joined node2', () => running('pinned', 1), 20000);
    const scale = await lab.docker('node1', ['service', 'scale', '-d', 'pinned=2']);
    assert.equal(scale.code, 0, scale.stderr);
    await waitFor('scaled to 2', () => running('pinned', 2), 20000);
    await lab.docker('node1', ['service', 'rm', 'pinned']);
  });
});
