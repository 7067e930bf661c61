// Issue 14: service VIPs load-balanced with nftables in every task's namespace, on three hosts with
// the stock docker CLI: ping, TCP and UDP through the VIP, scaling, dnsrr, drift and restart.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { skipUnlessRoot } from './helpers.js';
import { SwarmLab, formSwarm, hasDocker, waitFor } from './swarm-helpers.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const execFileP = promisify(execFile);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A UDP server answering every datagram with its name; a client asking from a fresh socket each time. */
const UDP_SERVER = `import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('0.0.0.0',9999))
while True:
  d,a=s.recvfrom(100);s.sendto(sys.argv[1].encode(),a)`;
const UDP_CLIENT = `import socket,sys
for i in range(int(sys.argv[2])):
  c=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);c.settimeout(2);c.sendto(b'x',(sys.argv[1],9999))
  try: print(c.recvfrom(100)[0].decode())
  except Exception: print('timeout')
  c.close()`;

/** A TCP server on 7777 answering each line with its name, on one connection for as long as it lasts. */
const ECHO_SERVER = `import socket,sys,threading
s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('0.0.0.0',7777));s.listen(16)
def serve(c):
  f=c.makefile('rb')
  for line in f: c.sendall((sys.argv[1]+'\\n').encode())
while True:
  c,_=s.accept();threading.Thread(target=serve,args=(c,),daemon=True).start()`;
/** One connection: a line, an idle pause, a line; prints who answered each. */
const IDLE_CLIENT = `import socket,sys,time
c=socket.create_connection((sys.argv[1],7777),timeout=5);f=c.makefile('rb')
c.sendall(b'a\\n');print(f.readline().decode().strip())
time.sleep(float(sys.argv[2]))
c.sendall(b'b\\n');print(f.readline().decode().strip())`;
const IDLE_S = 20;

