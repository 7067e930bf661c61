// docker's swarm, node, network, info and version commands, against our Engine API.
import { formatExplanation, type Explanation } from '../daemon/explain.js';
import type { Command } from 'commander';
import { VxError } from '../core/errors.js';
import { ApiClient, DEFAULT_HOST } from './client.js';
import { collect, filterFlags, inspectOut, out } from './output.js';
import { formatList, renderTemplate, tabulate } from './template.js';
import { humanBytes } from '../core/human.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export function apiFrom(cmd: Command): ApiClient {
  const o = cmd.optsWithGlobals() as { host?: string };
  return new ApiClient(o.host ?? process.env.VXSWARM_HOST ?? DEFAULT_HOST);
}

function kv(list: string[] | undefined, what: string): Record<string, string> {
  const o: Record<string, string> = {};
  for (const item of list ?? []) {
    const i = item.indexOf('=');
    if (i <= 0) throw new VxError(`invalid ${what} "${item}": expected key=value`, 400);
    o[item.slice(0, i)] = item.slice(i + 1);
  }
  return o;
}

async function joinHint(api: ApiClient, role: 'worker' | 'manager', prog: string): Promise<string> {
  const sw = await api.get<Json>('/swarm');
  const info = await api.get<Json>('/info');
  const self = await api.get<Json>(`/nodes/${info.Swarm.NodeID}`);
  const token = role === 'worker' ? sw.JoinTokens.Worker : sw.JoinTokens.Manager;
  return `To add a ${role} to this swarm, run the following command:\n\n    ${prog} swarm join --token ${token} ${self.ManagerStatus?.Addr ?? ''}\n\n`;
}

