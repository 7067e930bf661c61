/**
 * Lets the event loop run timers and I/O before the caller goes on. Promise continuations are
 * microtasks: twenty task starts resuming at once would otherwise run all their synchronous
 * kernel calls (namespace creation, mounts) back to back while gossip probes and heartbeats wait.
 */
export function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
