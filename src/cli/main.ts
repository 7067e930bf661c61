// vxswarm command line. Docker's grammar for the swarm commands (later issues);
// `lab` manages test hosts on this machine.
import { spawnSync } from 'node:child_process';
import { Command, InvalidArgumentError as CommanderArgError } from 'commander';
import { VxError, errorMessage } from '../core/errors.js';
import { seedDemo } from '../lab/demo.js';
import { daemonRunning, daemonSocket, labDown, labPlan, labStatus, labUp, startDaemon } from '../lab/lab.js';
import { runDaemon } from '../daemon/run.js';
import { addSwarmCommands } from './swarm-commands.js';
import { addWorkloadCommands } from './workload-commands.js';

function int(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new CommanderArgError(`"${v}" is not an integer`);
  return n;
}

export function buildProgram(): Command {
  const program = new Command('vxswarm')
    .description('swarm-mode container overlay networking over kernel VXLAN')
    .option('-H, --host <socket>', 'daemon socket to connect to (env VXSWARM_HOST)')
    // Global options go before the command (as with docker -H), so `daemon -H` stays the daemon's.
    .enablePositionalOptions()
    .showHelpAfterError();
  addSwarmCommands(program);
  addWorkloadCommands(program);
  program
    .command('daemon')
    .description('run the node daemon (Engine API on a unix socket)')
    .option('--root <dir>', 'persistent state', '/var/lib/vxswarm')
    .option('--exec-root <dir>', 'runtime state', '/run/vxswarm')
    .option('-H, --host <socket>', 'Engine API socket', 'unix:///run/vxswarm/vxswarm.sock')
    .option('--log-level <level>', 'debug, info, warn or error', 'info')
    .option('--netns-prefix <prefix>', 'prefix of the namespaces this daemon makes', 'vxs-')
    .option('--metrics-addr <host:port>', 'serve Prometheus metrics on /metrics there (off by default)')
    .action(async (o: { root: string; execRoot: string; host: string; logLevel: string; netnsPrefix: string; metricsAddr?: string }) => {
      await runDaemon(o);
    });

  const lab = program.command('lab').description('test hosts in network namespaces on this machine');
  const name = (c: Command): Command => c.option('--name <name>', 'lab name (prefix of its namespaces)', 'vxlab');

  name(lab.command('up'))
    .description("build the seed's underlay: hosts on separate L2 networks behind one router")
    .option('--hosts <n>', 'number of hosts', int, 2)
    .option('--l2 <n>', 'number of L2 networks (default: min(hosts, 2))', int)
    .option('--mtu <bytes>', 'underlay MTU', int, 1500)
    .option('--daemons', 'start a vxswarm daemon on every host')
    .option('--metrics-addr <host:port>', "each daemon's metrics and topology page, inside its host (e.g. 127.0.0.1:9323)")
    .action(async (o: { name: string; hosts: number; l2?: number; mtu: number; daemons?: boolean; metricsAddr?: string }) => {
      const plan = await labUp(o.name, o.hosts, o.l2, o.mtu);
      if (o.daemons) for (const h of plan.hosts) await startDaemon(o.name, h.name, o.metricsAddr ? { extraArgs: ['--metrics-addr', o.metricsAddr] } : {});
      for (const h of plan.hosts)
        process.stdout.write(
          `${h.name}\t${h.ip}\t${plan.nets[h.l2]!.cidr}\tnetns ${h.netns}${o.daemons ? `\tDOCKER_HOST=unix://${daemonSocket(o.name, h.name)}` : ''}\n`,
        );
    });

  name(lab.command('down'))
    .description('remove every namespace, link and mount of the lab')
    .action(async (o: { name: string }) => {
      const removed = await labDown(o.name);
      process.stdout.write(`removed ${removed.length} namespaces\n`);
    });

  name(lab.command('status'))
    .description('show the lab hosts')
    .action((o: { name: string }) => {
      const s = labStatus(o.name);
      process.stdout.write(`router ${s.plan.router} ${s.router ? 'up' : 'MISSING'}\n`);
      for (const h of s.hosts) {
        const d = daemonRunning(o.name, h.name) ? `daemon unix://${daemonSocket(o.name, h.name)}` : 'no daemon';
        process.stdout.write(`${h.name}\t${h.ip}\t${h.up ? 'up' : 'MISSING'}\tnetns ${h.netns}\t${d}\n`);
      }
    });

  name(lab.command('exec'))
    .description('run a command inside a lab host: vxswarm lab exec node1 -- ip addr')
    .argument('<host>')
    .argument('<command...>')
    .action((host: string, command: string[], o: { name: string }) => {
      const h = labPlan(o.name).hosts.find((x) => x.name === host);
      if (!h) throw new VxError(`no host ${host} in lab ${o.name}`, 404);
      const r = spawnSync('ip', ['netns', 'exec', h.netns, ...command], { stdio: 'inherit' });
      process.exitCode = r.status ?? 1;
    });

  name(lab.command('demo'))
    .description("run the seed's tutorial end to end on two lab hosts (swarm, overlay, service, ping, traceroute)")
    .option('--cli <cli>', 'drive the daemons with vxswarm or the stock docker CLI', 'vxswarm')
    .action(async (o: { name: string; cli: string }) => {
      if (o.cli !== 'vxswarm' && o.cli !== 'docker') throw new VxError(`--cli must be vxswarm or docker, not ${o.cli}`, 400);
      await seedDemo({ name: o.name, cli: o.cli, preferBuild: true });
    });

  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (e) {
    const msg = errorMessage(e);
    process.stderr.write(msg.startsWith('Error') ? `${msg}\n` : `Error: ${msg}\n`);
    process.exitCode = 1;
  }
}
