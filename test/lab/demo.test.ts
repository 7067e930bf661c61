// Issue 6: the seed's tutorial as a test (our CLI, then the stock docker CLI word for word), the
// embedded DNS on the demo's lab, and `lab down` leaving nothing behind.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { after, describe, it } from 'node:test';
import { listNetns } from '../../src/kernel/netns.js';
import { DOCKER_CLI, seedDemo, type DemoResult } from '../../src/lab/demo.js';
import { LAB_STATE_DIR, daemonSocket, labDown } from '../../src/lab/lab.js';
import { skipUnlessRoot, uniqueLabName } from './helpers.js';
import { hasDocker, waitFor } from './swarm-helpers.js';

const docker = (lab: string, node: string, args: string[]): { code: number; out: string } => {
  const r = spawnSync(DOCKER_CLI, args, { env: { ...process.env, DOCKER_HOST: `unix://${daemonSocket(lab, node)}` }, encoding: 'utf8', timeout: 30000 });
  return { code: r.status ?? 1, out: `${r.stdout}${r.stderr}` };
};

/** Everything a lab could leave behind, for the teardown check. */
function leftovers(lab: string): string[] {
  const found: string[] = [];
  found.push(...listNetns(`${lab}-`).map((n) => `netns ${n}`));
  if (fs.existsSync(`${LAB_STATE_DIR}/${lab}`)) found.push(`dir ${LAB_STATE_DIR}/${lab}`);
  for (const l of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n'))
    if (l.includes(`/${lab}/`) || l.includes(`/${lab}-`)) found.push(`mount ${l.split(' ')[4]}`);
  for (const ctl of fs.readdirSync('/sys/fs/cgroup'))
    for (const h of ['node1', 'node2']) if (fs.existsSync(`/sys/fs/cgroup/${ctl}/${lab}-${h}`)) found.push(`cgroup ${ctl}/${lab}-${h}`);
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmd.includes(`/labs/${lab}/`) || cmd.includes(`${lab}-node`)) found.push(`process ${pid} ${cmd.replace(/\0/g, ' ').slice(0, 80)}`);
    } catch {
      /* gone */
    }
  }
  return found;
}

describe("the seed's tutorial: vxswarm lab demo", { skip: skipUnlessRoot }, () => {
  const lab = uniqueLabName('demo');
  let r: DemoResult;
  after(async () => {
    await labDown(lab);
  });

  it('every step succeeds: uber-net absent then present on node2, ping 0% loss, traceroute one hop with the task name', async () => {
    r = await seedDemo({ name: lab, cli: 'vxswarm', quiet: true });
    const cmds = r.steps.map((s) => `${s.node} ${s.command}`);
    for (const want of [
      'node1 vxswarm swarm init',
      'node1 vxswarm network create -d overlay uber-net',
      'node2 vxswarm network ls',
      'node1 vxswarm service create --name test --network uber-net --replicas 2 busybox:local sleep infinity',
      'node1 vxswarm service ps test',
      'node1 vxswarm network inspect uber-net',
    ])
      assert.ok(cmds.includes(want), `step ${want}`);
    const ls2 = r.steps.filter((s) => s.node === 'node2' && s.command === 'vxswarm network ls');
    assert.equal(ls2.length, 2);
    assert.doesNotMatch(ls2[0]!.output, /uber-net/);
    assert.match(ls2[1]!.output, /uber-net\s+overlay\s+swarm/);
    const ping = r.steps.find((s) => s.command.includes(' ping -c 3 '))!;
    assert.match(ping.output, /3 packets transmitted, 3 packets received, 0% packet loss/);
    const trace = r.steps.find((s) => s.command.includes(` traceroute ${r.ips.node2}`))!;
    const hops = trace.output.split('\n').filter((l) => /^\s*\d+\s/.test(l));
    assert.equal(hops.length, 1, trace.output);
    assert.match(hops[0]!, new RegExp(`^ 1  test\\.\\d\\.\\w{25}\\.uber-net \\(${r.ips.node2.replace(/\./g, '\\.')}\\)`));
    assert.equal(r.multiSubnet.hops, 2);
    assert.notEqual(r.multiSubnet.ips[0].split('.')[2], r.multiSubnet.ips[1].split('.')[2]);
  });

  it(
    'embedded DNS: each record kind from both nodes, network isolation, a scaled-down task disappears, NXDOMAIN',
    { skip: !hasDocker && 'needs the docker CLI' },
    async () => {
      const ns = (node: string, c: string, name: string): string => docker(lab, node, ['exec', c, 'nslookup', name]).out;
      const addrs = (out: string): string[] =>
        out
          .split('\n')
          .filter((l) => /^Address: /.test(l))
          .map((l) => l.slice(9).trim())
          .sort();
      const both = [r.ips.node1, r.ips.node2].sort();
      const vipOf = (svc: string): string =>
        docker(lab, 'node1', ['service', 'inspect', '-f', '{{range .Endpoint.VirtualIPs}}{{.Addr}}{{end}}', svc]).out.trim().split('/')[0]!;
      const testVip = vipOf('test');
      assert.match(testVip, /^10\.0\.0\.\d+$/);
      assert.ok(!both.includes(testVip));
      for (const node of ['node1', 'node2'] as const) {
        const c = r.containers[node];
        assert.deepEqual(addrs(ns(node, c, 'test')), [testVip], `service name from ${node}: its VIP`);
        assert.deepEqual(addrs(ns(node, c, 'tasks.test')), both, `tasks.<service> from ${node}`);
        const other = node === 'node1' ? 'node2' : 'node1';
        const ptr = ns(node, c, r.ips[other]);
        const taskName = /name = (test\.\d\.\w{25})\.uber-net/.exec(ptr)?.[1];
        assert.ok(taskName, `PTR from ${node}: ${ptr}`);
        assert.deepEqual(addrs(ns(node, c, taskName)), [r.ips[other]], 'the task name resolves to that task');
        assert.match(ns(node, c, 'prod'), /NXDOMAIN/, 'a service on a network this container is not on');
        assert.match(ns(node, c, 'nosuchname'), /NXDOMAIN/);
      }
      const web = docker(lab, 'node1', [
        'service',
        'create',
        '-d',
        '--name',
        'web',
        '--network',
        'name=uber-net,alias=www',
        'busybox:local',
        'sleep',
        'infinity',
      ]);
      assert.equal(web.code, 0, web.out);
      const wwwIp = await waitFor('alias www', async () => addrs(ns('node2', r.containers.node2, 'www'))[0], 20000, 200);
      assert.equal(wwwIp, vipOf('web'), "an alias of a vip-mode service is the service's VIP");
      assert.equal(docker(lab, 'node1', ['service', 'scale', '-d', 'test=1']).code, 0);
      // Ask from whichever test container is left (the removed one may be either).
      const survivors = await waitFor(
        'one test task left in DNS',
        async () => {
          for (const node of ['node1', 'node2']) {
            const c = docker(lab, node, ['ps', '-q', '--filter', 'label=com.docker.swarm.service.name=test']).out.trim();
            if (!c) continue;
            const a = addrs(ns(node, c, 'tasks.test'));
            if (a.length === 1) return a;
          }
          return undefined;
        },
        40000,
        300,
      );
      assert.ok(both.includes(survivors[0]!));
    },
  );

  it('lab down removes every namespace, process, mount, cgroup and file the demo made', async () => {
    assert.ok(leftovers(lab).length > 0, 'the lab is up before');
    await labDown(lab);
    assert.deepEqual(leftovers(lab), []);
  });
});

