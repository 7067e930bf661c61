// Issue 11: bounded churn and crash loops on real daemons. Each ends with nothing stuck: every task
// finished or running, no address held by a task that does not run, and every kernel's FDB and
// neighbour entries equal to the live tasks on the other hosts.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { netnsExists } from '../../src/kernel/netns.js';
import { skipUnlessRoot } from './helpers.js';
import { SwarmLab, formSwarm, waitFor } from './swarm-helpers.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const execFileP = promisify(execFile);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const CYCLES = Number(process.env.VXSWARM_CHURN_CYCLES ?? 10);

const TERMINAL = new Set(['complete', 'shutdown', 'failed', 'rejected', 'remove', 'orphaned']);

describe('churn and crashes leave nothing stuck', { skip: skipUnlessRoot }, () => {
  let lab: SwarmLab;
  let netId = '';
  const m = (): ReturnType<SwarmLab['api']> => lab.api('node1');

  const spec = (name: string, replicas: number): Json => ({
    Name: name,
    Mode: { Replicated: { Replicas: replicas } },
    TaskTemplate: {
      // a short grace period: busybox's sleep ignores SIGTERM
      ContainerSpec: { Image: 'busybox:local', Args: ['sleep', 'infinity'], StopGracePeriod: 200_000_000 },
      Networks: [{ Target: 'churn-net' }],
    },
  });
  const scale = async (name: string, replicas: number): Promise<void> => {
    for (let i = 0; ; i++) {
      const s = await m().get<Json>(`/services/${name}`);
      try {
        await m().post(`/services/${s.ID}/update`, { ...s.Spec, Mode: { Replicated: { Replicas: replicas } } }, { version: s.Version.Index });
        return;
      } catch (e) {
        if (i > 5 || !/out of sequence/.test(String(e))) throw e;
      }
    }
  };

  /** Tasks that will never finish: not terminal, yet not a running task that should run. */
  const stuck = (tasks: Json[]): Json[] =>
    tasks.filter((t) => !TERMINAL.has(t.Status.State) && !(t.DesiredState === 'running' && t.Status.State === 'running'));

  /** Waits until nothing is stuck and every held address belongs to a live task; returns the live ones. */
  async function settled(what: string, expectLive?: () => Promise<number>): Promise<Json[]> {
    let last = '';
    try {
      return await waitFor(
        what,
        async () => {
          const tasks = await m().get<Json[]>('/tasks');
          const held = await m().get<Json[]>('/vxswarm/attachments');
          const live = tasks.filter((t) => t.DesiredState === 'running' && t.Status.State === 'running');
          const liveAddrs = new Set(
            live.flatMap((t) => (t.NetworksAttachments ?? []).flatMap((n: Json) => n.Addresses as string[])).map((a) => a.split('/')[0]),
          );
          const s = stuck(tasks);
          // A node's routing mesh address (ingress-sbox) is the node's, held while it is in the swarm.
          const byTasks = held.filter((a) => !a.Local && a.Name !== 'ingress-sbox');
          const orphans = byTasks.filter((a) => !liveAddrs.has(a.IPAddress));
          const want = expectLive ? await expectLive() : live.length;
          last = `${live.length} of ${want} live, ${s.length} stuck (${s.map((t) => `${t.Status.State}/${t.DesiredState}`).join(' ')}), ${orphans.length} addresses held by tasks that do not run`;
          return live.length === want && s.length === 0 && orphans.length === 0 && byTasks.length === liveAddrs.size ? live : undefined;
        },
        60_000,
        250,
      );
    } catch (e) {
      throw new Error(`${(e as Error).message}: ${last}`);
    }
  }

  /** Every host's sandbox holds exactly the live tasks of the other hosts (and none without a task has one). */
  async function kernelMatches(live: Json[]): Promise<void> {
    let why = '';
    const nodes = Object.fromEntries((await m().get<Json[]>('/nodes')).map((n) => [n.ID as string, n.Description.Hostname as string]));
    const held = await m().get<Json[]>('/vxswarm/attachments');
    const macOf = new Map(held.map((a) => [a.IPAddress as string, (a.MacAddress as string).toLowerCase()]));
    const sandbox = (host: string): string => `${lab.host(host).netns}-ov-${netId.slice(0, 12)}`;
    await waitFor(
      'kernel entries equal to the live tasks',
      async () => {
        for (const h of lab.plan.hosts) {
          const remote = live.filter((t) => nodes[t.NodeID] !== h.name).map((t) => (t.NetworksAttachments[0].Addresses[0] as string).split('/')[0]!);
          const local = live.filter((t) => nodes[t.NodeID] === h.name).length;
          if (!local) {
            why = `${h.name} has no task but still a sandbox`;
            if (netnsExists(sandbox(h.name))) return undefined;
            continue;
          }
          const neigh = (await execFileP('ip', ['-n', sandbox(h.name), 'neigh', 'show', 'dev', 'vxlan0'])).stdout;
          const fdb = (await execFileP('bridge', ['-n', sandbox(h.name), 'fdb', 'show', 'dev', 'vxlan0'])).stdout;
          const ips = [...neigh.matchAll(/^(\S+) lladdr \S+ PERMANENT/gm)].map((x) => x[1]!).sort();
          const macs = [...fdb.matchAll(/^(\S+) dst \S+ .*self permanent/gm)].map((x) => x[1]!.toLowerCase()).sort();
          why = `${h.name}: neighbours ${ips.join(',')} fdb ${macs.join(',')}, live remote ${remote.join(',')}`;
          if (JSON.stringify(ips) !== JSON.stringify([...remote].sort())) return undefined;
          if (JSON.stringify(macs) !== JSON.stringify(remote.map((ip) => macOf.get(ip)).sort())) return undefined;
        }
        return true;
      },
      20_000,
      250,
    ).catch((e: Error) => {
      throw new Error(`${e.message}: ${why}`);
    });
  }

  before(async () => {
    lab = await SwarmLab.up('chrn', 3);
    await formSwarm(lab);
    netId = ((await m().post<Json>('/networks/create', { Name: 'churn-net', Driver: 'overlay' })) as Json).Id;
  });
  after(async () => {
    await lab?.down();
  });

  it(`scaling 2 ↔ 12 with a worker killed -9 in every cycle (${CYCLES} cycles)`, { timeout: 600_000 }, async () => {
    await m().post('/services/create', spec('churn', 2));
    for (let i = 0; i < CYCLES; i++) {
      const victim = i % 2 ? 'node3' : 'node2';
      await scale('churn', 12);
      // kill at a different point of the rollout each time
      await sleep(100 + ((i * 137) % 700));
      await lab.stop(victim, 'SIGKILL');
      await scale('churn', 2);
      await sleep((i * 89) % 400);
      await lab.start(victim);
    }
    const live = await settled('churn settled', async () => 2);
    assert.equal(live.length, 2);
    await kernelMatches(live);
    await m().del('/services/churn');
    await settled('churn removed');
  });

  it(`kill -9 of the only manager in the middle of create bursts (${CYCLES} rounds)`, { timeout: 600_000 }, async () => {
    const made: string[] = [];
    for (let i = 0; i < CYCLES; i++) {
      const names = [`burst${i}a`, `burst${i}b`];
      const creates = names.map((n) =>
        m()
          .post('/services/create', spec(n, 2))
          .then(() => made.push(n))
          .catch(() => undefined),
      );
      await sleep(20 + ((i * 53) % 250));
      await lab.stop('node1', 'SIGKILL');
      await Promise.all(creates);
      await lab.start('node1');
      // every few rounds some services go again, so removals cross crashes too
      if (i % 3 === 2)
        for (const n of made.splice(0, 2))
          await m()
            .del(`/services/${n}`)
            .catch(() => undefined);
    }
    await waitFor(
      'every node ready again',
      async () => ((await m().get<Json[]>('/nodes')).every((n) => n.Status.State === 'ready') ? true : undefined),
      30_000,
      200,
    );
    const services = (await m().get<Json[]>('/services')).map((s) => s.Spec.Name as string);
    const live = await settled('bursts settled', async () => (await m().get<Json[]>('/services')).length * 2);
    assert.equal(live.length, services.length * 2, `${services.length} services of 2 replicas each`);
    await kernelMatches(live);
    for (const s of services) await m().del(`/services/${s}`);
    const none = await settled('every service removed');
    assert.equal(none.length, 0);
    assert.deepEqual(
      (await m().get<Json[]>('/vxswarm/attachments')).filter((a) => !a.Local && a.Name !== 'ingress-sbox'),
      [],
      "no address held but the nodes' own mesh addresses",
    );
  });
});
