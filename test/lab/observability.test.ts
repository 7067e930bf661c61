// Issue 19, metrics: `vxswarm daemon --metrics-addr` serves Prometheus text format; the counters a
// user watches move when a service is scaled and when the kernel is changed behind our back.
// Issue 17, events: `docker events` shows swarm and container events, kept and live.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { listNetns } from '../../src/kernel/netns.js';
import { skipUnlessRoot } from './helpers.js';
import { DOCKER, SwarmLab, formSwarm, hasDocker, waitFor } from './swarm-helpers.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const execFileP = promisify(execFile);
const ADDR = '127.0.0.1:9323';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus text format (0.0.4), strictly: every sample's family has HELP and TYPE, every line parses. */
function parseExposition(text: string): Sample[] {
  const help = new Set<string>();
  const type = new Map<string, string>();
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    let m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (m) {
      if (m[1] === 'HELP') help.add(m[2]!);
      else {
        assert.match(m[3]!, /^(counter|gauge|histogram|summary|untyped)$/, line);
        type.set(m[2]!, m[3]!);
      }
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    const name = m[1]!;
    const family = [...type.keys()].find((f) => name === f || name === `${f}_bucket` || name === `${f}_sum` || name === `${f}_count`);
    assert.ok(family && help.has(family), `${name}: no HELP/TYPE before it`);
    out.push({ name, labels, value: Number(m[4]) });
  }
  return out;
}

const value = (s: Sample[], name: string, labels: Record<string, string> = {}): number =>
  s.filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v)).reduce((a, x) => a + x.value, 0);

