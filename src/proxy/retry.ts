/**
 * Retry discipline (after Envoy and Linkerd): exponential backoff with full jitter, and a
 * budget so a sick cluster is not hit with attempts × load. Which failures may be retried
 * is the failure table's to say (failures.ts).
 */

/** Full-jitter exponential backoff: a random wait in [0, min(max, base × 2^(retry-1))). */
export function backoffMs(retry: number, base: number, max: number, random: () => number): number {
  return random() * Math.min(max, base * 2 ** (retry - 1));
}

/**
 * Retries in flight may be at most `percent` % of the requests in flight, but never fewer
 * than `minConcurrent` (Envoy's retry budget).
 */
export class RetryBudget {
  active = 0;
  retrying = 0;

  constructor(readonly percent: number, readonly minConcurrent: number) {}

  /** Whether `acquire` would succeed now (without taking anything or counting a refusal). */
  get available(): boolean {
    return this.retrying < Math.max(this.minConcurrent, (this.active * this.percent) / 100);
  }

  /** Takes one retry from the budget; false when it is spent. Call `release` after the try. */
  acquire(): boolean {
    if (!this.available) return false;
    this.retrying++;
    return true;
  }

  release(): void {
    this.retrying--;
  }
}

/** Waits `ms`, or less if `signal` aborts; never rejects. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}
