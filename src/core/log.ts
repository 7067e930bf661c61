// Minimal leveled logger writing logfmt-ish lines to stderr.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

let globalLevel: LogLevel = (process.env.VXSWARM_LOG_LEVEL as LogLevel | undefined) ?? 'warn';
export function setLogLevel(level: LogLevel): void {
  if (!(level in order)) throw new RangeError(`unknown log level ${level}`);
  globalLevel = level;
}

function fmt(fields: Record<string, unknown>): string {
  return Object.entries(fields)
    .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`)
    .join(' ');
}

export function createLogger(base: Record<string, unknown> = {}): Logger {
  const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>): void => {
    if (order[level] < order[globalLevel]) return;
    const all = { ...base, ...fields };
    const tail = Object.keys(all).length ? ` ${fmt(all)}` : '';
    process.stderr.write(`${new Date().toISOString()} ${level.toUpperCase()} ${msg}${tail}\n`);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (f) => createLogger({ ...base, ...f }),
  };
}

/**
 * A warning that may repeat at the rate packets arrive (a flood of forged gossip): logged at most
 * once per `intervalMs`, the next line saying how many were left out. Count the events elsewhere.
 */
export function throttled(log: Logger, msg: string, intervalMs = 10_000): (fields?: Record<string, unknown>) => void {
  let last = -Infinity;
  let suppressed = 0;
  return (fields) => {
    const t = Date.now();
    if (t - last < intervalMs) {
      suppressed++;
      return;
    }
    last = t;
    log.warn(msg, { ...fields, ...(suppressed ? { suppressed } : {}) });
    suppressed = 0;
  };
}
