/**
 * The two metrics every request updates, `lb_requests_total` and
 * `lb_request_duration_seconds`, kept in plain numbers per label set and handed to
 * prom-client's registry in its own shape (`get()`) when Prometheus scrapes. prom-client's
 * Counter and Histogram check and hash their labels on every update; here a request does a
 * map lookup by one string and a few additions. The exposition is the same (promtool checks
 * it; `AggregatorRegistry.aggregate` adds it up for --workers).
 */
import type client from "prom-client";

/** One `lb_request_duration_seconds` series: per-bucket counts (not cumulative), sum, count. */
interface Durations {
  labels: Record<string, string>;
  buckets: Float64Array;
  sum: number;
  count: number;
}

/** The cells one request updates (cached per label set). */
export interface RequestCells {
  requests: { labels: Record<string, string>; value: number };
  durations: Durations;
}

export class RequestSeries {
  readonly #cells = new Map<string, RequestCells>();
  readonly #durations = new Map<string, Durations>();

  constructor(readonly bounds: readonly number[]) {}

  /** The cells of a label set; made on first use (bounded by routes × backends × 50). */
  cells(pool: string, route: string, backend: string, method: string, codeClass: string) {
    const key = `${pool}\n${route}\n${backend}\n${method}\n${codeClass}`;
    let c = this.#cells.get(key);
    if (c === undefined) {
      const dkey = `${pool}\n${route}\n${backend}`;
      let durations = this.#durations.get(dkey);
      if (durations === undefined) {
        const buckets = new Float64Array(this.bounds.length);
        durations = { labels: { pool, route, backend }, buckets, sum: 0, count: 0 };
        this.#durations.set(dkey, durations);
      }
      const labels = { pool, route, backend, method, code_class: codeClass };
      c = { requests: { labels, value: 0 }, durations };
      this.#cells.set(key, c);
    }
    return c;
  }

  /** Counts one request that took `seconds`. */
  observe(c: RequestCells, seconds: number): void {
    c.requests.value++;
    const d = c.durations;
    d.count++;
    d.sum += seconds;
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) {
      if (seconds <= b[i]) {
        d.buckets[i]++;
        break;
      }
    }
  }

  /** Registers both metrics on `registry`, as prom-client's own would appear. */
  register(registry: client.Registry, help: { requests: string; duration: string }): void {
    const requests = "lb_requests_total";
    const duration = "lb_request_duration_seconds";
    const metric = (name: string, type: string, text: string, values: () => unknown[]) => ({
      name,
      help: text,
      type,
      aggregator: "sum",
      get: () => Promise.resolve({ name, help: text, type, aggregator: "sum", values: values() }),
      reset: () => {},
    });
    const counts = () =>
      [...this.#cells.values()].map((c) => ({
        value: c.requests.value,
        labels: c.requests.labels,
      }));
    registry.registerMetric(
      metric(requests, "counter", help.requests, counts) as unknown as client.Metric,
    );
    registry.registerMetric(
      metric(
        duration,
        "histogram",
        help.duration,
        () => this.#histogram(duration),
      ) as unknown as client.Metric,
    );
  }

  /** The histogram's values: cumulative buckets with `le`, +Inf, sum and count per series. */
  #histogram(name: string): unknown[] {
    const out: unknown[] = [];
    for (const d of this.#durations.values()) {
      let acc = 0;
      this.bounds.forEach((le, i) => {
        acc += d.buckets[i];
        out.push({ value: acc, labels: { ...d.labels, le }, metricName: `${name}_bucket` });
      });
      out.push({
        value: d.count,
        labels: { ...d.labels, le: "+Inf" },
        metricName: `${name}_bucket`,
      });
      out.push({ value: d.sum, labels: d.labels, metricName: `${name}_sum` });
      out.push({ value: d.count, labels: d.labels, metricName: `${name}_count` });
    }
    return out;
  }
}