export function addSwarmCommands(program: Command): void {
  const prog = program.name();
  const swarm = program.command('swarm').description('manage the swarm');
  swarm
    .command('init')
    .description('initialize a swarm')
    .option('--advertise-addr <addr>', 'advertised address (format: <ip|interface>[:port])')
    .option('--listen-addr <addr>', 'listen address', '0.0.0.0:2377')
    .option('--data-path-port <port>', 'port number for data path traffic (1024 - 49151)', (v) => Number(v))
    .option('--default-addr-pool <cidr>', 'default address pool in CIDR format (repeatable)', collect)
    .option('--default-addr-pool-mask-length <n>', 'default address pool subnet mask length', (v) => Number(v), 24)
    .option('--force-new-cluster', 'force create a new cluster from current state')
    .action(async (o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      const id = await api.post<string>('/swarm/init', {
        ForceNewCluster: o.forceNewCluster === true,
        ListenAddr: o.listenAddr,
        AdvertiseAddr: o.advertiseAddr ?? '',
        DataPathPort: o.dataPathPort ?? 0,
        DefaultAddrPool: o.defaultAddrPool ?? [],
        SubnetSize: o.defaultAddrPoolMaskLength,
      });
      out(`Swarm initialized: current node (${id}) is now a manager.\n\n`);
      out(await joinHint(api, 'worker', prog));
      out(`To add a manager to this swarm, run '${prog} swarm join-token manager' and follow the instructions.\n\n`);
    });
  swarm
    .command('join')
    .description('join a swarm as a node')
    .argument('<host:port>')
    .requiredOption('--token <token>', 'token for entry into the swarm')
    .option('--advertise-addr <addr>', 'advertised address')
    .option('--availability <a>', 'availability of the node (active, pause, drain)', 'active')
    .action(async (remote: string, o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      await api.post('/swarm/join', {
        ListenAddr: '0.0.0.0:2377',
        AdvertiseAddr: o.advertiseAddr ?? '',
        RemoteAddrs: [remote],
        JoinToken: o.token,
        Availability: o.availability,
      });
      const info = await api.get<Json>('/info');
      out(`This node joined a swarm as a ${info.Swarm?.ControlAvailable ? 'manager' : 'worker'}.\n`);
    });
  swarm
    .command('leave')
    .description('leave the swarm')
    .option('-f, --force', 'force this node to leave the swarm, ignoring warnings')
    .action(async (o: Json, cmd: Command) => {
      await apiFrom(cmd).post('/swarm/leave', undefined, { force: o.force ? 1 : undefined });
      out('Node left the swarm.\n');
    });
  swarm
    .command('join-token')
    .description('manage join tokens')
    .argument('<worker|manager>')
    .option('-q, --quiet', 'only display token')
    .option('--rotate', 'rotate join token')
    .action(async (role: string, o: Json, cmd: Command) => {
      if (role !== 'worker' && role !== 'manager') throw new VxError(`unknown role ${role}`, 400);
      const api = apiFrom(cmd);
      if (o.rotate) {
        const sw = await api.get<Json>('/swarm');
        await api.post('/swarm/update', sw.Spec, { version: sw.Version.Index, rotateWorkerToken: role === 'worker', rotateManagerToken: role === 'manager' });
        if (!o.quiet) out(`Successfully rotated ${role} join token.\n\n`);
      }
      const sw = await api.get<Json>('/swarm');
      if (o.quiet) out(`${role === 'worker' ? sw.JoinTokens.Worker : sw.JoinTokens.Manager}\n`);
      else out(await joinHint(api, role, prog));
    });

  swarm
    .command('tunnel')
    .description("this node's WireGuard tunnel for encrypted networks: its peers with endpoint, last handshake and bytes")
    .option('--rotate-key', 'make this node a new key pair; its peers learn the new public key through the managers, and no packet is lost')
    .option('--format <fmt>', 'json for the raw state')
    .action(async (o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      if (o.rotateKey) out(`New public key: ${(await api.post<Json>('/vxswarm/wireguard/rotate-key')).PublicKey}\n`);
      const t = await api.get<Json>('/vxswarm/wireguard');
      if (o.format === 'json') return out(`${JSON.stringify(t, null, 2)}\n`);
      if (!t.Running) return out('No WireGuard tunnel runs on this node (it starts with its first task on an encrypted network).\n');
      out(`Interface: ${t.Interface}  address ${t.TunnelIP}  port ${t.ListenPort}\nPublic key: ${t.PublicKey}\n`);
      out(
        tabulate([
          ['NODE', 'ENDPOINT', 'ALLOWED IP', 'LATEST HANDSHAKE', 'RECEIVED', 'SENT'],
          ...(t.Peers as Json[]).map((p) => [
            p.Name || p.Node,
            p.Endpoint,
            p.AllowedIP,
            p.LatestHandshake || 'never',
            humanBytes(p.RxBytes),
            humanBytes(p.TxBytes),
          ]),
        ]),
      );
    });

  const node = program.command('node').description('manage swarm nodes');
  node
    .command('ls')
    .alias('list')
    .description('list nodes in the swarm')
    .option('-q, --quiet', 'only display IDs')
    .option('--format <tpl>', 'format output using a Go template')
    .action(async (o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      const nodes = (await api.get<Json[]>('/nodes')).sort(
        (a, b) => String(a.Description?.Hostname).localeCompare(String(b.Description?.Hostname)) || String(a.ID).localeCompare(String(b.ID)),
      );
      const self = (await api.get<Json>('/info')).Swarm?.NodeID;
      if (o.quiet) return out(nodes.map((n) => `${n.ID}\n`).join(''));
      const cap = (s: string): string => (s ? s[0]!.toUpperCase() + s.slice(1) : '');
      const rows = nodes.map((n) => ({
        ID: n.ID,
        Self: n.ID === self,
        Hostname: n.Description?.Hostname ?? '',
        Status: cap(n.Status?.State ?? ''),
        Availability: cap(n.Spec?.Availability ?? ''),
        ManagerStatus: n.ManagerStatus ? (n.ManagerStatus.Leader ? 'Leader' : cap(n.ManagerStatus.Reachability)) : '',
        EngineVersion: n.Description?.Engine?.EngineVersion ?? '',
        TLSStatus: 'Ready',
      }));
      const fmt =
        o.format ?? 'table {{.ID}} {{if .Self}}*{{else}} {{end}}\t{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}\t{{.EngineVersion}}';
      out(
        formatList(fmt, rows, {
          ID: 'ID',
          Self: '',
          Hostname: 'HOSTNAME',
          Status: 'STATUS',
          Availability: 'AVAILABILITY',
          ManagerStatus: 'MANAGER STATUS',
          EngineVersion: 'ENGINE VERSION',
        }),
      );
    });
  node
    .command('inspect')
    .description('display detailed information on one or more nodes')
    .argument('<node...>')
    .option('-f, --format <tpl>', 'format output using a Go template')
    .action(async (ids: string[], o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      const info = await api.get<Json>('/info');
      const all = await Promise.all(ids.map((id) => api.get<Json>(`/nodes/${encodeURIComponent(id === 'self' ? info.Swarm.NodeID : id)}`)));
      inspectOut(all, o.format);
    });
  node
    .command('rm')
    .alias('remove')
    .description('remove one or more nodes from the swarm')
    .argument('<node...>')
    .option('-f, --force', 'force remove a node from the swarm')
    .action(async (ids: string[], o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      for (const id of ids) {
        await api.del(`/nodes/${encodeURIComponent(id)}`, { force: o.force ? 1 : undefined });
        out(`${id}\n`);
      }
    });
  node
    .command('update')
    .description('update a node')
    .argument('<node>')
    .option('--availability <a>', 'availability of the node (active, pause, drain)')
    .option('--label-add <k=v>', 'add or update a node label (repeatable)', collect)
    .option('--label-rm <k>', 'remove a node label (repeatable)', collect)
    .action(async (id: string, o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      const n = await api.get<Json>(`/nodes/${encodeURIComponent(id)}`);
      const labels = { ...(n.Spec.Labels ?? {}), ...kv(o.labelAdd, 'label') };
      for (const k of o.labelRm ?? []) delete labels[k];
      await api.post(
        `/nodes/${encodeURIComponent(n.ID)}/update`,
        { ...n.Spec, Availability: o.availability ?? n.Spec.Availability, Labels: labels },
        { version: n.Version.Index },
      );
      out(`${id}\n`);
    });

  // docker node promote|demote: an update of the node's Role; prints what docker prints.
  for (const [verb, role] of [
    ['promote', 'manager'],
    ['demote', 'worker'],
  ] as const) {
    node
      .command(verb)
      .description(`${verb} one or more nodes ${verb === 'promote' ? 'to manager' : 'from manager'} in the swarm`)
      .argument('<node...>')
      .action(async (ids: string[], _o: Json, cmd: Command) => {
        const api = apiFrom(cmd);
        for (const id of ids) {
          const n = await api.get<Json>(`/nodes/${encodeURIComponent(id)}`);
          if (n.Spec.Role === role) {
            out(`Node ${id} is already a ${role} in the swarm.\n`);
            continue;
          }
          await api.post(`/nodes/${encodeURIComponent(n.ID)}/update`, { ...n.Spec, Role: role }, { version: n.Version.Index });
          out(`${verb === 'promote' ? 'Node' : 'Manager'} ${id} ${verb === 'promote' ? 'promoted to a manager' : 'demoted'} in the swarm.\n`);
        }
      });
  }

  const network = program.command('network').description('manage networks');
  network
    .command('create')
    .description('create a network')
    .argument('<name>')
    .option('-d, --driver <driver>', 'driver to manage the network', 'overlay')
    .option('--subnet <cidr>', 'subnet in CIDR format (repeatable)', collect)
    .option('--gateway <ip>', 'gateway for the master subnet (repeatable)', collect)
    .option('--ip-range <cidr>', 'allocate container IPs from a sub-range (repeatable)', collect)
    .option('--attachable', 'enable manual container attachment')
    .option('--internal', 'restrict external access to the network')
    .option('-o, --opt <k=v>', 'set driver specific options (repeatable)', collect)
    .option('--label <k=v>', 'set metadata on a network (repeatable)', collect)
    .action(async (name: string, o: Json, cmd: Command) => {
      const subnets: string[] = o.subnet ?? [];
      const gws: string[] = o.gateway ?? [];
      const ranges: string[] = o.ipRange ?? [];
      if (gws.length > subnets.length || ranges.length > subnets.length) throw new VxError('every --gateway and --ip-range needs its own --subnet', 400);
      const res = await apiFrom(cmd).post<Json>('/networks/create', {
        Name: name,
        Driver: o.driver,
        Scope: '',
        IPAM: {
          Driver: 'default',
          Options: {},
          Config: subnets.map((s, i) => ({ Subnet: s, ...(gws[i] ? { Gateway: gws[i] } : {}), ...(ranges[i] ? { IPRange: ranges[i] } : {}) })),
        },
        Internal: !!o.internal,
        Attachable: !!o.attachable,
        Ingress: false,
        Options: kv(o.opt, 'option'),
        Labels: kv(o.label, 'label'),
      });
      out(`${res.Id}\n`);
    });
  network
    .command('ls')
    .alias('list')
    .description('list networks')
    .option('-q, --quiet', 'only display network IDs')
    .option('--no-trunc', 'do not truncate the output')
    .option('-f, --filter <k=v>', 'filter output (driver=…, id=…, label=…, name=…, scope=…)', collect)
    .option('--format <tpl>', 'format output using a Go template')
    .action(async (o: Json, cmd: Command) => {
      const filters = filterFlags(o.filter as string[] | undefined);
      const nets = await apiFrom(cmd).get<Json[]>('/networks', Object.keys(filters).length ? { filters: JSON.stringify(filters) } : {});
      const id = (x: string): string => (o.trunc === false ? x : x.slice(0, 12));
      if (o.quiet) return out(nets.map((n) => `${id(n.Id)}\n`).join(''));
      const rows = nets.map((n) => ({
        ID: id(n.Id),
        Name: n.Name,
        Driver: n.Driver,
        Scope: n.Scope,
        IPv4: 'true',
        IPv6: String(n.EnableIPv6),
        Internal: String(n.Internal),
        CreatedAt: n.Created,
        Labels: '',
      }));
      out(
        formatList(o.format ?? 'table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}', rows, { ID: 'NETWORK ID', Name: 'NAME', Driver: 'DRIVER', Scope: 'SCOPE' }),
      );
    });
  network
    .command('inspect')
    .description('display detailed information on one or more networks')
    .argument('<network...>')
    .option('-f, --format <tpl>', 'format output using a Go template')
    .option('-v, --verbose', 'verbose output for diagnostics')
    .action(async (names: string[], o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      const got: Json[] = [];
      let err: unknown;
      for (const n of names) {
        try {
          got.push(await api.get<Json>(`/networks/${encodeURIComponent(n)}`, { verbose: o.verbose ? 'true' : undefined }));
        } catch (e) {
          err = e;
        }
      }
      inspectOut(got, o.format);
      if (err) throw err;
    });
  network
    .command('rm')
    .alias('remove')
    .description('remove one or more networks')
    .argument('<network...>')
    .action(async (names: string[], _o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      for (const n of names) {
        await api.del(`/networks/${encodeURIComponent(n)}`);
        out(`${n}\n`);
      }
    });
  network
    .command('prune')
    .description('remove all networks no service or endpoint uses')
    .option('-f, --force', 'do not prompt for confirmation')
    .option('--filter <k=v>', 'provide filter values (until=<timestamp>, label=<key>[=<value>])', collect)
    .action(async (o: Json, cmd: Command) => {
      // Like docker, it asks first; without a terminal to ask on, -f is needed.
      if (!o.force) throw new VxError('WARNING! This will remove all custom networks not used by at least one container: run with -f to confirm', 400);
      const filters: Record<string, string[]> = {};
      for (const f of (o.filter as string[] | undefined) ?? []) {
        const i = f.indexOf('=');
        const k = i < 0 ? f : f.slice(0, i);
        (filters[k] ??= []).push(i < 0 ? '' : f.slice(i + 1));
      }
      const r = await apiFrom(cmd).post<{ NetworksDeleted: string[] }>(`/networks/prune?filters=${encodeURIComponent(JSON.stringify(filters))}`, {});
      if (r.NetworksDeleted.length) out(`Deleted Networks:\n${r.NetworksDeleted.join('\n')}\n`);
    });

  program
    .command('info')
    .description('display system-wide information')
    .option('-f, --format <tpl>', 'format output using a Go template')
    .action(async (o: Json, cmd: Command) => {
      const i = await apiFrom(cmd).get<Json>('/info');
      if (o.format) return out(`${renderTemplate(o.format, i)}\n`);
      const s = i.Swarm ?? {};
      const lines = [
        `Server:`,
        ` Containers: ${i.Containers}`,
        `  Running: ${i.ContainersRunning}`,
        `  Paused: ${i.ContainersPaused}`,
        `  Stopped: ${i.ContainersStopped}`,
        ` Images: ${i.Images}`,
        ` Server Version: ${i.ServerVersion}`,
        ` Name: ${i.Name}`,
        ` Swarm: ${s.LocalNodeState}`,
      ];
      if (s.LocalNodeState !== 'inactive') {
        lines.push(`  NodeID: ${s.NodeID}`, `  Is Manager: ${s.ControlAvailable}`);
        if (s.Cluster)
          lines.push(
            `  ClusterID: ${s.Cluster.ID}`,
            `  Managers: ${s.Managers}`,
            `  Nodes: ${s.Nodes}`,
            `  Default Address Pool: ${(s.Cluster.DefaultAddrPool ?? []).join(' ')}`,
            `  SubnetSize: ${s.Cluster.SubnetSize}`,
            `  Data Path Port: ${s.Cluster.DataPathPort}`,
          );
        lines.push(`  Node Address: ${s.NodeAddr}`, `  Manager Addresses:`, ...(s.RemoteManagers ?? []).map((m: Json) => `   ${m.Addr}`));
      }
      lines.push(
        ` Kernel Version: ${i.KernelVersion}`,
        ` Operating System: ${i.OperatingSystem}`,
        ` CPUs: ${i.NCPU}`,
        ` Total Memory: ${(i.MemTotal / 2 ** 30).toFixed(2)}GiB`,
        ` Docker Root Dir: ${i.DockerRootDir}`,
      );
      out(`${lines.join('\n')}\n`);
    });
  program
    .command('version')
    .description('show the vxswarm version information')
    .option('-f, --format <tpl>', 'format output using a Go template')
    .action(async (o: Json, cmd: Command) => {
      const v = await apiFrom(cmd).get<Json>('/version');
      if (o.format) return out(`${renderTemplate(o.format, { Server: v })}\n`);
      out(
        `Server: ${v.Platform?.Name}\n Engine:\n  Version:          ${v.Version}\n  API version:      ${v.ApiVersion} (minimum version ${v.MinAPIVersion})\n  Node version:     ${v.GoVersion}\n  OS/Arch:          ${v.Os}/${v.Arch}\n  Kernel Version:   ${v.KernelVersion}\n`,
      );
    });

  program
    .command('explain')
    .description('explain the overlay from the live kernel state')
    .command('path')
    .description('each hop a packet takes from a container to an address or a name, with the kernel entry used at each, and the first fault')
    .argument('<container>', 'a container on this node (- with a published port: a client outside the swarm)')
    .argument(
      '<target>',
      'an address, a name as the container resolves it (a service, tasks.<service>, a task), or NODE-ADDRESS:PORT[/udp] for a published port',
    )
    .option('--format <fmt>', 'json for the raw explanation')
    .action(async (container: string, target: string, o: Json, cmd: Command) => {
      const e = await apiFrom(cmd).get<Explanation>('/vxswarm/explain', { container, target });
      out(o.format === 'json' ? `${JSON.stringify(e, null, 2)}\n` : formatExplanation(e));
      if (!e.delivered) process.exitCode = 1;
    });

  const ep = program.command('endpoint').description('endpoints attached to overlay networks through the control plane (a test hook until containers)');
  ep.command('create')
    .description('attach a new endpoint on this node to a network')
    .requiredOption('--network <net>', 'network name or ID')
    .option('--name <name>', 'endpoint name')
    .action(async (o: Json, cmd: Command) => {
      const e = await apiFrom(cmd).post<Json>('/vxswarm/endpoints', { Network: o.network, Name: o.name });
      out(`${e.Id}\t${e.IPAddress}\t${e.Netns}\n`);
    });
  ep.command('ls')
    .description('list endpoints on this node')
    .option('--format <tpl>', 'format output using a Go template')
    .action(async (o: Json, cmd: Command) => {
      const list = await apiFrom(cmd).get<Json[]>('/vxswarm/endpoints');
      const rows = list.map((e) => ({ ID: e.Id, Name: e.Name, Network: e.Network, IPAddress: e.IPAddress, MacAddress: e.MacAddress, Netns: e.Netns }));
      out(
        formatList(o.format ?? 'table {{.ID}}\t{{.Name}}\t{{.Network}}\t{{.IPAddress}}\t{{.Netns}}', rows, {
          ID: 'ENDPOINT ID',
          IPAddress: 'IP ADDRESS',
          Netns: 'NETNS',
        }),
      );
    });
  ep.command('rm')
    .description('detach and remove endpoints')
    .argument('<endpoint...>')
    .action(async (ids: string[], _o: Json, cmd: Command) => {
      const api = apiFrom(cmd);
      for (const id of ids) {
        await api.del(`/vxswarm/endpoints/${encodeURIComponent(id)}`);
        out(`${id}\n`);
      }
    });
}
