// Managers on etcd, step 1: three real etcd members in three lab hosts, TLS from the swarm CA,
// joined as learners and promoted, a member removed for good, a stale etcd replaced on restart.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/core/log.js';
import { RootCA, certInfo, createCsr, createRootCA } from '../../src/cluster/manager/ca.js';
import { EtcdMember, ETCD_BIN, peerUrl, type EtcdMemberConfig } from '../../src/cluster/etcd/member.js';
import { hostPaths, labDown, labUp } from '../../src/lab/lab.js';
import type { LabPlan } from '../../src/lab/plan.js';
import { skipUnlessRoot, uniqueLabName } from './helpers.js';

const execFileP = promisify(execFile);
const hasEtcd = fs.existsSync(ETCD_BIN);

/** `ip` arguments for curl inside a lab host, with the ca.pem, cert.pem and key.pem of a TLS directory. */
const curlIn = (netns: string, tls: string, ...args: string[]): string[] => [
  ...['netns', 'exec', netns, 'curl', '-sS', '-m', '5', ...args],
  ...['--cacert', `${tls}/ca.pem`, '--cert', `${tls}/cert.pem`, '--key', `${tls}/key.pem`],
];

describe('etcd members in lab hosts', { skip: skipUnlessRoot || (!hasEtcd && 'needs etcd-server') }, () => {
  const name = uniqueLabName('etcd');
  let plan: LabPlan;
  let ca: RootCA;
  const members = new Map<string, EtcdMember>();

  /** The gateway, called from inside the host (its loopback is not ours). */
  const viaHost =
    (netns: string) =>
    async (method: string, url: string, body: unknown, tls: string): Promise<unknown> => {
      const args = curlIn(netns, tls, '-X', method);
      if (body !== undefined) args.push('-H', 'content-type: application/json', '-d', JSON.stringify(body));
      const { stdout } = await execFileP('ip', [...args, url]);
      const r = JSON.parse(stdout || '{}') as { error?: string; message?: string };
      if (r.error || (r.message && !('header' in r))) throw new Error(`etcd: ${r.message ?? r.error}`);
      return r;
    };

  async function member(host: string, role: 'manager' | 'worker', cluster: Record<string, string>, state: 'new' | 'existing'): Promise<EtcdMember> {
    const h = plan.hosts.find((x) => x.name === host)!;
    const { csrPem, keyPem } = await createCsr();
    const certPem = await ca.sign(csrPem, host, role, 'cluster1', 90, role === 'manager' ? [h.ip, '127.0.0.1'] : []);
    const cfg: EtcdMemberConfig = {
      name: host,
      dir: `${hostPaths(name, host).root}/etcd`,
      advertiseIp: h.ip,
      tls: { caPem: ca.certPem, certPem, keyPem, crlPem: await ca.crl([]) },
      initialCluster: cluster,
      state,
      clusterToken: 'cluster1',
      commandPrefix: ['nsenter', `--net=/run/netns/${h.netns}`, '--'],
      transport: viaHost(h.netns),
      log: createLogger(),
    };
    const m = new EtcdMember(cfg);
    members.set(host, m);
    return m;
  }

  before(async () => {
    plan = await labUp(name, 4);
    ca = await RootCA.load(await createRootCA());
  });
  after(async () => {
    for (const m of members.values()) await m.stop().catch(() => undefined);
    await labDown(name);
  });

  it('one member, then two learners promoted once caught up: a write on one is read on all', { timeout: 120_000 }, async () => {
    const ip = (h: string): string => plan.hosts.find((x) => x.name === h)!.ip;
    const m1 = await member('node1', 'manager', { node1: peerUrl(ip('node1')) }, 'new');
    await m1.start();
    await m1.put('/vxswarm/hello', 'world');
    const cluster: Record<string, string> = { node1: peerUrl(ip('node1')) };
    for (const h of ['node2', 'node3']) {
      const added = await m1.addLearner(peerUrl(ip(h)));
      assert.equal(added.isLearner, true);
      cluster[h] = peerUrl(ip(h));
      const m = await member(h, 'manager', { ...cluster }, 'existing');
      await m.start();
      // etcd refuses to promote a learner that has not caught up yet
      for (let i = 0; ; i++) {
        try {
          await m1.promote(added.ID);
          break;
        } catch (e) {
          if (i > 100) throw e;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    }
    const list = await m1.members();
    assert.equal(list.length, 3);
    assert.ok(
      list.every((x) => !x.isLearner),
      'every member votes',
    );
    const w = await members.get('node3')!.put('/vxswarm/x', 'from node3');
    for (const m of members.values()) {
      const got = await m.get('/vxswarm/x');
      assert.equal(got?.value, 'from node3');
      assert.ok(got!.modRevision >= w.revision);
    }
  });

  it('a worker certificate of the same CA cannot join the raft', { timeout: 60_000 }, async () => {
    const ip = plan.hosts.find((x) => x.name === 'node4')!.ip;
    const m1 = members.get('node1')!;
    const added = await m1.addLearner(peerUrl(ip));
    const cluster = Object.fromEntries((await m1.members()).filter((x) => x.name).map((x) => [x.name!, x.peerURLs![0]!]));
    const w = await member('node4', 'worker', { ...cluster, node4: peerUrl(ip) }, 'existing');
    await assert.rejects(w.start('healthy', 8000));
    await w.stop();
    await m1.remove(added.ID);
    assert.equal((await m1.members()).length, 3);
  });

  it("a demoted manager's certificate, once in the revocation list, gets no connection to a member's peer port", { timeout: 60_000 }, async () => {
    const h4 = plan.hosts.find((x) => x.name === 'node4')!;
    const { csrPem, keyPem } = await createCsr();
    const certPem = await ca.sign(csrPem, 'old-manager', 'manager', 'cluster1', 90, [h4.ip, '127.0.0.1']);
    const dir = `${hostPaths(name, 'node4').root}/old-cert`;
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(`${dir}/ca.pem`, ca.certPem);
    fs.writeFileSync(`${dir}/cert.pem`, certPem);
    fs.writeFileSync(`${dir}/key.pem`, keyPem);
    const m1 = members.get('node1')!;
    const peerVersion = (): Promise<boolean> =>
      execFileP('ip', [...curlIn(h4.netns, dir, '--http1.1'), `${m1.peerUrl}/version`]).then(
        (r) => /etcdserver/.test(r.stdout),
        (e: unknown) => {
          console.log(`# peer port refused: ${(e as { stderr?: string }).stderr ?? String(e)}`);
          return false;
        },
      );
    assert.equal(await peerVersion(), true, 'a valid manager certificate is let in');
    await m1.writeCrl(await ca.crl([certInfo(certPem).serial]));
    assert.equal(await peerVersion(), false, 'the revoked certificate is refused at the handshake');
    await m1.writeCrl(await ca.crl([]));
  });

  it('a removed member gets nothing from the others, and the rest keep a quorum', { timeout: 60_000 }, async () => {
    const m1 = members.get('node1')!;
    const id = (await m1.members()).find((x) => x.name === 'node3')!.ID;
    await m1.remove(id);
    await m1.put('/vxswarm/after', 'removal');
    assert.equal((await members.get('node2')!.get('/vxswarm/after'))?.value, 'removal');
    // node3's etcd shuts itself down once it learns it was removed; it never sees the new write
    const m3 = members.get('node3')!;
    for (let i = 0; i < 100 && m3.pid; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(m3.pid, undefined, 'the removed member stopped');
  });

  it('a daemon killed -9 leaves its etcd running: the next start replaces it instead of running a second', { timeout: 60_000 }, async () => {
    const m2 = members.get('node2')!;
    const old = m2.pid!;
    // what a restarted daemon does: a new handle on the same directory
    const again = new EtcdMember(m2.cfg);
    members.set('node2', again);
    await again.start();
    assert.notEqual(again.pid, old);
    assert.ok(!fs.existsSync(`/proc/${old}`) || !fs.readFileSync(`/proc/${old}/cmdline`, 'utf8').includes('etcd'), 'the old etcd is gone');
    assert.equal((await again.get('/vxswarm/after'))?.value, 'removal');
  });
});
