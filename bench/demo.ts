// The main job's benchmark (issue 6): the seed's tutorial from lab up to the traceroute, step by
// step, with the built CLI and daemon; then the embedded resolver's rate and tail latency from
// inside one container.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { seedDemo } from '../src/lab/demo.js';
import { ApiClient } from '../src/cli/client.js';
import { daemonSocket, labDown } from '../src/lab/lab.js';
import { emit, round } from './util.js';

const execFileP = promisify(execFile);
const QUERIES = Number(process.env.BENCH_DNS_QUERIES ?? 20000);

export async function run(): Promise<void> {
  const name = `bdm${randomBytes(3).toString('hex')}`;
  const summary: Record<string, number | string> = { bench: 'demo' };
  try {
    const t0 = Date.now();
    const r = await seedDemo({ name, cli: 'vxswarm', preferBuild: true, quiet: true });
    let elapsed = 0;
    let traced = 0;
    for (const s of r.steps) {
      elapsed += s.ms;
      emit({ step: `${s.node} ${s.command}`.slice(0, 110), ms: s.ms });
      if (!traced && s.command.includes(` traceroute ${r.ips.node2}`)) traced = elapsed;
    }
    // Lab up and daemon starts come before the first step.
    const setup = r.totalMs - elapsed;
    const importMs = r.steps.filter((s) => s.command.includes(' import ')).reduce((a, s) => a + s.ms, 0);
    summary.demo_setup_s = round(setup / 1000, 2);
    summary.demo_total_s = round((setup + traced - importMs) / 1000, 2);
    summary.demo_with_multisubnet_s = round((Date.now() - t0 - importMs) / 1000, 2);
    // The resolver as test's container on node1 sees it.
    const c = await new ApiClient(`unix://${daemonSocket(name, 'node1')}`).get<{ NetworkSettings: { SandboxID: string } }>(
      `/containers/${r.containers.node1}/json`,
    );
    const cns = c.NetworkSettings.SandboxID;
    const { stdout } = await execFileP('ip', ['netns', 'exec', cns, process.execPath, '--import', 'tsx', 'bench/dnsload.ts', 'test', String(QUERIES), '16'], {
      encoding: 'utf8',
    });
    const d = JSON.parse(stdout) as { qps: number; p50_ms: number; p99_ms: number; answers: number };
    summary.dns_qps = d.qps;
    summary.dns_p50_ms = round(d.p50_ms, 3);
    summary.dns_p99_ms = round(d.p99_ms, 3);
    summary.dns_answered = d.answers;
    summary.targets = 'demo_total_s<=10 (lab up to traceroute done, image built)';
  } finally {
    await labDown(name);
  }
  emit(summary);
}
