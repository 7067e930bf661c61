// Issue 17's audit: every field of a ServiceSpec the Engine API (v1.50, what docker CLI v28 sends)
// knows is either carried out, and so shown back by inspect, or refused with a 400 naming it.
// A field added to the API and left out of both fails here: nothing is accepted and dropped.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseServiceSpec, serviceSpecJson } from '../../src/api/shapes-workloads.js';
import { BadRequest } from '../../src/api/check.js';

type Json = Record<string, unknown>;

/** Each leaf of Docker's ServiceSpec with a value that asks for something (not Docker's default). */
const FIELDS: [path: string, value: unknown][] = [
  ['Labels', { team: 'a' }],
  ['TaskTemplate.ContainerSpec.Labels', { a: 'b' }],
  ['TaskTemplate.ContainerSpec.Command', ['sh']],
  ['TaskTemplate.ContainerSpec.Args', ['-c', 'true']],
  ['TaskTemplate.ContainerSpec.Hostname', 'h1'],
  ['TaskTemplate.ContainerSpec.Env', ['A=1']],
  ['TaskTemplate.ContainerSpec.Dir', '/tmp'],
  ['TaskTemplate.ContainerSpec.User', '1000'],
  ['TaskTemplate.ContainerSpec.Groups', ['wheel']],
  ['TaskTemplate.ContainerSpec.Privileges', { NoNewPrivileges: true }],
  ['TaskTemplate.ContainerSpec.TTY', true],
  ['TaskTemplate.ContainerSpec.OpenStdin', true],
  ['TaskTemplate.ContainerSpec.ReadOnly', true],
  ['TaskTemplate.ContainerSpec.Mounts', [{ Type: 'volume', Source: 'vol', Target: '/v' }]],
  ['TaskTemplate.ContainerSpec.StopSignal', 'SIGINT'],
  ['TaskTemplate.ContainerSpec.StopGracePeriod', 3e9],
  ['TaskTemplate.ContainerSpec.Healthcheck', { Test: ['CMD', 'true'], Interval: 2e9 }],
  ['TaskTemplate.ContainerSpec.Hosts', ['10.0.0.9 db']],
  ['TaskTemplate.ContainerSpec.DNSConfig', { Nameservers: ['10.0.0.53'] }],
  ['TaskTemplate.ContainerSpec.Secrets', [{ SecretName: 's', SecretID: 'x' }]],
  ['TaskTemplate.ContainerSpec.Configs', [{ ConfigName: 'c', ConfigID: 'y' }]],
  ['TaskTemplate.ContainerSpec.OomScoreAdj', 100],
  ['TaskTemplate.ContainerSpec.Isolation', 'hyperv'],
  ['TaskTemplate.ContainerSpec.Init', true],
  ['TaskTemplate.ContainerSpec.Sysctls', { 'net.core.somaxconn': '1024' }],
  ['TaskTemplate.ContainerSpec.CapabilityAdd', ['NET_ADMIN']],
  ['TaskTemplate.ContainerSpec.CapabilityDrop', ['CHOWN']],
  ['TaskTemplate.ContainerSpec.Ulimits', [{ Name: 'nofile', Soft: 10, Hard: 10 }]],
  ['TaskTemplate.Resources.Limits.NanoCPUs', 5e8],
  ['TaskTemplate.Resources.Limits.MemoryBytes', 64 << 20],
  ['TaskTemplate.Resources.Limits.Pids', 10],
  ['TaskTemplate.Resources.Reservations.NanoCPUs', 5e8],
  ['TaskTemplate.Resources.Reservations.MemoryBytes', 64 << 20],
  ['TaskTemplate.Resources.Reservations.GenericResources', [{ DiscreteResourceSpec: { Kind: 'gpu', Value: 1 } }]],
  ['TaskTemplate.RestartPolicy.Condition', 'on-failure'],
  ['TaskTemplate.RestartPolicy.Delay', 1e9],
  ['TaskTemplate.RestartPolicy.MaxAttempts', 3],
  ['TaskTemplate.RestartPolicy.Window', 6e10],
  ['TaskTemplate.Placement.Constraints', ['node.role==manager']],
  ['TaskTemplate.Placement.Preferences', [{ Spread: { SpreadDescriptor: 'node.labels.zone' } }]],
  ['TaskTemplate.Placement.MaxReplicas', 2],
  ['TaskTemplate.ForceUpdate', 3],
  ['TaskTemplate.Runtime', 'plugin'],
  ['TaskTemplate.Networks', [{ Target: 'net1', Aliases: ['web'] }]],
  ['TaskTemplate.LogDriver', { Name: 'syslog' }],
  ['TaskTemplate.PluginSpec', { Name: 'p' }],
  ['TaskTemplate.NetworkAttachmentSpec', { ContainerID: 'c' }],
  ['Mode.Replicated.Replicas', 3],
  ['UpdateConfig.Parallelism', 2],
  ['UpdateConfig.Delay', 1e9],
  ['UpdateConfig.FailureAction', 'rollback'],
  ['UpdateConfig.Monitor', 1e9],
  ['UpdateConfig.MaxFailureRatio', 0.5],
  ['UpdateConfig.Order', 'start-first'],
  ['RollbackConfig.Parallelism', 2],
  ['RollbackConfig.Delay', 1e9],
  ['RollbackConfig.FailureAction', 'continue'],
  ['RollbackConfig.Monitor', 1e9],
  ['RollbackConfig.MaxFailureRatio', 0.5],
  ['RollbackConfig.Order', 'start-first'],
  ['EndpointSpec.Mode', 'dnsrr'],
  ['EndpointSpec.Ports', [{ Protocol: 'udp', TargetPort: 53, PublishedPort: 5353, PublishMode: 'host' }]],
];
/** Modes are one of four: each one alone. */
const MODES: Json[] = [{ Global: {} }, { ReplicatedJob: { MaxConcurrent: 2, TotalCompletions: 4 } }, { GlobalJob: {} }];

