// Issue 14: egress through docker_gwbridge on two lab hosts. "Outside" is the lab router and the
// other host's underlay address; no rule sends anything off this machine (the lab has no route out).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { skipUnlessRoot } from './helpers.js';
import { SwarmLab, formSwarm, hasDocker, waitFor } from './swarm-helpers.js';

const execFileP = promisify(execFile);

describe('egress from tasks (docker_gwbridge)', { skip: skipUnlessRoot || (!hasDocker && 'needs the docker CLI') }, () => {
  let lab: SwarmLab;
  const docker = async (host: string, args: string[]): Promise<{ code: number; out: string }> => {
    const r = await lab.docker(host, args);
    return { code: r.code, out: r.stdout + r.stderr };
  };
  const must = async (host: string, args: string[]): Promise<string> => {
    const r = await docker(host, args);
    assert.equal(r.code, 0, `docker ${args.join(' ')}: ${r.out}`);
    return r.out;
  };
  const containers = async (host: string, svc: string, n: number): Promise<string[]> =>
    waitFor(
      `${n} ${svc} containers on ${host}`,
      async () => {
        const ids = (await must(host, ['ps', '-q', '--filter', `label=com.docker.swarm.service.name=${svc}`])).split('\n').filter(Boolean);
        return ids.length === n ? ids : undefined;
      },
      30_000,
      200,
    );
  const service = (name: string, net: string, replicas: number): Promise<string> =>
    must('node1', [
      'service',
      'create',
      '-d',
      '--name',
      name,
      '--network',
      net,
      '--replicas',
      String(replicas),
      '--constraint',
      'node.hostname==node1',
      'busybox:local',
      'sleep',
      'infinity',
    ]);

  before(async () => {
    lab = await SwarmLab.up('egr', 2);
    await formSwarm(lab);
    await must('node1', ['network', 'create', '-d', 'overlay', 'out-net']);
    await must('node1', ['network', 'create', '-d', 'overlay', '--internal', 'in-net']);
    await service('open', 'out-net', 2);
    await service('closed', 'in-net', 1);
  });
  after(async () => {
    await lab?.down();
  });

  it('a task on an overlay reaches the lab router and the other host, masqueraded to its node; an internal one cannot', async () => {
    const router = lab.plan.nets[lab.host('node1').l2]!.gateway;
    const other = lab.host('node2').ip;
    const [c] = await containers('node1', 'open', 2);
    for (const target of [router, other]) {
      const p = await must('node1', ['exec', c!, 'ping', '-c', '2', '-W', '2', target]);
      assert.match(p, / 0% packet loss/, `to ${target}`);
    }
    const route = await must('node1', ['exec', c!, 'ip', 'route']);
    assert.match(route, /^default via 172\.18\.0\.1 dev gw0/m);
    // Masqueraded: node2 sees node1's own address (its neighbour table learns no 172.18 address).
    const neigh = (await execFileP('ip', ['-n', lab.host('node2').netns, 'neigh'])).stdout;
    assert.doesNotMatch(neigh, /172\.18\./);
    const [closed] = await containers('node1', 'closed', 1);
    const q = await docker('node1', ['exec', closed!, 'ping', '-c', '1', '-W', '2', router]);
    assert.notEqual(q.code, 0, 'an internal network has no way out');
    assert.doesNotMatch(await must('node1', ['exec', closed!, 'ip', 'route']), /default/);
    assert.doesNotMatch(await must('node1', ['exec', closed!, 'ip', 'addr']), /gw0/);
  });

  it("a task on no network has Docker's local bridge (docker0, 172.17.0.0/16): its way out and the resolver", async () => {
    await must('node1', ['service', 'create', '-d', '--name', 'alone', '--constraint', 'node.hostname==node1', 'busybox:local', 'sleep', 'infinity']);
    const [c] = await containers('node1', 'alone', 1);
    assert.match(await must('node1', ['exec', c!, 'ip', '-4', 'addr', 'show', 'eth0']), /inet 172\.17\.\d+\.\d+\/16/);
    assert.match(await must('node1', ['exec', c!, 'ip', 'route']), /^default via 172\.17\.0\.1 dev eth0/m);
    const router = lab.plan.nets[lab.host('node1').l2]!.gateway;
    assert.match(await must('node1', ['exec', c!, 'ping', '-c', '2', '-W', '2', router]), / 0% packet loss/);
    // The resolver answers (a single label no one has: NXDOMAIN at once, from 127.0.0.11).
    const ns = await docker('node1', ['exec', c!, 'nslookup', 'nosuchname']);
    assert.match(ns.out, /127\.0\.0\.11/);
    assert.match(ns.out, /NXDOMAIN/);
  });

  it("the bridge's ports cannot reach each other (enable_icc=false); the overlay between the same tasks works", async () => {
    const [a, b] = await containers('node1', 'open', 2);
    const addrOf = async (c: string, dev: string): Promise<string> =>
      /inet (\d+\.\d+\.\d+\.\d+)\//.exec(await must('node1', ['exec', c, 'ip', '-4', 'addr', 'show', dev]))![1]!;
    const gwB = await addrOf(b!, 'gw0');
    const ovB = await addrOf(b!, 'eth0');
    assert.match(gwB, /^172\.18\./);
    const viaGw = await docker('node1', ['exec', a!, 'ping', '-c', '1', '-W', '2', gwB]);
    assert.notEqual(viaGw.code, 0, 'no traffic between gwbridge ports');
    assert.match(await must('node1', ['exec', a!, 'ping', '-c', '1', '-W', '2', ovB]), / 0% packet loss/);
  });

  it('a restart keeps the way out: the bridge and its rules come back, the tasks keep their addresses', async () => {
    const [c] = await containers('node1', 'open', 2);
    const before = await must('node1', ['exec', c!, 'ip', '-4', 'addr', 'show', 'gw0']);
    await lab.stop('node1');
    await lab.start('node1');
    await waitFor('node1 answers', async () => ((await docker('node1', ['info'])).code === 0 ? true : undefined), 20_000, 200);
    assert.equal(await must('node1', ['exec', c!, 'ip', '-4', 'addr', 'show', 'gw0']), before);
    const router = lab.plan.nets[lab.host('node1').l2]!.gateway;
    const p = await waitFor(
      'the way out after the restart',
      async () => {
        const r = await docker('node1', ['exec', c!, 'ping', '-c', '1', '-W', '2', router]);
        return r.code === 0 ? r.out : undefined;
      },
      10_000,
      300,
    );
    assert.match(p, / 0% packet loss/);
    const tables = (await execFileP('ip', ['netns', 'exec', lab.host('node1').netns, 'nft', 'list', 'tables'])).stdout;
    assert.match(tables, /table ip vxswarm_gw/);
    assert.equal((tables.match(/table ip vxswarm_gw/g) ?? []).length, 1, 'once, not once per start');
  });
});
