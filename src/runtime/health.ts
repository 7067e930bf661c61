// Container health checks, as Docker runs them: a probe command run inside the container every
// interval; exit 0 is healthy, anything else (or a timeout) a failure; `retries` failures in a row
// make the container unhealthy, except during the start period, where failures do not count until
// a first success. The last five results are kept with their output.

/** Docker's Healthcheck (image config or ContainerSpec): durations in nanoseconds, 0 = the default or the image's. */
export interface HealthcheckSpec {
  /** [] inherit, ['NONE'] off, ['CMD', argv…], ['CMD-SHELL', command] */
  test: string[];
  interval: number;
  timeout: number;
  startPeriod: number;
  startInterval: number;
  retries: number;
}

/** What a container runs: the probe's argv and every setting resolved. */
export interface HealthConfig {
  cmd: string[];
  intervalMs: number;
  timeoutMs: number;
  startPeriodMs: number;
  startIntervalMs: number;
  retries: number;
}

export type HealthStatus = 'starting' | 'healthy' | 'unhealthy';

export interface ProbeResult {
  start: string;
  end: string;
  exitCode: number;
  output: string;
}

export interface HealthState {
  status: HealthStatus;
  failingStreak: number;
  log: ProbeResult[];
}

const NS_PER_MS = 1e6;
// Docker's defaults (daemon/health.go)
const DEFAULT_INTERVAL_MS = 30_000;
const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_START_INTERVAL_MS = 5_000;
const DEFAULT_RETRIES = 3;
const MAX_LOG = 5;
const MAX_OUTPUT = 4096;

/** Docker's checks of a Healthcheck (a 400 where it is given). */
export function validateHealthcheck(h: HealthcheckSpec): void {
  const t = h.test[0];
  if (t !== undefined && t !== 'NONE' && t !== 'CMD' && t !== 'CMD-SHELL')
    throw new HealthcheckError(`invalid Healthcheck.Test "${t}": the first word must be NONE, CMD or CMD-SHELL`);
  if ((t === 'CMD' || t === 'CMD-SHELL') && h.test.length < 2) throw new HealthcheckError(`Healthcheck.Test ${t} needs a command`);
  if (t === 'CMD-SHELL' && h.test.length > 2) throw new HealthcheckError('Healthcheck.Test CMD-SHELL takes one command string');
  for (const [k, v] of [
    ['Interval', h.interval],
    ['Timeout', h.timeout],
    ['StartPeriod', h.startPeriod],
    ['StartInterval', h.startInterval],
  ] as const)
    if (v !== 0 && v < NS_PER_MS) throw new HealthcheckError(`${k} in Healthcheck cannot be less than 1ms`);
  if (h.retries < 0) throw new HealthcheckError('Retries in Healthcheck cannot be negative');
}

export class HealthcheckError extends Error {}

/** An image config's Healthcheck (Docker's field names). */
export interface ImageHealthcheck {
  Test?: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  StartInterval?: number;
  Retries?: number;
}

/**
 * The check a container runs, in Docker's terms: the spec's settings over the image's (a zero field
 * takes the image's); none when neither has a test or the spec says NONE.
 */
export function mergeHealthcheck(image: ImageHealthcheck | undefined, spec: HealthcheckSpec | undefined): HealthcheckSpec | undefined {
  const test = spec?.test.length ? spec.test : (image?.Test ?? []);
  if (!test.length || test[0] === 'NONE') return undefined;
  return {
    test,
    interval: spec?.interval || image?.Interval || 0,
    timeout: spec?.timeout || image?.Timeout || 0,
    startPeriod: spec?.startPeriod || image?.StartPeriod || 0,
    startInterval: spec?.startInterval || image?.StartInterval || 0,
    retries: spec?.retries || image?.Retries || 0,
  };
}

/** The probe's argv and every setting, Docker's defaults for those left at zero. */
export function healthConfig(h: HealthcheckSpec): HealthConfig {
  return {
    cmd: h.test[0] === 'CMD-SHELL' ? ['/bin/sh', '-c', h.test[1] ?? ''] : h.test.slice(1),
    intervalMs: h.interval / NS_PER_MS || DEFAULT_INTERVAL_MS,
    timeoutMs: h.timeout / NS_PER_MS || DEFAULT_TIMEOUT_MS,
    startPeriodMs: h.startPeriod / NS_PER_MS,
    startIntervalMs: h.startInterval / NS_PER_MS || DEFAULT_START_INTERVAL_MS,
    retries: h.retries || DEFAULT_RETRIES,
  };
}

/** The state after one probe; `sinceStartMs` is how long the container has run. */
export function afterProbe(s: HealthState, r: ProbeResult, cfg: HealthConfig, sinceStartMs: number): HealthState {
  const log = [...s.log, { ...r, output: r.output.slice(0, MAX_OUTPUT) }].slice(-MAX_LOG);
  if (r.exitCode === 0) return { status: 'healthy', failingStreak: 0, log };
  // In the start period, a failure before the first success is not counted.
  if (s.status === 'starting' && sinceStartMs < cfg.startPeriodMs) return { ...s, log };
  const failingStreak = s.failingStreak + 1;
  return { status: failingStreak >= cfg.retries ? 'unhealthy' : s.status, failingStreak, log };
}

/** When the next probe runs: at the start interval while in the start period and not yet healthy. */
export function nextProbeMs(s: HealthState, cfg: HealthConfig, sinceStartMs: number): number {
  return s.status === 'starting' && sinceStartMs < cfg.startPeriodMs ? Math.min(cfg.startIntervalMs, cfg.intervalMs) : cfg.intervalMs;
}

/** Runs one container's probes until stopped; `probe` runs the command inside the container. */
export class HealthMonitor {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly cfg: HealthConfig,
    private readonly startedAt: number,
    private state: HealthState,
    private readonly probe: (cmd: string[], timeoutMs: number) => Promise<{ exitCode: number; output: string }>,
    private readonly changed: (s: HealthState, statusChanged: boolean) => void,
  ) {
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.run(), nextProbeMs(this.state, this.cfg, Date.now() - this.startedAt));
    this.timer.unref();
  }

  private async run(): Promise<void> {
    const start = new Date().toISOString();
    let r: { exitCode: number; output: string };
    try {
      r = await this.probe(this.cfg.cmd, this.cfg.timeoutMs);
    } catch (e) {
      r = { exitCode: -1, output: e instanceof Error ? e.message : String(e) };
    }
    if (this.stopped) return;
    const before = this.state.status;
    this.state = afterProbe(this.state, { start, end: new Date().toISOString(), ...r }, this.cfg, Date.now() - this.startedAt);
    this.changed(this.state, this.state.status !== before);
    this.schedule();
  }
}

/** The probe's timeout, as Docker words it. */
export function timeoutOutput(ms: number): string {
  return `Health check exceeded timeout (${ms >= 1000 ? `${ms / 1000}s` : `${ms}ms`})`;
}
