/**
 * Prometheus metrics of what a member shares through Redis (sharing.ts), read when
 * Prometheus scrapes, like the server metrics (admin/metrics_servers.ts):
 *
 * - `lb_rate_limit_fallbacks_total{route, reason}`: requests of a `rateLimit.shared` route
 *   that the local bucket decided because Redis was `unreachable`, answered an `error`, took
 *   longer than the bound (`timeout`) or answered something malformed (`bad_reply`).
 * - `lb_health_shared_checks_total{pool, kind}`: the health loop's work in a cluster: `own`
 *   (checks of servers this instance owns), `fallback` (checks of servers it does not own,
 *   while their owner's result is missing or Redis is away), `recorded` (results of other
 *   instances recorded as checks), `bad` (malformed values in Redis, skipped).
 */
import client from "prom-client";
import type { ClusterSharing } from "./sharing.ts";

/** Registers the cluster's metrics in `registry`. */
export function registerClusterMetrics(registry: client.Registry, sharing: ClusterSharing): void {
  new client.Counter({
    name: "lb_rate_limit_fallbacks_total",
    help: "Requests of shared rate limits decided by the local bucket, by why",
    labelNames: ["route", "reason"],
    registers: [registry],
    collect() {
      this.reset();
      for (const f of sharing.limits.fallbacks()) {
        this.inc({ route: f.route, reason: f.reason }, f.count);
      }
    },
  });
  new client.Counter({
    name: "lb_health_shared_checks_total",
    help: "Health checks in a cluster: own, fallback, recorded (another's), bad (skipped)",
    labelNames: ["pool", "kind"],
    registers: [registry],
    collect() {
      this.reset();
      for (const [pool, share] of sharing.health.shares) {
        const s = share.stats;
        this.inc({ pool, kind: "own" }, s.ownChecks);
        this.inc({ pool, kind: "fallback" }, s.fallbackChecks);
        this.inc({ pool, kind: "recorded" }, s.recorded);
        this.inc({ pool, kind: "bad" }, s.bad);
      }
    },
  });
}
