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

/**
 * Engine API paths (without the version prefix) only the leader can answer: a service's logs come
 * over the nodes' sessions, which the leader serves. A follower manager forwards these, and the
 * leader replays only these; every other cluster call any manager answers from its own store.
 */
export const LEADER_ENGINE_PATH = /^\/services\/[^/]+\/logs$/;
