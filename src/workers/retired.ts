/**
 * What workers that have exited had counted, as they last reported it, so that a total never
 * goes down when a worker dies and its successor starts from zero: Prometheus reads a
 * counter that drops as a reset and would count the whole instance's total again, and the
 * dashboard's rates would dip. Only what only grows is kept: counters, histograms and the
 * per-server request, error and 5xx counts, not gauges such as in-flight or memory. What a
 * worker counted after the parent last asked it is lost with it; nobody saw it, so nothing
 * drops.
 */
import type { ServerCounters } from "./hub.ts";

interface MetricJson {
  name: string;
  type: string;
  values: { value: number; labels: Record<string, string | number>; metricName?: string }[];
}

export class Retired {
  /** Per metric name: the metric (help, type…) and its summed values by series. */
  #metrics = new Map<
    string,
    { metric: MetricJson; values: Map<string, MetricJson["values"][0]> }
  >();
  /** Per server (counterKey): summed counts. */
  readonly servers = new Map<string, ServerCounters>();

  /** Adds an exited worker's last metrics (prom-client JSON) and server counters. */
  add(metrics: unknown[] | undefined, counters: Record<string, ServerCounters> | undefined): void {
    for (const m of (metrics ?? []) as MetricJson[]) {
      if (m.type !== "counter" && m.type !== "histogram") continue;
      let kept = this.#metrics.get(m.name);
      if (!kept) this.#metrics.set(m.name, kept = { metric: m, values: new Map() });
      for (const v of m.values) {
        const key = `${v.metricName ?? ""}\n${JSON.stringify(v.labels)}`;
        const had = kept.values.get(key);
        kept.values.set(key, { ...v, value: (had?.value ?? 0) + v.value });
      }
    }
    for (const [key, c] of Object.entries(counters ?? {})) {
      const had = this.servers.get(key);
      this.servers.set(key, {
        inflight: 0,
        requests: c.requests + (had?.requests ?? 0),
        errors: c.errors + (had?.errors ?? 0),
        responses5xx: c.responses5xx + (had?.responses5xx ?? 0),
      });
    }
  }

  /** The kept counters as one more registry's JSON; undefined while no worker has exited. */
  metrics(): unknown[] | undefined {
    if (this.#metrics.size === 0) return undefined;
    return [...this.#metrics.values()].map(({ metric, values }) => ({
      ...metric,
      values: [...values.values()],
    }));
  }
}
