// Many calls in one turn of the event loop, one run right after it: a burst of gossip events or task
// starts programs the kernel once, with everything they changed.

/** `fn`, run once on the next turn however often this is called before then. */
export function coalesced(fn: () => void): () => void {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    setImmediate(() => {
      pending = false;
      fn();
    });
  };
}
