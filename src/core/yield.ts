/**
 * Lets the event loop run timers and I/O before the caller goes on. Promise continuations are
 * microtasks: twenty task starts resuming at once would otherwise run all their synchronous steps
 * (netlink sockets opened inside namespaces, sysctls, message encoding) back to back while gossip
 * probes and heartbeats wait.
 */
export function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
