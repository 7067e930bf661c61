// Several managers on etcd (issue 13): joining as a manager (an etcd learner until promoted), the
// cost of a write (an etcd transaction, on the leader and on a follower, each straight to etcd), leader
// failover (kill -9 of the leader's daemon, whose etcd member lives on; and the whole host dying,
// daemon and etcd), the planned hand-over, and a manager's memory with its etcd.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { ApiClient } from '../src/cli/client.js';
import { stopStaleEtcd } from '../src/cluster/etcd/member.js';
import { hostPaths, labDown, labUp, stopDaemon } from '../src/lab/lab.js';
import { apiOf, daemonPid, emit, percentile, round, rssMb, startBuilt, until } from './util.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const CREATES = Number(process.env.BENCH_CREATES ?? 30);
const FAILOVERS = Number(process.env.BENCH_FAILOVERS ?? 3);
const HOSTS = ['node1', 'node2', 'node3'];

export async function run(): Promise<void> {
  const name = `bmg${randomBytes(3).toString('hex')}`;
  const summary: Record<string, number | string> = { bench: 'managers' };
  try {
    const plan = await labUp(name, 3);
    const ip = (h: string): string => plan.hosts.find((x) => x.name === h)!.ip;
    for (const h of HOSTS) await startBuilt(name, h);
    const api = (h: string): ApiClient => apiOf(name, h);
    const control = async (h: string): Promise<Json | undefined> =>
      api(h)
        .get<Json>('/vxswarm/control')
        .catch(() => undefined);
    const leaderOf = (hosts: string[]): Promise<string> =>
      until(async () => {
        for (const h of hosts) if ((await control(h))?.leading) return h;
        return undefined;
      }, 30000);
    /** `h` follows a leader and shows everything the leader's cache does */
    const following = async (h: string): Promise<boolean> => {
      const [c, l] = [await control(h), await control(await leaderOf(HOSTS))];
      return !!c && !!l && !c.leading && c.leader === l.id && c.revision >= l.revision;
    };
    const etcdPid = (h: string): number => Number(fs.readFileSync(path.join(hostPaths(name, h).root, 'etcd', 'etcd.pid'), 'utf8'));

    await api('node1').post('/swarm/init', {});
    const token = (await api('node1').get<Json>('/swarm')).JoinTokens.Manager as string;
    // etcd adds a member only once every voter has been connected for 5 s (its health interval).
    await new Promise((r) => setTimeout(r, 5000));
    const joins: number[] = [];
    for (const h of ['node2', 'node3']) {
      const t0 = performance.now();
      await api(h).post('/swarm/join', { RemoteAddrs: [`${ip('node1')}:2377`], JoinToken: token });
      // Joined = a voting etcd member whose cache shows the whole state.
      await until(() => following(h), 20000);
      joins.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 5000));
    }
    emit({ metric: 'manager_join', runs_ms: joins.map((x) => round(x, 1)) });
    summary.manager_join_ms = round(Math.max(...joins), 1);

    let n = 0;
    const creates = async (h: string): Promise<number[]> => {
      const times: number[] = [];
      for (let i = 0; i < CREATES; i++) {
        const t0 = performance.now();
        await api(h).post('/networks/create', { Name: `bench${n++}`, Driver: 'overlay' });
        times.push(performance.now() - t0);
      }
      return times;
    };
    const onLeader = await creates('node1');
    const viaFollower = await creates('node2');
    emit({ metric: 'network_create', on: 'leader', n: CREATES, p50_ms: round(percentile(onLeader, 50)), p90_ms: round(percentile(onLeader, 90)) });
    emit({ metric: 'network_create', on: 'follower', n: CREATES, p50_ms: round(percentile(viaFollower, 50)), p90_ms: round(percentile(viaFollower, 90)) });
    summary.write_ms_p50_3_managers = round(percentile(onLeader, 50));
    summary.write_ms_p50_follower = round(percentile(viaFollower, 50));

    /** Kills the leader (`host`: its etcd too) until a write made through another manager commits. */
    const failover = async (i: number, host: boolean): Promise<number> => {
      const victim = await leaderOf(HOSTS);
      const others = HOSTS.filter((h) => h !== victim);
      const t0 = performance.now();
      await stopDaemon(name, victim, 'SIGKILL');
      if (host) await stopStaleEtcd(path.join(hostPaths(name, victim).root, 'etcd'), 'SIGKILL');
      await until(async () => {
        for (const h of others) {
          const ok = await api(h)
            .post('/networks/create', { Name: `fo${host ? 'h' : 'd'}${i}`, Driver: 'overlay' })
            .then(() => true)
            // an earlier try whose outcome was unknown did commit
            .catch((e: unknown) => /already exists/.test(String(e)));
          if (ok) return true;
        }
        return false;
      }, 30000).catch(() => {
        throw new Error(`no write through ${others.join(' or ')} committed within 30 s of killing ${victim}`);
      });
      const s = (performance.now() - t0) / 1000;
      await startBuilt(name, victim);
      await until(() => following(victim), 30000).catch(() => {
        throw new Error(`${victim} did not follow the leader within 30 s of its restart`);
      });
      return s;
    };
    const failovers: number[] = [];
    for (let i = 0; i < FAILOVERS; i++) failovers.push(await failover(i, false));
    emit({ metric: 'leader_failover', killed: 'daemon', runs_s: failovers.map((x) => round(x)) });
    const crashes: number[] = [];
    for (let i = 0; i < FAILOVERS; i++) crashes.push(await failover(i, true));
    emit({ metric: 'leader_failover', killed: 'daemon and etcd', runs_s: crashes.map((x) => round(x)) });

    // A planned stop (SIGTERM): the leader frees the election key before it goes.
    const handovers: number[] = [];
    for (let i = 0; i < FAILOVERS; i++) {
      const victim = await leaderOf(HOSTS);
      const others = HOSTS.filter((h) => h !== victim);
      const t0 = performance.now();
      const stopping = stopDaemon(name, victim, 'SIGTERM');
      await leaderOf(others);
      handovers.push(performance.now() - t0);
      await stopping;
      await startBuilt(name, victim);
      await until(() => following(victim), 30000);
    }
    emit({ metric: 'leader_handover', runs_ms: handovers.map((x) => round(x, 1)) });

    // Memory of a manager at rest, leader and follower, each counting its etcd member.
    await new Promise((r) => setTimeout(r, 2000));
    const leaderHost = await leaderOf(HOSTS);
    const followerHost = HOSTS.find((h) => h !== leaderHost)!;
    for (const [k, h] of [
      ['leader', leaderHost],
      ['follower', followerHost],
    ] as const) {
      const [d, e] = [rssMb(daemonPid(name, h)), rssMb(etcdPid(h))];
      emit({ metric: 'rss_idle_manager', role: k, daemon_mb: round(d, 1), etcd_mb: round(e, 1) });
      summary[`rss_mb_idle_manager_${k}`] = round(d + e, 1);
    }
    summary.leader_handover_ms_max = round(Math.max(...handovers), 1);
    summary.leader_failover_s = round(Math.max(...failovers));
    summary.leader_failover_s_p50 = round(percentile(failovers, 50));
    summary.leader_failover_s_host_crash = round(Math.max(...crashes));
    // Swarmkit elects after 10 ticks of 1 s: about 10 s without a leader.
    summary.swarmkit_election_s = 10;
  } finally {
    await labDown(name);
  }
  emit(summary);
}
