// Several managers (issue 3): joining as a manager, the cost of a raft commit on writes (on the
// leader and forwarded from a follower), and leader failover (kill -9 the leader until another
// member leads and a write commits). Three managers on lab hosts running the built daemon.
import { randomBytes } from 'node:crypto';
import type { ApiClient } from '../src/cli/client.js';
import { labDown, labUp, stopDaemon } from '../src/lab/lab.js';
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
    const raft = async (h: string): Promise<Json | undefined> =>
      api(h)
        .get<Json>('/vxswarm/raft')
        .catch(() => undefined);
    const leaderOf = (hosts: string[]): Promise<string> =>
      until(async () => {
        for (const h of hosts) if ((await raft(h))?.role === 'leader') return h;
        return undefined;
      }, 30000);
    await api('node1').post('/swarm/init', {});
    const token = (await api('node1').get<Json>('/swarm')).JoinTokens.Manager as string;

    const joins: number[] = [];
    for (const h of ['node2', 'node3']) {
      const t0 = performance.now();
      await api(h).post('/swarm/join', { RemoteAddrs: [`${ip('node1')}:2377`], JoinToken: token });
      // Joined = holds the whole state (snapshot applied up to the leader's commit).
      const commit = (await raft('node1'))!.commit as number;
      await until(async () => ((await raft(h))?.applied ?? 0) >= commit, 10000);
      joins.push(performance.now() - t0);
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
    summary.network_create_ms_p50_3_managers = round(percentile(onLeader, 50));
    summary.network_create_ms_p50_forwarded = round(percentile(viaFollower, 50));

    const failovers: number[] = [];
    for (let i = 0; i < FAILOVERS; i++) {
      const victim = await leaderOf(HOSTS);
      const others = HOSTS.filter((h) => h !== victim);
      const t0 = performance.now();
      await stopDaemon(name, victim, 'SIGKILL');
      // Failed over = another member leads and a change made through it commits.
      await until(async () => {
        for (const h of others) {
          if ((await raft(h))?.role !== 'leader') continue;
          const ok = await api(h)
            .post('/networks/create', { Name: `fo${i}`, Driver: 'overlay' })
            .then(() => true)
            .catch(() => false);
          if (ok) return true;
        }
        return false;
      }, 30000);
      failovers.push((performance.now() - t0) / 1000);
      await startBuilt(name, victim);
      await until(async () => (await raft(victim))?.role === 'follower' && ((await raft(victim))?.leader ?? '') !== '', 20000);
    }
    emit({ metric: 'leader_failover', runs_s: failovers.map((x) => round(x)) });

    // A planned stop (SIGTERM): the leader hands over before it goes.
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
      await until(async () => (await raft(victim))?.role === 'follower' && ((await raft(victim))?.leader ?? '') !== '', 20000);
    }
    emit({ metric: 'leader_handover', runs_ms: handovers.map((x) => round(x, 1)) });

    // Memory of a manager at rest, leader and follower (the raft log and replicated store included).
    await new Promise((r) => setTimeout(r, 2000));
    const leaderHost = await leaderOf(HOSTS);
    const followerHost = HOSTS.find((h) => h !== leaderHost)!;
    summary.rss_mb_idle_leader = round(rssMb(daemonPid(name, leaderHost)), 1);
    summary.rss_mb_idle_follower = round(rssMb(daemonPid(name, followerHost)), 1);
    summary.leader_handover_ms_max = round(Math.max(...handovers), 1);
    summary.leader_failover_s_max = round(Math.max(...failovers));
    summary.leader_failover_s_p50 = round(percentile(failovers, 50));
    // Swarmkit elects after 10 ticks of 1 s: about 10 s without a leader.
    summary.swarmkit_election_s = 10;
  } finally {
    await labDown(name);
  }
  emit(summary);
}