describe('service VIPs, load-balanced in the kernel', { skip: skipUnlessRoot || (!hasDocker && 'needs the docker CLI') }, () => {
  let lab: SwarmLab;
  const servers: ChildProcess[] = [];
  const hosts = ['node1', 'node2', 'node3'];

  const docker = (host: string, args: string[]): Promise<string> => lab.dockerOk(host, args);
  const live = async (svc: string): Promise<Json[]> => (await lab.tasks(svc)).filter((t) => t.Status.State === 'running');
  const running = (svc: string, n: number): Promise<Json[]> =>
    waitFor(`${n} running ${svc} tasks`, async () => ((await live(svc)).length === n ? live(svc) : undefined), 30_000, 200);
  /** The container of a running task of `svc` on `host`. */
  const containerOn = (host: string, svc: string): Promise<string> => lab.containerOf(host, svc, 20_000);
  const netnsOf = (host: string, taskId: string): string => `${lab.host(host).netns}-c-${taskId.slice(0, 12)}`;
  const vipOf = async (svc: string): Promise<string | undefined> =>
    (await docker('node1', ['service', 'inspect', '-f', '{{range .Endpoint.VirtualIPs}}{{.Addr}}{{end}}', svc])).trim().split('/')[0] || undefined;
  /** `n` HTTP requests to `target` from inside a container: the names that answered, in order. */
  const http = async (host: string, container: string, target: string, n: number): Promise<string[]> =>
    (await docker(host, ['exec', container, 'sh', '-c', `for i in $(seq ${n}); do timeout 3 wget -q -O- http://${target}/ || echo failed; done`]))
      .split('\n')
      .filter(Boolean);
  /** 30 requests to `web` from `container` on `host`, once all three backends answer among them. */
  const balanced = (what: string, host: string, container: string): Promise<string[]> =>
    waitFor(
      what,
      async () => {
        const x = await http(host, container, 'web', 30);
        return new Set(x).size === 3 ? x : undefined;
      },
      10_000,
      300,
    );
  const nodeNames = async (): Promise<Record<string, string>> =>
    Object.fromEntries((await lab.api('node1').get<Json[]>('/nodes')).map((n) => [n.ID as string, n.Description.Hostname as string]));
  const lbTable = async (netns: string): Promise<Json[]> =>
    (JSON.parse((await execFileP('ip', ['netns', 'exec', netns, 'nft', '-j', 'list', 'table', 'ip', 'vxswarm'])).stdout) as { nftables: Json[] }).nftables;

  before(async () => {
    lab = await SwarmLab.up('vip', 3, 500);
    await formSwarm(lab);
    await docker('node1', ['network', 'create', '-d', 'overlay', 'lb-net']);
    await docker('node1', [
      'service',
      'create',
      '-d',
      '--name',
      'web',
      '--network',
      'lb-net',
      '--replicas',
      '3',
      'busybox:local',
      'sh',
      '-c',
      'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www',
    ]);
  });
  after(async () => {
    for (const p of servers) if (p.pid) process.kill(p.pid, 'SIGKILL');
    await lab?.down();
  });

  it('ping, 60 TCP connections and 60 UDP exchanges to the service from a task on every host reach every backend', async () => {
    const tasks = await running('web', 3);
    const names = await nodeNames();
    assert.deepEqual(tasks.map((t) => names[t.NodeID]).sort(), hosts, 'one task per host');
    const vip = (await vipOf('web'))!;
    assert.match(vip, /^10\.0\.\d+\.\d+$/);
    const taskIps = tasks.map((t) => (t.NetworksAttachments[0].Addresses[0] as string).split('/')[0]);
    assert.ok(!taskIps.includes(vip));
    const backends = new Set<string>();
    for (const h of hosts) {
      const c = await containerOn(h, 'web');
      const ping = await docker(h, ['exec', c, 'ping', '-c', '2', '-W', '2', 'web']);
      assert.match(ping, new RegExp(`PING web \\(${vip.replace(/\./g, '\\.')}\\)`), 'the name is the VIP');
      assert.match(ping, / 0% packet loss/, `a ping to the VIP from ${h} is answered`);
      const got = await waitFor(
        `the VIP's backends from ${h}`,
        async () => {
          const r = await http(h, c, 'web', 60);
          return new Set(r).size === 3 && !r.includes('failed') ? r : undefined;
        },
        10_000,
        200,
      );
      assert.equal(got.length, 60);
      for (const x of got) backends.add(x);
    }
    assert.equal(backends.size, 3, 'the same three backends from every host');
    // network inspect -v: Docker's Services map, as a worker sees it.
    const v = (await lab.api('node2').get<Json>('/networks/lb-net?verbose=true')).Services.web;
    assert.equal(v.VIP, vip);
    assert.deepEqual(v.Tasks.map((t: Json) => t.EndpointIP).sort(), [...taskIps].sort());
    assert.deepEqual(v.Tasks.map((t: Json) => t.Info['Host IP']).sort(), hosts.map((h) => lab.host(h).ip).sort());

    // UDP: a server in each task's namespace, a client in node1's task namespace.
    for (const t of tasks) {
      const p = spawn('ip', ['netns', 'exec', netnsOf(names[t.NodeID]!, t.ID), 'python3', '-c', UDP_SERVER, t.ID], { stdio: 'ignore' });
      servers.push(p);
    }
    await sleep(500);
    const me = tasks.find((t) => names[t.NodeID] === 'node1')!;
    const udp = (await execFileP('ip', ['netns', 'exec', netnsOf('node1', me.ID), 'python3', '-c', UDP_CLIENT, vip, '60'])).stdout.split('\n').filter(Boolean);
    assert.equal(udp.length, 60);
    assert.ok(!udp.includes('timeout'), `every datagram answered: ${udp.filter((x) => x === 'timeout').length} timeouts`);
    assert.deepEqual([...new Set(udp)].sort(), tasks.map((t) => t.ID as string).sort(), 'UDP reaches all three backends');
  });

  it('scale to 1: no new connection reaches a removed task; back to 3: the new tasks take connections', async () => {
    await docker('node1', ['service', 'scale', '-d', 'web=1']);
    // The removed tasks leave every load balancer when they are told to stop (gossip carries it
    // in milliseconds); give it one reconcile period.
    await sleep(500);
    const [left] = await running('web', 1);
    const names = await nodeNames();
    const host = names[left!.NodeID]!;
    const c = await containerOn(host, 'web');
    const survivor = (await docker(host, ['exec', c, 'hostname'])).trim();
    const after1 = await http(host, c, 'web', 20);
    assert.deepEqual([...new Set(after1)], [survivor], `only the task left answers: ${after1.join(' ')}`);
    await docker('node1', ['service', 'scale', '-d', 'web=3']);
    await running('web', 3);
    const back = await waitFor(
      'three backends again',
      async () => {
        const r = await http(host, c, 'web', 60);
        return new Set(r.filter((x) => x !== 'failed')).size === 3 ? r : undefined;
      },
      20_000,
      300,
    );
    assert.ok(back.some((x) => x !== survivor));
  });

  it('dnsrr: no VIP, the name gives the task addresses; back to vip: a VIP again, load-balanced', async () => {
    await docker('node1', ['service', 'update', '-d', '--endpoint-mode', 'dnsrr', 'web']);
    assert.equal(await vipOf('web'), undefined);
    const tasks = await running('web', 3);
    const ips = tasks.map((t) => (t.NetworksAttachments[0].Addresses[0] as string).split('/')[0]).sort();
    const c = await containerOn('node2', 'web');
    const lookup = async (name: string): Promise<string[]> =>
      (await docker('node2', ['exec', c, 'nslookup', name]))
        .split('\n')
        .filter((l) => /^Address: /.test(l))
        .map((l) => l.slice(9).trim())
        .sort();
    await waitFor('the name to give the tasks', async () => ((await lookup('web')).join() === ips.join() ? true : undefined), 10_000, 200);
    assert.deepEqual(await lookup('tasks.web'), ips);
    assert.equal((await live('web')).length, 3, 'no task was replaced');
    await docker('node1', ['service', 'update', '-d', '--endpoint-mode', 'vip', 'web']);
    const vip = (await vipOf('web'))!;
    assert.ok(vip);
    await waitFor('the name to give the VIP', async () => ((await lookup('web')).join() === vip ? true : undefined), 10_000, 200);
    assert.equal((await balanced('the new VIP load-balanced', 'node2', c)).length, 30);
  });

  it("drift: a VIP deleted by hand from a task's namespace is put back within a period, and counted", async () => {
    const vip = (await vipOf('web'))!;
    const [t] = await live('web');
    const names = await nodeNames();
    const host = names[t!.NodeID]!;
    const ns = netnsOf(host, t!.ID);
    const elems = async (): Promise<string[]> => ((await lbTable(ns)).find((i) => i.map?.name === 'vips')?.map.elem ?? []).map((e: [string, unknown]) => e[0]);
    assert.deepEqual(await elems(), [vip]);
    const before = (await lab.api(host).get<Json>('/networks/lb-net?verbose=true')).Overlay.LoadBalancers.Repairs as number;
    await execFileP('ip', ['netns', 'exec', ns, 'nft', 'delete', 'element', 'ip', 'vxswarm', 'vips', `{ ${vip} }`]);
    await waitFor('the VIP back', async () => ((await elems()).includes(vip) ? true : undefined), 5000, 100);
    const after = (await lab.api(host).get<Json>('/networks/lb-net?verbose=true')).Overlay.LoadBalancers.Repairs as number;
    assert.ok(after > before, `repairs counted: ${before} → ${after}`);
  });

  it('an idle TCP connection through the VIP lives on: conntrack keeps it for days, not 15 minutes as IPVS (moby/moby#31208)', async () => {
    const names = await nodeNames();
    const tasks = await live('web');
    for (const t of tasks)
      servers.push(spawn('ip', ['netns', 'exec', netnsOf(names[t.NodeID]!, t.ID), 'python3', '-c', ECHO_SERVER, t.ID], { stdio: 'ignore' }));
    const me = tasks.find((t) => names[t.NodeID] === 'node1')!;
    const ns = netnsOf('node1', me.ID);
    // The kernel's timeout is what holds an idle connection: Linux's five days, and nothing of ours shortens it.
    const timeout = Number((await execFileP('ip', ['netns', 'exec', ns, 'cat', '/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established'])).stdout);
    assert.ok(timeout >= 15 * 60, `established TCP conntrack timeout ${timeout} s`);
    const vip = (await vipOf('web'))!;
    await sleep(300);
    const out = (await execFileP('ip', ['netns', 'exec', ns, 'python3', '-c', IDLE_CLIENT, vip, String(IDLE_S)], { timeout: (IDLE_S + 20) * 1000 })).stdout
      .trim()
      .split('\n');
    assert.equal(out.length, 2, out.join('\n'));
    assert.equal(out[0], out[1], `the same backend answers before and after ${IDLE_S} s idle`);
    assert.ok(tasks.some((t) => t.ID === out[0]));
  });

  it('--placement-pref spread=node.labels.zone: two zones of one and two nodes hold two tasks each', async () => {
    const zones: Array<[string, string]> = [
      ['node1', 'a'],
      ['node2', 'a'],
      ['node3', 'b'],
    ];
    for (const [h, z] of zones) await docker('node1', ['node', 'update', '--label-add', `zone=${z}`, h]);
    await docker('node1', [
      'service',
      'create',
      '-d',
      '--name',
      'zoned',
      '--replicas',
      '4',
      '--placement-pref',
      'spread=node.labels.zone',
      'busybox:local',
      'sleep',
      'infinity',
    ]);
    try {
      const tasks = await running('zoned', 4);
      const names = await nodeNames();
      const on = tasks.map((t) => names[t.NodeID]);
      assert.equal(on.filter((n) => n === 'node3').length, 2, `zone b holds half: ${on.join(',')}`);
      assert.match(
        await docker('node1', ['service', 'inspect', '-f', '{{json .Spec.TaskTemplate.Placement}}', 'zoned']),
        /"SpreadDescriptor":"node.labels.zone"/,
      );
    } finally {
      await docker('node1', ['service', 'rm', 'zoned']);
    }
  });

  it("a daemon restart adopts its task namespaces' load balancers as they are, and they keep working", async () => {
    const names = await nodeNames();
    const t = (await live('web')).find((x) => names[x.NodeID] === 'node2')!;
    const ns = netnsOf('node2', t.ID);
    const handles = async (): Promise<string> =>
      JSON.stringify(
        (await lbTable(ns)).filter((i) => i.table || i.chain || i.map).map((i) => [Object.keys(i)[0], Object.values(i)[0].name, Object.values(i)[0].handle]),
      );
    const was = await handles();
    await lab.stop('node2');
    await lab.start('node2');
    await waitFor(
      'node2 ready',
      async () => ((await lab.api('node1').get<Json[]>('/nodes')).every((n) => n.Status.State === 'ready') ? true : undefined),
      20_000,
      200,
    );
    await sleep(1500);
    assert.equal(await handles(), was, 'the same table, map and chains: adopted, not rebuilt');
    const c = await containerOn('node2', 'web');
    assert.equal((await balanced('the VIP still balanced from node2', 'node2', c)).length, 30);
  });
});