describe('Prometheus metrics and docker events', { skip: skipUnlessRoot }, () => {
  let lab: SwarmLab;
  const scrape = async (host: string): Promise<Sample[]> => {
    const { stdout } = await execFileP('ip', [
      'netns',
      'exec',
      lab.host(host).netns,
      'python3',
      '-c',
      `import urllib.request;print(urllib.request.urlopen('http://${ADDR}/metrics',timeout=5).read().decode(),end='')`,
    ]);
    return parseExposition(stdout);
  };

  before(async () => {
    lab = await SwarmLab.up('mtr', 2, 500, ['--metrics-addr', ADDR]);
    await formSwarm(lab);
  });
  after(async () => {
    await lab?.down();
  });

  it('parses as Prometheus text; the node, gossip, manager and process families are there', async () => {
    const s = await scrape('node1');
    assert.equal(value(s, 'vxswarm_manager_leader'), 1);
    assert.equal(value(s, 'vxswarm_manager_members', { voting: 'true' }), 1);
    await waitFor(
      'both gossip members alive',
      async () => (value(await scrape('node1'), 'vxswarm_gossip_members', { state: 'alive' }) === 2 ? true : undefined),
      10_000,
      200,
    );
    assert.ok(
      s.some((x) => x.name === 'vxswarm_process_nodejs_eventloop_lag_seconds'),
      'event loop lag',
    );
    assert.ok(value(s, 'vxswarm_kernel_netlink_requests_total', { result: 'sent' }) > 0);
    const worker = await scrape('node2');
    assert.equal(value(worker, 'vxswarm_manager_leader'), 0, 'a worker does not lead');
    assert.equal(value(worker, 'vxswarm_manager_tasks'), 0, 'a worker stores no tasks');
    assert.ok(value(worker, 'vxswarm_gossip_probes_total', { result: 'sent' }) > 0);
  });

  it('scaling a service moves the task and request counters', async () => {
    await lab.api('node1').post('/networks/create', { Name: 'm-net', Driver: 'overlay' });
    const svc = await lab.api('node1').post<Json>('/services/create', {
      Name: 'm',
      TaskTemplate: { ContainerSpec: { Image: 'busybox:local', Args: ['sleep', 'infinity'], StopGracePeriod: 100_000_000 }, Networks: [{ Target: 'm-net' }] },
      Mode: { Replicated: { Replicas: 2 } },
    });
    await waitFor('2 running', async () => (value(await scrape('node1'), 'vxswarm_manager_tasks', { state: 'running' }) === 2 ? true : undefined), 30_000, 200);
    const before = value(await scrape('node1'), 'vxswarm_engine_api_request_duration_seconds_count', { route: 'POST /services/:id/update', code: '200' });
    const cur = await lab.api('node1').get<Json>(`/services/${svc.ID}`);
    await lab.api('node1').post(`/services/${svc.ID}/update?version=${cur.Version.Index}`, { ...cur.Spec, Mode: { Replicated: { Replicas: 4 } } });
    await waitFor('4 running', async () => (value(await scrape('node1'), 'vxswarm_manager_tasks', { state: 'running' }) === 4 ? true : undefined), 30_000, 200);
    const s = await scrape('node1');
    assert.equal(value(s, 'vxswarm_engine_api_request_duration_seconds_count', { route: 'POST /services/:id/update', code: '200' }), before + 1);
    assert.ok(value(s, 'vxswarm_manager_commit_seconds_count') > 0, 'etcd commits observed');
    assert.ok(value(s, 'vxswarm_node_containers', { state: 'running' }) >= 1);
  });

  it(
    'docker events: the service created earlier, by --since/--until; container events live as a service scales',
    { skip: !hasDocker && 'needs the docker CLI' },
    async () => {
      const kept = await lab.docker('node1', ['events', '--since', '10m', '--until', '0s', '--filter', 'type=service']);
      assert.equal(kept.code, 0, kept.stderr);
      const id = ((await lab.api('node1').get<Json>('/services/m')).ID as string).slice(0, 12);
      assert.match(kept.stdout, new RegExp(`service create ${id}\\w* \\(name=m\\)`), kept.stdout);
      // An update made now is there too (polled: the CLI's --until is its own clock's now).
      assert.equal((await lab.docker('node1', ['service', 'update', '-d', '--label-add', 'seen=yes', 'm'])).code, 0);
      await waitFor(
        'the service update event',
        async () => {
          const r = await lab.docker('node1', ['events', '--since', '10m', '--until', '0s', '--filter', 'type=service', '--filter', 'event=update']);
          return /service update .*\(name=m\)/.test(r.stdout) ? true : undefined;
        },
        15_000,
        250,
      );
      const follow = spawn(DOCKER, ['events', '--filter', 'type=container', '--filter', 'event=start', '--format', '{{.Action}} {{.Actor.Attributes.name}}'], {
        env: { ...process.env, DOCKER_HOST: `unix://${lab.socket('node1')}` },
      });
      let out = '';
      follow.stdout.on('data', (b: Buffer) => (out += b.toString()));
      try {
        await new Promise((r) => setTimeout(r, 500));
        const cur = await lab.api('node1').get<Json>('/services/m');
        await lab.api('node1').post(`/services/m/update?version=${cur.Version.Index}`, { ...cur.Spec, Mode: { Replicated: { Replicas: 6 } } });
        await waitFor('a container start followed live', async () => (/^start m\.\d+\./m.test(out) ? true : undefined), 20_000, 100);
      } finally {
        follow.kill('SIGKILL');
      }
    },
  );

  it('docker system df counts the images and the containers using them', { skip: !hasDocker && 'needs the docker CLI' }, async () => {
    const df = await lab.docker('node1', ['system', 'df', '--format', '{{.Type}} {{.TotalCount}} {{.Active}}']);
    assert.equal(df.code, 0, df.stderr);
    assert.match(df.stdout, /^Images 1 1$/m, df.stdout);
    const running = (await lab.api('node1').get<Json[]>('/containers/json')).length;
    assert.match(df.stdout, new RegExp(`^Containers ${running} ${running}$`, 'm'), df.stdout);
    assert.match(df.stdout, /^Local Volumes 0 0$/m);
    const bad = await lab.raw('node1', 'GET', '/v1.45/system/df?type=nope');
    assert.equal(bad.status, 400);
  });

  it('an FDB entry deleted by hand: the repair counter moves', async () => {
    const net = (await lab.api('node1').get<Json>('/networks/m-net')).Id as string;
    const [sbx] = listNetns(`${lab.host('node1').netns}-ov-${net.slice(0, 12)}`);
    assert.ok(sbx, "node1's m-net sandbox");
    const before = value(await scrape('node1'), 'vxswarm_overlay_repairs_total', { kind: 'fdb' });
    const fdb = (await execFileP('bridge', ['-n', sbx!, 'fdb', 'show', 'dev', 'vxlan0'])).stdout;
    const mac = /^(\S+) dst \S+ .*self permanent/m.exec(fdb)?.[1];
    assert.ok(mac, fdb);
    await execFileP('bridge', ['-n', sbx!, 'fdb', 'del', mac!, 'dev', 'vxlan0', 'self']);
    await waitFor(
      'the repair counted',
      async () => (value(await scrape('node1'), 'vxswarm_overlay_repairs_total', { kind: 'fdb' }) > before ? true : undefined),
      10_000,
      200,
    );
    assert.ok(value(await scrape('node1'), 'vxswarm_overlay_reconciles_total') > 0);
  });
});
