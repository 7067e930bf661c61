// Protocol maths of SWIM with Lifeguard, as pure functions (cf. memberlist's util.go).

/** Suspicion timeout floor: mult · max(1, log10 n) · probe interval. N ≤ 10 gives mult intervals. */
export function suspicionTimeoutMs(mult: number, n: number, intervalMs: number): number {
  const scale = Math.max(1, Math.log10(Math.max(1, n)));
  return Math.round(mult * scale * intervalMs);
}

/** Times a broadcast is retransmitted: mult · ⌈log10(n + 1)⌉, so it reaches everyone in O(log n) rounds. */
export function retransmitLimit(mult: number, n: number): number {
  return mult * Math.ceil(Math.log10(n + 1));
}

/**
 * Lifeguard: the suspicion timeout starts at max and shrinks toward min as independent
 * confirmations arrive, logarithmically, reaching min at k confirmations.
 */
export function suspicionTimeoutWithConfirmations(confirmations: number, k: number, minMs: number, maxMs: number): number {
  if (k < 1) return minMs;
  const frac = Math.log(Math.min(confirmations, k) + 1) / Math.log(k + 1);
  return Math.max(minMs, Math.floor(maxMs - frac * (maxMs - minMs)));
}

/** Lifeguard local health: a node that misses acks stretches its own probe timing, up to ×max. */
export function scaleByHealth(ms: number, score: number): number {
  return ms * (score + 1);
}

/** Rounds of fanout-k push gossip to reach all n nodes, roughly log_{k+1}(n) + ln(n)/k. */
export function expectedSpreadRounds(n: number, fanout: number): number {
  return Math.log(n) / Math.log(fanout + 1) + Math.log(n) / fanout;
}