describe("the seed's tutorial through the stock docker CLI, word for word", { skip: skipUnlessRoot || (!hasDocker && 'needs the docker CLI') }, () => {
  const lab = uniqueLabName('demodk');
  after(async () => {
    await labDown(lab);
  });

  it('swarm init/join, network create/ls/inspect, service create/ps, ps, inspect --format, exec -it … bash with ping and traceroute', async () => {
    const r = await seedDemo({ name: lab, cli: 'docker', quiet: true });
    // every step with the docker CLI, but for explain path: vxswarm's own (docker has none)
    assert.ok(r.steps.every((s) => s.command.startsWith('docker ') || s.command.startsWith('vxswarm explain path ')));
    assert.ok(r.steps.some((s) => s.command === 'docker swarm init'));
    assert.ok(r.steps.some((s) => /^docker swarm join --token SWMTKN-1-\w+-\w+ 172\.31\.1\.5:2377$/.test(s.command)));
    assert.ok(r.steps.some((s) => s.command === 'docker service create --name test --network uber-net --replicas 2 busybox:local sleep infinity'));
    assert.ok(r.steps.some((s) => s.command === `docker inspect --format='{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' ${r.containers.node1}`));
    assert.match(r.tracerouteHop, /^test\.\d\.\w{25}\.uber-net$/);

    // The seed's interactive session: docker exec -it <id> bash, then ping and traceroute typed in.
    const session = `${lab}-tty`;
    try {
      execFileSync('tmux', [
        'new-session',
        '-d',
        '-s',
        session,
        '-x',
        '120',
        '-y',
        '40',
        `DOCKER_HOST=unix://${daemonSocket(lab, 'node1')} ${DOCKER_CLI} exec -it ${r.containers.node1} bash`,
      ]);
      const pane = (): string => execFileSync('tmux', ['capture-pane', '-p', '-t', session], { encoding: 'utf8' });
      await waitFor('prompt', async () => (/\/ #/.test(pane()) ? true : undefined), 10000, 100);
      execFileSync('tmux', ['send-keys', '-t', session, `ping -c 2 ${r.ips.node2}; traceroute ${r.ips.node2}`, 'Enter']);
      await waitFor(
        'ping and traceroute',
        async () => (/0% packet loss[\s\S]*1 {2}test\.\d\.\w{25}\.uber-net/.test(pane()) ? true : undefined),
        30000,
        100,
      ).catch((e: unknown) => {
        throw new Error(`${(e as Error).message}; the terminal showed:\n${pane()}`);
      });
    } finally {
      spawnSync('tmux', ['kill-session', '-t', session]);
    }
  });
});
