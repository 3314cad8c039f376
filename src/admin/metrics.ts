/**
 * Prometheus metrics for one lb, in its own registry (never prom-client's global one, so
 * several lbs can run side by side in one process).
 *
 * Per request, lb only bumps a counter, a histogram and two try counters, through label
 * children cached by key. Everything that describes the servers (state, weight, in-flight,
 * ejections, health-check counts, latency) is read from the server-state map when Prometheus
 * scrapes, in the metrics' `collect()` hooks.
 */
import client from "prom-client";
import type { Balancer } from "../balancing/balancer.ts";
import type { RequestRecord } from "../log.ts";
import { type ServerPool, type ServerStateName, stateOf } from "../balancing/pool.ts";

const STATES: ServerStateName[] = ["healthy", "unhealthy", "ejected", "draining", "disabled"];
const METHODS = new Set([
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "PATCH",
  "DELETE",
  "OPTIONS",
  "CONNECT",
  "TRACE",
]);

/** Seconds: from 1 ms to a minute, dense where proxied requests usually are. */
export const DURATION_BUCKETS = [
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
];

export interface LbMetrics {
  readonly registry: client.Registry;
  /** Records one finished request (the traffic app's `onRequest`). */
  observe(rec: RequestRecord): void;
  /** Counts a config reload. */
  reloaded(ok: boolean): void;
  /** 5xx answers a backend sent (not lb's own 502/504 after a failed try), by server id. */
  responses5xx(id: string): number;
  /** The Prometheus text exposition. */
  text(): Promise<string>;
  readonly contentType: string;
}

export interface MetricsOptions {
  pool: ServerPool;
  balancer: Balancer;
  version: string;
}

interface RequestChildren {
  requests: client.Counter.Internal;
  duration: client.Histogram.Internal<"backend">;
}

export function createMetrics(opts: MetricsOptions): LbMetrics {
  const { pool, balancer } = opts;
  const registry = new client.Registry();
  const registers = [registry];

  new client.Gauge({
    name: "lb_build_info",
    help: "Always 1; the labels say which lb is running.",
    labelNames: ["version"],
    registers,
    collect() {
      this.set({ version: opts.version }, 1);
    },
  });
  const requests = new client.Counter({
    name: "lb_requests_total",
    help: "Requests answered, by the backend that answered (none: no backend was tried), " +
      "method and status class.",
    labelNames: ["backend", "method", "code_class"] as const,
    registers,
  });
  const duration = new client.Histogram({
    name: "lb_request_duration_seconds",
    help: "Time from receiving a request to sending the last byte of its answer, by backend.",
    labelNames: ["backend"] as const,
    buckets: DURATION_BUCKETS,
    registers,
  });
  const tries = new client.Counter({
    name: "lb_upstream_tries_total",
    help: "Requests sent to backends, counting each retry.",
    registers,
  });
  const retries = new client.Counter({
    name: "lb_retries_total",
    help: "Tries beyond the first for a request.",
    registers,
  });
  const reloads = new client.Counter({
    name: "lb_config_reloads_total",
    help: "Config reloads, by result (success or failure).",
    labelNames: ["result"] as const,
    registers,
  });
  reloads.inc({ result: "success" }, 0);
  reloads.inc({ result: "failure" }, 0);

  new client.Gauge({
    name: "lb_requests_in_flight",
    help: "Requests being forwarded to backends now.",
    registers,
    collect() {
      let n = 0;
      for (const s of pool.servers) n += s.inflight;
      this.set(n);
    },
  });
  new client.Gauge({
    name: "lb_server_in_flight",
    help: "Requests being forwarded to each backend now.",
    labelNames: ["backend"] as const,
    registers,
    collect() {
      this.reset();
      for (const s of pool.servers) this.set({ backend: s.id }, s.inflight);
    },
  });
  new client.Gauge({
    name: "lb_server_state",
    help: "1 for the state each backend is in, 0 for the others.",
    labelNames: ["backend", "state"] as const,
    registers,
    collect() {
      this.reset();
      const now = Date.now();
      for (const s of pool.servers) {
        const current = stateOf(s, now);
        for (const st of STATES) this.set({ backend: s.id, state: st }, st === current ? 1 : 0);
      }
    },
  });
  new client.Gauge({
    name: "lb_server_weight",
    help: "Each backend's configured weight.",
    labelNames: ["backend"] as const,
    registers,
    collect() {
      this.reset();
      for (const s of pool.servers) this.set({ backend: s.id }, s.weight);
    },
  });
  new client.Gauge({
    name: "lb_server_latency_ewma_seconds",
    help: "Each backend's time to first byte, exponentially weighted moving average.",
    labelNames: ["backend"] as const,
    registers,
    collect() {
      this.reset();
      for (const s of pool.servers) this.set({ backend: s.id }, s.latency.value / 1000);
    },
  });
  new client.Counter({
    name: "lb_ejections_total",
    help: "Times each backend was ejected by outlier detection.",
    labelNames: ["backend"] as const,
    registers,
    collect() {
      this.reset();
      for (const s of pool.servers) this.inc({ backend: s.id }, s.ejections);
    },
  });
  new client.Counter({
    name: "lb_upstream_errors_total",
    help: "Tries that failed, by backend (connection errors, timeouts, cut responses).",
    labelNames: ["backend"] as const,
    registers,
    collect() {
      this.reset();
      for (const s of pool.servers) this.inc({ backend: s.id }, s.errors);
    },
  });
  new client.Counter({
    name: "lb_health_checks_total",
    help: "Active health checks, by backend and result (pass or fail).",
    labelNames: ["backend", "result"] as const,
    registers,
    collect() {
      this.reset();
      for (const s of pool.servers) {
        this.inc({ backend: s.id, result: "pass" }, s.health.passedTotal ?? 0);
        this.inc({ backend: s.id, result: "fail" }, s.health.failedTotal ?? 0);
      }
    },
  });
  new client.Gauge({
    name: "lb_strategy_info",
    help: "Always 1; the label names the balancing strategy in use.",
    labelNames: ["strategy"] as const,
    registers,
    collect() {
      this.reset();
      this.set({ strategy: balancer.strategy.name }, 1);
    },
  });

  const children = new Map<string, RequestChildren>();
  const fivexx = new Map<string, number>();
  return {
    registry,
    contentType: registry.contentType,
    observe(rec) {
      const backend = rec.backend ?? "none";
      const method = METHODS.has(rec.method) ? rec.method : "OTHER";
      const codeClass = `${Math.floor(rec.status / 100)}xx`;
      const key = `${backend}\n${method}\n${codeClass}`;
      let c = children.get(key);
      if (!c) {
        // Bounded: backends × 10 methods × 5 classes.
        c = {
          requests: requests.labels({ backend, method, code_class: codeClass }),
          duration: duration.labels({ backend }),
        };
        children.set(key, c);
      }
      c.requests.inc();
      c.duration.observe(rec.durationMs / 1000);
      if (rec.tries > 0) tries.inc(rec.tries);
      if (rec.tries > 1) retries.inc(rec.tries - 1);
      // lb's own error answers carry rec.error; the pool already counted those failures.
      if (rec.status >= 500 && rec.backend && !rec.error) {
        fivexx.set(rec.backend, (fivexx.get(rec.backend) ?? 0) + 1);
      }
    },
    responses5xx(id) {
      return fivexx.get(id) ?? 0;
    },
    reloaded(ok) {
      reloads.inc({ result: ok ? "success" : "failure" });
    },
    text() {
      return registry.metrics();
    },
  };
}