const base = (): Json => ({
  Name: 'audit',
  TaskTemplate: { ContainerSpec: { Image: 'busybox:local' }, Resources: { Limits: {}, Reservations: {} }, Placement: {} },
  Mode: { Replicated: { Replicas: 1 } },
  EndpointSpec: { Mode: 'vip' },
});

function at(o: Json, path: string): unknown {
  return path.split('.').reduce<unknown>((x, k) => (x && typeof x === 'object' ? (x as Json)[k] : undefined), o);
}
function put(o: Json, path: string, v: unknown): void {
  const keys = path.split('.');
  let x = o;
  for (const k of keys.slice(0, -1)) x = (x[k] ??= {}) as Json;
  x[keys.at(-1)!] = v;
}

describe('the ServiceSpec audit: no field accepted and dropped', () => {
  for (const [path, value] of FIELDS)
    it(path, () => {
      const body = base();
      put(body, path, value);
      // a service on dnsrr cannot publish ingress ports; host mode can
      let spec;
      try {
        spec = parseServiceSpec(body);
      } catch (e) {
        assert.ok(e instanceof BadRequest, `${path}: refused with a 400, not ${String(e)}`);
        const leaf = path.split('.').at(-1)!;
        assert.match(e.message, new RegExp(leaf.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), `${path}: the refusal names the field: ${e.message}`);
        return;
      }
      const shown = serviceSpecJson(spec);
      assert.deepEqual(at(shown, path), value, `${path} is accepted, so inspect must show it as given`);
    });
  for (const mode of MODES)
    it(`Mode.${Object.keys(mode)[0]}`, () => {
      const body = { ...base(), Mode: mode };
      assert.deepEqual(serviceSpecJson(parseServiceSpec(body)).Mode, mode);
    });
  it('an unknown field anywhere is refused by its path', () => {
    const body = base();
    put(body, 'TaskTemplate.ContainerSpec.Frobnicate', 1);
    assert.throws(() => parseServiceSpec(body), /TaskTemplate\.ContainerSpec\.Frobnicate is not supported yet/);
  });
});
