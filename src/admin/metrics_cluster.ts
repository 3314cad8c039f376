/**
 * The cluster's metrics (cluster.redis), read at scrape time: whether this instance follows
 * the shared view, which revision it runs, how many members it sees, and how often Redis
 * failed it or an admin change was refused while Redis was away.
 */
import client from "prom-client";
import type { Cluster } from "../cluster/cluster.ts";

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
