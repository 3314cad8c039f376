/**
 * Retry discipline (after Envoy and Linkerd): which failures may be retried, exponential
 * backoff with full jitter, and a budget so a sick cluster is not hit with attempts × load.
 */
import type { BodySource } from "./request_body.ts";
import type { TryFailure } from "./upstream.ts";

/** RFC 9110 §9.2.2: methods whose repetition has the same effect as one request. */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

/** Whether the body (if any) can be sent again from its first byte. */
export function replayable(body: BodySource | null): boolean {
  return body === null || body.replayable;
}

/**
 * Whether a failed try may be retried on another server.
 * - connect failures: for every method (the request never reached the server);
 * - a reused keep-alive connection closed under us before any response byte, and a
 *   connection reset before any response byte: likewise (issue 4: "resets before any
 *   response byte for every method");
 * - timeouts, bad responses and retryable statuses: only when repeating is safe — an
 *   idempotent method, or a body small enough to have been kept whole.
 * In every case the body must still be replayable: a body streamed beyond
 * `retry.bufferLimit` is never sent twice, whatever the failure.
 */
export function mayRetry(
  failure: TryFailure | "status",
  method: string,
  body: BodySource | null,
): boolean {
  if (!replayable(body)) return false;
  switch (failure) {
    case "connect":
    case "stale":
    case "reset":
      return true;
    case "timeout":
    case "protocol":
    case "status":
      return IDEMPOTENT.has(method) || body !== null;
    default:
      return false;
  }
}

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
  /** Retries refused because the budget was spent. */
  refused = 0;

  constructor(readonly percent: number, readonly minConcurrent: number) {}

  /** Whether `acquire` would succeed now (without taking anything or counting a refusal). */
  get available(): boolean {
    return this.retrying < Math.max(this.minConcurrent, (this.active * this.percent) / 100);
  }

  /** Takes one retry from the budget; false when it is spent. Call `release` after the try. */
  acquire(): boolean {
    if (!this.available) {
      this.refused++;
      return false;
    }
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
