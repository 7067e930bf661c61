// Health checks as Docker runs them: merging the spec over the image, the probe state machine
// (retries, the start period), and the monitor's timing on a probe that answers as told.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  HealthMonitor,
  afterProbe,
  healthConfig,
  mergeHealthcheck,
  nextProbeMs,
  validateHealthcheck,
  type HealthState,
  type HealthcheckSpec,
} from '../../src/runtime/health.js';
import { parseServiceSpec, serviceSpecJson } from '../../src/api/shapes-workloads.js';

const spec = (o: Partial<HealthcheckSpec>): HealthcheckSpec => ({ test: [], interval: 0, timeout: 0, startPeriod: 0, startInterval: 0, retries: 0, ...o });
const result = (exitCode: number) => ({ start: 's', end: 'e', exitCode, output: `exit ${exitCode}` });
const fresh = (): HealthState => ({ status: 'starting', failingStreak: 0, log: [] });

describe('health checks', () => {
  it('the spec overrides the image field by field; NONE turns the image check off; no test, no check', () => {
    const image = { Test: ['CMD-SHELL', 'wget -q localhost'], Interval: 10e9, Retries: 5 };
    assert.deepEqual(mergeHealthcheck(image, spec({ interval: 2e9 })), spec({ test: ['CMD-SHELL', 'wget -q localhost'], interval: 2e9, retries: 5 }));
    assert.deepEqual(mergeHealthcheck(image, spec({ test: ['CMD', 'true'] }))?.test, ['CMD', 'true']);
    assert.equal(mergeHealthcheck(image, spec({ test: ['NONE'] })), undefined);
    assert.equal(mergeHealthcheck(undefined, spec({ interval: 1e9 })), undefined);
    assert.equal(mergeHealthcheck(undefined, undefined), undefined);
  });

  it("resolves Docker's defaults and the shell form", () => {
    const c = healthConfig(spec({ test: ['CMD-SHELL', 'test -f /ok'] }));
    assert.deepEqual(c, { cmd: ['/bin/sh', '-c', 'test -f /ok'], intervalMs: 30000, timeoutMs: 30000, startPeriodMs: 0, startIntervalMs: 5000, retries: 3 });
    assert.deepEqual(healthConfig(spec({ test: ['CMD', 'cat', '/ok'], interval: 1e9, retries: 1 })).cmd, ['cat', '/ok']);
  });

  it('refuses what Docker refuses', () => {
    assert.throws(() => validateHealthcheck(spec({ test: ['CMD', 'x'], interval: 5e5 })), /Interval in Healthcheck cannot be less than 1ms/);
    assert.throws(() => validateHealthcheck(spec({ test: ['CMD', 'x'], retries: -1 })), /Retries in Healthcheck cannot be negative/);
    assert.throws(() => validateHealthcheck(spec({ test: ['SHELL', 'x'] })), /NONE, CMD or CMD-SHELL/);
    assert.throws(() => validateHealthcheck(spec({ test: ['CMD'] })), /needs a command/);
    validateHealthcheck(spec({ test: ['NONE'] }));
  });

  it('healthy on a success; unhealthy after `retries` failures in a row; a success resets the streak', () => {
    const cfg = healthConfig(spec({ test: ['CMD', 'x'], retries: 2 }));
    let s = afterProbe(fresh(), result(1), cfg, 1000);
    assert.deepEqual([s.status, s.failingStreak], ['starting', 1]);
    s = afterProbe(s, result(0), cfg, 2000);
    assert.deepEqual([s.status, s.failingStreak], ['healthy', 0]);
    s = afterProbe(s, result(1), cfg, 3000);
    assert.deepEqual([s.status, s.failingStreak], ['healthy', 1]);
    s = afterProbe(s, result(2), cfg, 4000);
    assert.deepEqual([s.status, s.failingStreak], ['unhealthy', 2]);
    for (let i = 0; i < 6; i++) s = afterProbe(s, result(1), cfg, 5000);
    assert.equal(s.log.length, 5, 'the last five results are kept');
  });

  it('in the start period failures do not count, and probes come at the start interval', () => {
    const cfg = healthConfig(spec({ test: ['CMD', 'x'], retries: 1, startPeriod: 10e9, startInterval: 1e9, interval: 30e9 }));
    let s = afterProbe(fresh(), result(1), cfg, 2000);
    assert.deepEqual([s.status, s.failingStreak], ['starting', 0]);
    assert.equal(nextProbeMs(s, cfg, 2000), 1000);
    s = afterProbe(s, result(1), cfg, 11_000);
    assert.equal(s.status, 'unhealthy', 'after the start period a failure counts');
    assert.equal(nextProbeMs(fresh(), cfg, 11_000), 30_000);
    assert.equal(s.log.length, 2, 'failures in the start period are logged all the same');
  });

  it('the monitor probes on its interval and says when the status changes', async () => {
    const cfg = healthConfig(spec({ test: ['CMD', 'x'], interval: 5e6, retries: 1 }));
    const answers = [0, 0, 1];
    const seen: string[] = [];
    let probes = 0;
    const m = new HealthMonitor(
      cfg,
      Date.now(),
      fresh(),
      async () => ({ exitCode: answers[probes++] ?? 1, output: '' }),
      (st, changed) => changed && seen.push(st.status),
    );
    await new Promise((r) => setTimeout(r, 200));
    m.stop();
    const after = probes;
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(seen, ['healthy', 'unhealthy']);
    assert.ok(after >= 4, `probed ${after} times in 200 ms at a 5 ms interval`);
    assert.equal(probes, after, 'no probe after stop');
  });

  it('a service spec carries a Healthcheck through inspect and back; bad values are a 400', () => {
    const b = {
      Name: 'web',
      TaskTemplate: { ContainerSpec: { Image: 'busybox:local', Healthcheck: { Test: ['CMD-SHELL', 'true'], Interval: 1e9, Retries: 2 } } },
    };
    const s = parseServiceSpec(b);
    assert.deepEqual(s.healthcheck, spec({ test: ['CMD-SHELL', 'true'], interval: 1e9, retries: 2 }));
    const json = serviceSpecJson(s) as { TaskTemplate: { ContainerSpec: { Healthcheck: unknown } } };
    assert.deepEqual(json.TaskTemplate.ContainerSpec.Healthcheck, { Test: ['CMD-SHELL', 'true'], Interval: 1e9, Retries: 2 });
    assert.deepEqual(parseServiceSpec(json), s);
    const bad = structuredClone(b);
    bad.TaskTemplate.ContainerSpec.Healthcheck.Interval = 10;
    assert.throws(() => parseServiceSpec(bad), /Interval in Healthcheck cannot be less than 1ms/);
    const unknown = structuredClone(b) as unknown as { TaskTemplate: { ContainerSpec: { Healthcheck: Record<string, unknown> } } };
    unknown.TaskTemplate.ContainerSpec.Healthcheck.Probe = 'x';
    assert.throws(() => parseServiceSpec(unknown), /Healthcheck\.Probe is not supported yet/);
  });
});
