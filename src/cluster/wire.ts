// Shared by the manager API server and its clients: HTTP/2 + JSON over mutual TLS.
export const MANAGER_PORT = 2377;
/** Managers' certificates carry this DNS name; clients verify it, as swarmkit does. */
export const MANAGER_SERVERNAME = 'swarm-manager';
export const MAX_BODY = 1 << 20;

export interface WireError {
  message: string;
}

export function splitHostPort(addr: string, defaultPort = MANAGER_PORT): { host: string; port: number } {
  const m = /^(.+?)(?::(\d+))?$/.exec(addr.trim());
  const host = m?.[1] ?? addr;
  const port = m?.[2] ? Number(m[2]) : defaultPort;
  return { host, port };
}
