// Issue 17: health checks and jobs with the stock docker CLI on two hosts. A task stays starting and
// out of its service's DNS and load balancing until its check passes; healthy, it serves;
// unhealthy, it leaves at once, fails with Docker's reason and is replaced. A job's tasks run to
// completion and are never started again, until `service update --force` runs it again.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { skipUnlessRoot } from './helpers.js';
import { SwarmLab, formSwarm, hasDocker, waitFor } from './swarm-helpers.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const execFileP = promisify(execFile);

describe('task lifecycle: health checks and jobs', { skip: skipUnlessRoot || (!hasDocker && 'needs the docker CLI') }, () => {
  let lab: SwarmLab;
  const docker = (host: string, args: string[]): Promise<string> => lab.dockerOk(host, args);
  const tasksOf = (svc: string): Promise<Json[]> => lab.tasks(svc);
  /** The container of the task, found on whichever host runs it. */
  const where = async (t: Json): Promise<{ host: string; id: string }> => {
    const nodes = await lab.api('node1').get<Json[]>('/nodes');
    const host = nodes.find((n) => n.ID === t.NodeID)!.Description.Hostname as string;
    return { host, id: t.Status.ContainerStatus.ContainerID as string };
  };
  /** What `name` resolves to from the client task (sorted addresses; [] when it does not resolve). */
  const resolve = async (client: { host: string; id: string }, name: string): Promise<string[]> => {
    const r = await lab.docker(client.host, ['exec', client.id, 'nslookup', name]);
    return r.stdout
      .split('\n')
      .filter((l) => /^Address: /.test(l) && !l.includes(':53'))
      .map((l) => l.slice(9).trim())
      .sort();
  };

  before(async () => {
    lab = await SwarmLab.up('health', 2, 500);
    await formSwarm(lab);
    await docker('node1', ['network', 'create', '-d', 'overlay', 'hc-net']);
    await docker('node1', ['service', 'create', '-d', '--name', 'client', '--network', 'hc-net', 'busybox:local', 'sleep', '100000']);
    await docker('node1', [
      'service',
      'create',
      '-d',
      '--name',
      'web',
      '--network',
      'hc-net',
      '--replicas',
      '2',
      '--health-cmd',
      'test -f /tmp/ok',
      '--health-interval',
      '300ms',
      '--health-retries',
      '2',
      // failures before the first success do not count for a minute: the tasks stay starting
      '--health-start-period',
      '60s',
      'busybox:local',
      'sleep',
      '100000',
    ]);
  });
  after(async () => {
    await lab?.down();
  });

  it('tasks stay starting, out of DNS and the VIP, until healthy; then they serve', async () => {
    const svc = JSON.parse(await docker('node1', ['service', 'inspect', 'web'])) as Json[];
    assert.deepEqual(svc[0]!.Spec.TaskTemplate.ContainerSpec.Healthcheck, {
      Test: ['CMD-SHELL', 'test -f /tmp/ok'],
      Interval: 3e8,
      StartPeriod: 6e10,
      Retries: 2,
    });
    const client = await where(
      (await waitFor('a running client', async () => (await tasksOf('client')).find((t) => t.Status.State === 'running'), 30_000, 200))!,
    );
    const starting = await waitFor(
      'two web containers, starting',
      async () => {
        const ts = (await tasksOf('web')).filter((t) => t.Status.State === 'starting' && t.Status.ContainerStatus?.ContainerID);
        return ts.length === 2 ? ts : undefined;
      },
      30_000,
      200,
    );
    // A while in which a probe has run several times: still starting, the status says so, nothing serves.
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(
      (await tasksOf('web')).map((t) => t.Status.State),
      ['starting', 'starting'],
    );
    const first = await where(starting[0]!);
    const ps = await docker(first.host, ['ps', '--filter', 'label=com.docker.swarm.service.name=web', '--format', '{{.Status}}']);
    assert.match(ps, /\(health: starting\)/);
    assert.deepEqual(await resolve(client, 'tasks.web'), [], 'no task of web in DNS before it is healthy');

    await docker(first.host, ['exec', first.id, 'touch', '/tmp/ok']);
    const ip = (starting[0]!.NetworksAttachments as Json[]).find((n) => n.Network.Spec.Name === 'hc-net')!.Addresses[0].split('/')[0] as string;
    await waitFor(
      'the healthy task running',
      async () => ((await tasksOf('web')).find((t) => t.ID === starting[0]!.ID)?.Status.State === 'running' ? true : undefined),
      10_000,
      100,
    );
    await waitFor(
      'tasks.web resolving to the healthy task alone',
      async () => ((await resolve(client, 'tasks.web')).join() === ip ? true : undefined),
      10_000,
      200,
    );
    assert.match(await docker(first.host, ['ps', '--filter', `id=${first.id}`, '--format', '{{.Status}}']), /\(healthy\)/);
    const state = (JSON.parse(await docker(first.host, ['inspect', first.id])) as Json[])[0]!.State.Health;
    assert.equal(state.Status, 'healthy');
    assert.equal(state.FailingStreak, 0);
    assert.ok(state.Log.length >= 2 && state.Log.at(-1).ExitCode === 0, `the probe log: ${JSON.stringify(state.Log)}`);
    // the VIP balances over the healthy task only: its one backend in the client's table
    const vip = (await docker('node1', ['service', 'inspect', '-f', '{{range .Endpoint.VirtualIPs}}{{.Addr}}{{end}}', 'web'])).trim().split('/')[0]!;
    assert.deepEqual(await resolve(client, 'web'), [vip]);
    const clientTask = (await tasksOf('client'))[0]!;
    const netns = `${lab.host(client.host).netns}-c-${(clientTask.ID as string).slice(0, 12)}`;
    const chain = await waitFor(
      'the VIP balanced over the healthy task alone',
      async () => {
        const out = (await execFileP('ip', ['netns', 'exec', netns, 'nft', 'list', 'chain', 'ip', 'vxswarm', `vip_${vip.replace(/\./g, '_')}`])).stdout;
        return out.includes(`dnat to ${ip}\n`) ? out : undefined;
      },
      5_000,
      100,
    );
    assert.doesNotMatch(chain, /numgen/, 'one backend, not two');
  });

  it('an unhealthy task leaves DNS at once, fails with the reason Docker gives, and is replaced', async () => {
    const healthy = (await tasksOf('web')).find((t) => t.Status.State === 'running')!;
    const c = await where(healthy);
    await docker(c.host, ['exec', c.id, 'rm', '/tmp/ok']);
    const failed = await waitFor(
      'the task failed',
      async () => {
        const all = await lab.api('node1').get<Json[]>(`/tasks?filters=${encodeURIComponent(JSON.stringify({ service: { web: true } }))}`);
        const t = all.find((x) => x.ID === healthy.ID);
        return t?.Status.State === 'failed' ? t : undefined;
      },
      15_000,
      100,
    );
    assert.match(failed.Status.Err, /dockerexec: unhealthy container/);
    const client = await where((await tasksOf('client'))[0]!);
    assert.deepEqual(await resolve(client, 'tasks.web'), [], 'the failed task is out of DNS, the other was never in');
    await waitFor(
      'a replacement task, starting',
      async () =>
        (await tasksOf('web')).filter((t) => t.ID !== healthy.ID && ['starting', 'running'].includes(t.Status.State)).length === 2 ? true : undefined,
      30_000,
      200,
    );
    const events = await docker(c.host, ['events', '--since', '5m', '--until', '0s', '--filter', `container=${c.id}`, '--format', '{{.Action}}']);
    assert.match(events, /health_status: healthy\nhealth_status: unhealthy\n(.*\n)*die/);
  });

  it('a restarted daemon keeps its starting task out of DNS from its first moment', async () => {
    const starting = (await tasksOf('web')).find((t) => t.Status.State === 'starting' && t.Status.ContainerStatus?.ContainerID);
    assert.ok(starting, 'a web task still starting (its check never passes)');
    const ip = (starting.NetworksAttachments as Json[]).find((n) => n.Network.Spec.Name === 'hc-net')!.Addresses[0].split('/')[0] as string;
    const { host } = await where(starting);
    const client = await where((await tasksOf('client'))[0]!);
    assert.equal(await lab.stop(host), true);
    await lab.start(host);
    // The first seconds after the restart: the task's saved health keeps it out before any probe.
    for (const end = Date.now() + 4000; Date.now() < end;) {
      assert.ok(!(await resolve(client, 'tasks.web')).includes(ip), `${ip} (starting) must not resolve after ${host}'s restart`);
      await new Promise((r) => setTimeout(r, 200));
    }
  });

  it('replicated-job: two completions, shown as Docker shows them, never restarted; --force runs it again', async () => {
    await docker('node1', [
      'service',
      'create',
      '-d',
      '--name',
      'batch',
      '--mode',
      'replicated-job',
      '--replicas',
      '2',
      'busybox:local',
      'sh',
      '-c',
      'echo done',
    ]);
    const ls = (): Promise<string> => docker('node1', ['service', 'ls', '--filter', 'name=batch', '--format', '{{.Mode}} {{.Replicas}}']);
    await waitFor('the job complete', async () => ((await ls()).trim() === 'replicated job 0/2 (2/2 completed)' ? true : undefined), 30_000, 200);
    const ps = async (): Promise<string[]> =>
      (await docker('node1', ['service', 'ps', 'batch', '--format', '{{.DesiredState}} {{.CurrentState}}'])).trim().split('\n').filter(Boolean);
    // The restart delay is 5 s: a finished task that were started again would show by now.
    await new Promise((r) => setTimeout(r, 6000));
    const rows = await ps();
    assert.equal(rows.length, 2, rows.join('\n'));
    for (const r of rows) assert.match(r, /^Complete Complete/);
    const svc = (JSON.parse(await docker('node1', ['service', 'inspect', 'batch'])) as Json[])[0]!;
    assert.deepEqual(svc.Spec.Mode, { ReplicatedJob: { MaxConcurrent: 2, TotalCompletions: 2 } });
    const iteration = svc.JobStatus.JobIteration.Index as number;
    await docker('node1', ['service', 'update', '-d', '--force', 'batch']);
    await waitFor(
      'the job run again',
      async () => {
        const s = (JSON.parse(await docker('node1', ['service', 'inspect', 'batch'])) as Json[])[0]!;
        return s.JobStatus.JobIteration.Index > iteration && (await ls()).trim() === 'replicated job 0/2 (2/2 completed)' ? true : undefined;
      },
      30_000,
      200,
    );
    const after = await ps();
    assert.equal(after.length, 4, after.join('\n'));
    assert.equal(after.filter((r) => /^Complete Complete/.test(r)).length, 2, 'the new run: two completions');
    assert.equal(after.filter((r) => /^Shutdown Complete/.test(r)).length, 2, 'the first run, kept as history');
  });

  it('global-job: one completion on every node', async () => {
    await docker('node1', ['service', 'create', '-d', '--name', 'prep', '--mode', 'global-job', 'busybox:local', 'true']);
    await waitFor(
      'the global job complete on both nodes',
      async () =>
        (await docker('node1', ['service', 'ls', '--filter', 'name=prep', '--format', '{{.Mode}} {{.Replicas}}'])).trim() === 'global job 0/0 (2/2 completed)'
          ? true
          : undefined,
      30_000,
      200,
    );
    const nodes = (await docker('node1', ['service', 'ps', 'prep', '--format', '{{.Node}}'])).trim().split('\n').sort();
    assert.deepEqual(nodes, ['node1', 'node2']);
  });

  it('docker network prune removes the networks nothing uses, and only those', async () => {
    await docker('node1', ['network', 'create', '-d', 'overlay', 'spare-net']);
    await docker('node1', ['network', 'create', '-d', 'overlay', '--label', 'keep=1', 'kept-net']);
    const out = await docker('node1', ['network', 'prune', '-f', '--filter', 'label!=keep']);
    assert.match(out, /Deleted Networks:\nspare-net\n/);
    const names = (await docker('node1', ['network', 'ls', '--format', '{{.Name}}'])).split('\n');
    assert.ok(!names.includes('spare-net'), 'the unused one is gone');
    for (const n of ['hc-net', 'kept-net', 'ingress', 'bridge', 'docker_gwbridge', 'host', 'none']) assert.ok(names.includes(n), `${n} stays`);
  });

  it('bad health settings are refused and change nothing', async () => {
    const before = await docker('node1', ['service', 'inspect', '-f', '{{.Version.Index}}', 'web']);
    const r = await lab.docker('node1', ['service', 'update', '--health-retries', '-1', 'web']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Retries in Healthcheck cannot be negative/);
    assert.equal(await docker('node1', ['service', 'inspect', '-f', '{{.Version.Index}}', 'web']), before);
  });
});
