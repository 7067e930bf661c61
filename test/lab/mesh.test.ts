// Issue 15: published ports on three hosts with the stock docker CLI. The ingress routing mesh
// answers on every node, also one with no task, and the task sees the client's own address; UDP
// too; host-mode ports only where a task runs; removal; bad input; drift and a daemon restart.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { skipUnlessRoot } from './helpers.js';
import { SwarmLab, formSwarm, hasDocker, waitFor } from './swarm-helpers.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const execFileP = promisify(execFile);

/** An HTTP server whose CGI answers "<hostname> <the peer address it saw>". */
const HTTPD = [
  'sh',
  '-c',
  'mkdir -p /www/cgi-bin && printf \'#!/bin/sh\\necho "Content-Type: text/plain"\\necho\\necho "$(hostname) $REMOTE_ADDR"\\n\' > /www/cgi-bin/peer && chmod +x /www/cgi-bin/peer && exec httpd -f -p 80 -h /www',
];
/** A UDP server answering "<name> <peer address>"; a client asking from a fresh socket each time. */
const UDP_SERVER = `import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('0.0.0.0',5353))
while True:
  d,a=s.recvfrom(100);s.sendto(('%s %s'%(sys.argv[1],a[0])).encode(),a)`;
const UDP_CLIENT = `import socket,sys
for i in range(int(sys.argv[3])):
  c=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);c.settimeout(2);c.sendto(b'x',(sys.argv[1],int(sys.argv[2])))
  try: print(c.recvfrom(100)[0].decode())
  except Exception: print('timeout')
  c.close()`;
/** `n` HTTP requests from the client host: each answer, or "refused"/"failed". */
const HTTP_CLIENT = `import sys,urllib.request
for i in range(int(sys.argv[2])):
  try: print(urllib.request.urlopen(sys.argv[1],timeout=3).read().decode().strip().replace('[::ffff:','').replace(']',''))
  except Exception as e:
    r=getattr(e,'reason',e)
    print('refused' if isinstance(r,ConnectionRefusedError) else 'failed %s'%r)`;

