/**
 * Caps on concurrent requests, in total and per client address (`limits.maxConnections`,
 * `limits.maxConnectionsPerClient`): past a cap lb answers 503 at once instead of taking on
 * more work than it has file descriptors and memory for.
 *
 * Why requests and not connections: `Deno.serve` has no hook where a connection is
 * accepted, counted or closed, so lb counts what it can see: requests in flight, from the
 * moment the handler runs until its response has ended (the stream's last byte, or the
 * client gone). An HTTP/1.1 connection carries one request at a time, so this caps
 * busy connections; idle keep-alive and half-sent (slowloris) connections are not counted.
 * Measured on Deno 2.9.6: 500 slowloris connections do not slow ordinary clients down, but
 * stay open for as long as the attacker likes (see SECURITY.md).
 */

import { Failure } from "./failures.ts";

export interface ConcurrencyLimits {
  /** Requests in flight across all clients (0 = no cap). */
  maxConnections: number;
  /** Requests in flight from one client address (0 = no cap). */
  maxConnectionsPerClient: number;
}

/**
 * Counts requests in flight per client address.
 *
 * @example
 * ```ts
 * const limiter = new ConcurrencyLimiter(config.limits);
 * // in the handler, with Deno.serve's info:
 * const refused = limiter.enter(clientIp);
 * if (refused) return fail(px, flight, refused);
 * // … and once the response has ended:
 * limiter.leave(clientIp);
 * ```
 */
export class ConcurrencyLimiter {
  #perClient = new Map<string, number>();
  #total = 0;

  constructor(readonly limits: ConcurrencyLimits) {}

  /** Requests in flight now. */
  get inflight(): number {
    return this.#total;
  }

  /** Requests in flight now from `client`. */
  inflightFrom(client: string): number {
    return this.#perClient.get(client) ?? 0;
  }

  /** Counts a request in, or refuses it; every request let in must `leave` exactly once. */
  enter(client: string): Failure | undefined {
    const { maxConnections, maxConnectionsPerClient } = this.limits;
    const mine = this.#perClient.get(client) ?? 0;
    if (maxConnections > 0 && this.#total >= maxConnections) {
      return refusal(`lb is at its limit of ${maxConnections} requests in flight`);
    }
    if (maxConnectionsPerClient > 0 && mine >= maxConnectionsPerClient) {
      return refusal(
        `too many requests in flight from ${client} (limit ${maxConnectionsPerClient})`,
      );
    }
    this.#total++;
    this.#perClient.set(client, mine + 1);
    return undefined;
  }

  /** Counts a request out (the handler calls it when the response has ended). */
  leave(client: string): void {
    this.#total--;
    const n = (this.#perClient.get(client) ?? 1) - 1;
    if (n <= 0) this.#perClient.delete(client);
    else this.#perClient.set(client, n);
  }
}

function refusal(message: string): Failure {
  return new Failure("overloaded", message, { "retry-after": "1" });
}
