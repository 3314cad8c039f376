/**
 * `/metrics` of a `--workers` instance: the parent's metrics and every worker's, added up by
 * prom-client's `AggregatorRegistry.aggregate` (the library function behind its Node cluster
 * support; it works on plain `getMetricsAsJSON()` arrays). Counters, histograms and most
 * gauges are summed; the gauges below are not, since a sum of them means nothing. The
 * parent's metrics come first, so "first" is the parent's view, the one the admin API shows.
 */
import client from "prom-client";

const NOT_SUMMED: Record<string, "first" | "min" | "max" | "average"> = {
  lb_build_info: "first",
  lb_strategy_info: "first",
  lb_server_weight: "first",
  lb_server_state: "first",
  lb_server_latency_ewma_seconds: "average",
  lb_tls_certificate_expiry_seconds: "first",
  lb_cluster_connected: "first",
  lb_cluster_view_revision: "first",
  lb_cluster_members: "first",
  process_max_fds: "max",
  process_start_time_seconds: "min",
};

/** The Prometheus text of `parts` (the parent's JSON first) added up into one instance. */
export async function totalsText(parts: unknown[][]): Promise<string> {
  for (const metrics of parts) {
    for (const m of metrics as { name: string; aggregator?: string }[]) {
      m.aggregator = NOT_SUMMED[m.name] ?? "sum";
    }
  }
  // deno-lint-ignore no-explicit-any
  const registry = client.AggregatorRegistry.aggregate(parts as any);
  return await registry.metrics();
}
