/**
 * The cluster's metrics (cluster.redis), read at scrape time: whether this instance follows
 * the shared view, which revision it runs, how many members it sees, and how often Redis
 * failed it or an admin change was refused while Redis was away; and what it shares besides
 * the view (cluster/sharing.ts):
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
import type { Cluster } from "../cluster/cluster.ts";
import type { ClusterSharing } from "../cluster/sharing.ts";

export function registerClusterMetrics(registry: client.Registry, cluster: Cluster): void {
  const registers = [registry];
  const gauge = (name: string, help: string, read: () => number) =>
    new client.Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(read());
      },
    });
  const counter = (name: string, help: string, read: () => number) =>
    new client.Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  gauge(
    "lb_cluster_connected",
    "1 while this instance is connected to the cluster's Redis and follows its view.",
    () => cluster.status().connected ? 1 : 0,
  );
  gauge(
    "lb_cluster_view_revision",
    "The shared view's revision this instance runs.",
    () => cluster.status().revision,
  );
  gauge(
    "lb_cluster_members",
    "Live members this instance sees (itself included).",
    () => cluster.members().length,
  );
  counter(
    "lb_cluster_views_applied_total",
    "Times the shared view changed what this instance runs.",
    () => cluster.counts.applied,
  );
  counter(
    "lb_cluster_redis_errors_total",
    "Redis commands that failed, and values in Redis that were skipped as invalid.",
    () => cluster.counts.errors,
  );
  counter(
    "lb_cluster_changes_refused_total",
    "Admin changes refused with 503 because Redis was unreachable.",
    () => cluster.counts.refused,
  );
}

/** What the cluster shares besides the view: rate-limit fallbacks and shared health checks. */
export function registerSharingMetrics(registry: client.Registry, sharing: ClusterSharing): void {
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