describe(
  'published ports: the routing mesh keeps the client address, host-mode ports',
  { skip: skipUnlessRoot || (!hasDocker && 'needs the docker CLI') },
  () => {
    let lab: SwarmLab;
    const servers: ChildProcess[] = [];
    const docker = async (host: string, args: string[]): Promise<string> => {
      const r = await lab.docker(host, args);
      assert.equal(r.code, 0, `docker ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    const ipOf = (host: string): string => lab.host(host).ip;
    const client = (): string => lab.plan.client!.netns;
    const py = async (netns: string, code: string, args: string[]): Promise<string[]> =>
      (await execFileP('ip', ['netns', 'exec', netns, 'python3', '-c', code, ...args], { timeout: 120_000 })).stdout.split('\n').filter(Boolean);
    const httpFrom = (netns: string, url: string, n: number): Promise<string[]> => py(netns, HTTP_CLIENT, [url, String(n)]);
    const live = async (svc: string): Promise<Json[]> =>
      (await lab.api('node1').get<Json[]>(`/tasks?filters=${encodeURIComponent(JSON.stringify({ service: { [svc]: true } }))}`)).filter(
        (t) => t.DesiredState === 'running' && t.Status.State === 'running',
      );
    const running = (svc: string, n: number): Promise<Json[]> =>
      waitFor(`${n} running ${svc} tasks`, async () => ((await live(svc)).length === n ? live(svc) : undefined), 30_000, 200);
    const nodeNames = async (): Promise<Record<string, string>> =>
      Object.fromEntries((await lab.api('node1').get<Json[]>('/nodes')).map((n) => [n.ID as string, n.Description.Hostname as string]));
    // Just after a restart the node may not have its ingress overlay back yet: wait for it.
    const meshRepairs = (host: string): Promise<number> =>
      waitFor(
        `the ingress overlay on ${host}`,
        async () => (await lab.api(host).get<Json>('/networks/ingress?verbose=true')).Overlay?.Mesh?.Repairs as number | undefined,
        15_000,
        100,
      );

    before(async () => {
      lab = await SwarmLab.up('mesh', 3, 500);
      await formSwarm(lab);
    });
    after(async () => {
      for (const p of servers) if (p.pid) process.kill(p.pid, 'SIGKILL');
      await lab?.down();
    });

    it('every node answers on the published port, also one with no task; each task sees the client address; 40 connections reach both', async () => {
      const t0 = Date.now();
      await docker('node1', [
        'service',
        'create',
        '-d',
        '--name',
        'web',
        '--replicas',
        '2',
        '--publish',
        '8080:80',
        '--constraint',
        'node.hostname!=node3',
        'busybox:local',
        ...HTTPD,
      ]);
      const tasks = await running('web', 2);
      const names = await nodeNames();
      assert.deepEqual(tasks.map((t) => names[t.NodeID]).sort(), ['node1', 'node2']);
      assert.match(await docker('node1', ['service', 'ls', '--format', '{{.Name}} {{.Ports}}']), /^web \*:8080->80\/tcp$/m);
      const first = await waitFor(
        'the port answers through node3',
        async () => ((await httpFrom(client(), `http://${ipOf('node3')}:8080/cgi-bin/peer`, 1))[0]?.includes(' ') ? Date.now() : undefined),
        10_000,
        50,
      );
      console.log(`# published port answered ${first - t0} ms after service create was sent`);
      const taskHosts = new Set<string>();
      for (const h of ['node3', 'node1', 'node2']) {
        const answers = await httpFrom(client(), `http://${ipOf(h)}:8080/cgi-bin/peer`, 20);
        assert.equal(answers.length, 20);
        for (const a of answers) {
          const [hostname, peer] = a.split(' ');
          assert.equal(peer, lab.plan.client!.ip, `through ${h}, the task saw the client's own address (${a})`);
          taskHosts.add(hostname!);
        }
      }
      assert.equal(taskHosts.size, 2, 'connections are balanced over both tasks');
      // The node itself, on its loopback and its own address.
      const local = await httpFrom(lab.host('node3').netns, 'http://127.0.0.1:8080/cgi-bin/peer', 1);
      assert.match(local[0] ?? '', /^\S+ \S+$/, `127.0.0.1 on node3: ${local[0]}`);
      const own = await httpFrom(lab.host('node3').netns, `http://${ipOf('node3')}:8080/cgi-bin/peer`, 1);
      assert.equal(own[0]?.split(' ')[1], ipOf('node3'), 'a client on the node itself is seen as the node');
      // A task reaching the port through its own node's address (out of docker_gwbridge and back).
      const c1 = (await docker('node1', ['ps', '-q', '--filter', 'label=com.docker.swarm.service.name=web'])).split('\n').filter(Boolean)[0]!;
      const hairpin = await docker('node1', ['exec', c1, 'sh', '-c', `timeout 3 wget -q -O- http://${ipOf('node1')}:8080/cgi-bin/peer`]);
      assert.match(hairpin, /^\S+ \S+$/m, 'a task reaches a published port through its own node');
    });

    it('UDP through the mesh: 40 exchanges spread over both tasks, each seeing the client', async () => {
      await docker('node1', [
        'service',
        'create',
        '-d',
        '--name',
        'dns',
        '--replicas',
        '2',
        '--publish',
        '5353:5353/udp',
        '--constraint',
        'node.hostname!=node3',
        'busybox:local',
        'sleep',
        '3600',
      ]);
      const tasks = await running('dns', 2);
      for (const t of tasks) {
        const host = (await nodeNames())[t.NodeID]!;
        const ns = `${lab.host(host).netns}-c-${(t.ID as string).slice(0, 12)}`;
        servers.push(spawn('ip', ['netns', 'exec', ns, 'python3', '-c', UDP_SERVER, host], { stdio: 'ignore' }));
      }
      const answers = await waitFor(
        'UDP answers from both tasks through node3',
        async () => {
          const got = await py(client(), UDP_CLIENT, [ipOf('node3'), '5353', '40']);
          return new Set(got.map((g) => g.split(' ')[0])).size === 2 && !got.includes('timeout') ? got : undefined;
        },
        15_000,
        300,
      );
      assert.equal(answers.length, 40);
      for (const a of answers) assert.equal(a.split(' ')[1], lab.plan.client!.ip, a);
    });

    it('host mode: the port answers only on the nodes with a task; a replica with no free node stays pending and says why', async () => {
      await docker('node1', [
        'service',
        'create',
        '-d',
        '--name',
        'hosted',
        '--replicas',
        '3',
        '--publish',
        'mode=host,target=80,published=8081',
        '--constraint',
        'node.hostname!=node3',
        'busybox:local',
        ...HTTPD,
      ]);
      await running('hosted', 2);
      const pending = await waitFor(
        'the third replica pending',
        async () =>
          (await lab.api('node1').get<Json[]>(`/tasks?filters=${encodeURIComponent(JSON.stringify({ service: { hosted: true } }))}`)).find(
            (t) => t.Status.State === 'pending' && t.Status.Err,
          ),
        10_000,
        200,
      );
      assert.match(pending.Status.Err, /no suitable node \(.*host-mode port already in use on 2 nodes/);
      for (const h of ['node1', 'node2']) {
        const a = await waitFor(
          `8081 on ${h}`,
          async () => (await httpFrom(client(), `http://${ipOf(h)}:8081/cgi-bin/peer`, 1)).find((x) => x.includes(' ')),
          10_000,
          100,
        );
        assert.equal(a.split(' ')[1], lab.plan.client!.ip);
      }
      assert.deepEqual(await httpFrom(client(), `http://${ipOf('node3')}:8081/cgi-bin/peer`, 1), ['refused'], 'no task on node3: nothing there');
      assert.match(await docker('node1', ['service', 'ps', '--format', '{{.Ports}}', 'hosted']), /\*:8081->80\/tcp/);
    });

    it('drift in the node table and the sandbox is repaired and counted; a restarted daemon adopts its ports and keeps serving', async () => {
      const before = await meshRepairs('node3');
      await execFileP('ip', ['netns', 'exec', lab.host('node3').netns, 'nft', 'delete', 'element', 'ip', 'vxswarm_ports', 'ports', '{ tcp . 8080 }']);
      await waitFor('the repair', async () => ((await meshRepairs('node3')) > before ? true : undefined), 10_000, 100);
      const after = await httpFrom(client(), `http://${ipOf('node3')}:8080/cgi-bin/peer`, 5);
      assert.ok(
        after.every((a) => a.endsWith(` ${lab.plan.client!.ip}`)),
        after.join('\n'),
      );
      await lab.stop('node3');
      // Down: the kernel keeps serving what it holds.
      const whileDown = await httpFrom(client(), `http://${ipOf('node3')}:8080/cgi-bin/peer`, 3);
      assert.ok(
        whileDown.every((a) => a.endsWith(` ${lab.plan.client!.ip}`)),
        whileDown.join('\n'),
      );
      await lab.start('node3');
      const repairsAfter = await meshRepairs('node3');
      const again = await httpFrom(client(), `http://${ipOf('node3')}:8080/cgi-bin/peer`, 10);
      assert.ok(
        again.every((a) => a.endsWith(` ${lab.plan.client!.ip}`)),
        again.join('\n'),
      );
      assert.equal(repairsAfter, 0, 'adopted as found, nothing to repair');
    });

    it('bad input is refused with a 4xx and changes nothing', async () => {
      const spec = (ports: Json[]): string =>
        JSON.stringify({ Name: 'bad', TaskTemplate: { ContainerSpec: { Image: 'busybox:local' } }, EndpointSpec: { Ports: ports } });
      const cases: Array<[Json[], number, RegExp]> = [
        [[{ TargetPort: 0, PublishedPort: 9000 }], 400, /invalid target port 0/],
        [[{ TargetPort: 80, PublishedPort: 70000 }], 400, /invalid published port 70000/],
        [[{ TargetPort: 80, PublishedPort: 8080 }], 409, /port '8080' is already in use by service 'web'/],
        [
          [
            { TargetPort: 80, PublishedPort: 9000 },
            { TargetPort: 81, PublishedPort: 9000 },
          ],
          400,
          /listed twice/,
        ],
      ];
      const names = async (): Promise<string> => (await docker('node1', ['service', 'ls', '--format', '{{.Name}}'])).split('\n').sort().join(',');
      const was = await names();
      for (const [ports, status, re] of cases) {
        const r = await lab.raw('node1', 'POST', '/v1.45/services/create', spec(ports), { 'Content-Type': 'application/json' });
        assert.equal(r.status, status, r.body);
        assert.match(r.body, re);
      }
      assert.equal(await names(), was);
    });

    it('docker stack deploy of a compose file with ports: publishes through the same path; stack rm takes it away', async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vxs-stack-'));
      try {
        fs.writeFileSync(
          path.join(dir, 'compose.yml'),
          [
            'services:',
            '  front:',
            '    image: busybox:local',
            // compose interpolates $: $$ is a literal one
            `    command: ${JSON.stringify(HTTPD).replace(/\$/g, '$$$$')}`,
            '    ports:',
            '      - "8088:80"',
            '    deploy:',
            '      replicas: 1',
            '',
          ].join('\n'),
        );
        await docker('node1', ['stack', 'deploy', '--detach=true', '-c', path.join(dir, 'compose.yml'), 'shop']);
        assert.match(await docker('node1', ['service', 'ls', '--format', '{{.Name}} {{.Ports}}']), /^shop_front \*:8088->80\/tcp$/m);
        const a = await waitFor(
          "the stack's port on node3",
          async () => (await httpFrom(client(), `http://${ipOf('node3')}:8088/cgi-bin/peer`, 1)).find((x) => x.includes(' ')),
          20_000,
          200,
        );
        assert.equal(a.split(' ')[1], lab.plan.client!.ip);
        await docker('node1', ['stack', 'rm', 'shop']);
        await waitFor(
          '8088 closed on node3',
          async () => ((await httpFrom(client(), `http://${ipOf('node3')}:8088/cgi-bin/peer`, 1))[0] === 'refused' ? true : undefined),
          15_000,
          200,
        );
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it('service update --publish-rm and service rm: the port stops answering on every node', async () => {
      await docker('node1', ['service', 'update', '-d', '--publish-rm', '80', 'web']);
      for (const h of ['node1', 'node2', 'node3'])
        await waitFor(
          `8080 closed on ${h}`,
          async () => ((await httpFrom(client(), `http://${ipOf(h)}:8080/cgi-bin/peer`, 1))[0] === 'refused' ? true : undefined),
          15_000,
          200,
        );
      assert.match(await docker('node1', ['service', 'ls', '--format', '{{.Name}}:{{.Ports}}']), /^web:$/m);
      await docker('node1', ['service', 'rm', 'hosted']);
      for (const h of ['node1', 'node2'])
        await waitFor(
          `8081 closed on ${h}`,
          async () => ((await httpFrom(client(), `http://${ipOf(h)}:8081/cgi-bin/peer`, 1))[0] === 'refused' ? true : undefined),
          15_000,
          200,
        );
    });
  },
);
