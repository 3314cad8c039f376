/**
 * A backend server as everything outside pool.ts sees it: a read-only view. Only the pool
 * (its named functions, see pool.ts) changes server state, and `deno check` enforces it:
 * assigning to any field here is a compile error.
 */
import type { Ewma } from "./ewma.ts";

/** What the admin API and metrics call a server's state. */
export type ServerStateName = "healthy" | "unhealthy" | "ejected" | "draining" | "disabled";

/** What the active health checks found. */
export interface HealthRecord {
  /** Result of the last active check; undefined before the first one. */
  readonly ok?: boolean;
  /** Time of the last check (epoch ms); 0 before the first. */
  readonly at: number;
  /** Status code or error message of the last check. */
  readonly detail?: string;
  /** Consecutive successes and failures, for rise/fall. */
  readonly successes: number;
  readonly failures: number;
  /** Checks passed and failed since the server was added (for metrics). */
  readonly passedTotal: number;
  readonly failedTotal: number;
}

export interface Server {
  /** Configured name, else host:port. Unique in a pool. */
  readonly id: string;
  /** The backend's origin, e.g. `http://127.0.0.1:9001` (no path, no trailing slash). */
  readonly url: string;
  readonly hostname: string;
  readonly port: number;
  /** An https:// backend: connections to it speak TLS. */
  readonly tls: boolean;
  readonly weight: number;
  /** Cleared by the admin API ("disabled"). */
  readonly enabled: boolean;
  /** No new requests; in-flight ones finish. */
  readonly draining: boolean;
  /** Result of active health checking after rise/fall. */
  readonly healthy: boolean;
  /** Passive ejection: unavailable until this time (epoch ms). */
  readonly ejectedUntil: number;
  /** How many times this server has been ejected (multiplies the ejection time). */
  readonly ejections: number;
  /** Circuit breaker: at most this many requests in flight (0 = no limit). */
  readonly maxConnections: number;
  readonly inflight: number;
  readonly requests: number;
  /** Tries that failed (connection errors, timeouts, cut responses). */
  readonly errors: number;
  /** Consecutive failures on real traffic, for outlier detection. */
  readonly consecutiveFailures: number;
  readonly latency: Readonly<Ewma>;
  readonly health: HealthRecord;
  /** Set when removed from the pool, so late reports about it are harmless. */
  readonly removed: boolean;
}
