/**
 * What a cluster member shares with the others through Redis, besides membership and the
 * shared view (cluster.ts): health checks (health_share.ts) and rate limits
 * (shared_rate_limit.ts). One object built from the ClusterLink, handed to `new Pools` as
 * its `cluster`, so every pool and route, including those a reload adds, share through it.
 *
 * @example
 * ```ts
 * const sharing = clusterSharing(link, { logger });
 * const pools = new Pools(configs, routes, secret, tls, sharing);
 * registerClusterMetrics(metrics.registry, sharing);
 * // … on shutdown, after pools.close():
 * sharing.close();
 * ```
 */
import type { RateLimitConfig } from "../config/routes.ts";
import type { Logger } from "../log.ts";
import type { PoolsCluster } from "../routing/pools.ts";
import type { RateLimiter, SharedLimit } from "../routing/rate_limit.ts";
import { ClusterHealth } from "./health_share.ts";
import type { ClusterLink } from "./link.ts";
import { SharedRateLimits } from "./shared_rate_limit.ts";

/** Options of {@link clusterSharing}. */
export interface ClusterSharingOptions {
  logger: Logger;
  /** Longest wait for Redis per rate-limited request (ms). Default 50. */
  rateLimitTimeoutMs?: number;
  /** Longest wait for one health read or publish (ms). Default 1000. */
  healthTimeoutMs?: number;
}

/** A PoolsCluster over one ClusterLink, with what metrics read. */
export interface ClusterSharing extends PoolsCluster {
  readonly health: ClusterHealth;
  readonly limits: SharedRateLimits;
  /** Stops following the member list (close the pools first). */
  close(): void;
}

/** Shared health checks and rate limits over `link`. */
export function clusterSharing(link: ClusterLink, opts: ClusterSharingOptions): ClusterSharing {
  const health = new ClusterHealth(link, {
    logger: opts.logger,
    commandTimeout: opts.healthTimeoutMs,
  });
  const limits = new SharedRateLimits(link, { timeoutMs: opts.rateLimitTimeoutMs });
  return {
    health,
    limits,
    healthShare: (pool: string) => health.forPool(pool),
    sharedLimit(config: RateLimitConfig, route: string, local: RateLimiter): SharedLimit {
      return limits.limit(config, route, local);
    },
    close() {
      health.close();
    },
  };
}
