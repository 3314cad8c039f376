/**
 * Metrics read from the server-state map when Prometheus scrapes (the `collect()` hooks):
 * state, weight, in-flight, latency, ejections, errors and health checks per server, and
 * the strategy in use. Nothing here costs anything per request.
 */
import client from "prom-client";
import { stateOf } from "../balancing/availability.ts";
import type { Balancer } from "../balancing/balancer.ts";
import type { ServerPool } from "../balancing/pool.ts";
import type { Server, ServerStateName } from "../balancing/server.ts";

const STATES: ServerStateName[] = ["healthy", "unhealthy", "ejected", "draining", "disabled"];

type Kind = "gauge" | "counter";

/** A per-backend metric whose value is read from each server at scrape time. */
function perServer(
  registry: client.Registry,
  pool: ServerPool,
  kind: Kind,
  name: string,
  help: string,
  value: (s: Server) => number,
): void {
  const common = { name, help, labelNames: ["backend"] as const, registers: [registry] };
  const fill = (put: (labels: { backend: string }, v: number) => void) => {
    for (const s of pool.servers) put({ backend: s.id }, value(s));
  };
  if (kind === "gauge") {
    new client.Gauge({
      ...common,
      collect() {
        this.reset();
        fill((labels, v) => this.set(labels, v));
      },
    });
  } else {
    new client.Counter({
      ...common,
      collect() {
        this.reset();
        fill((labels, v) => this.inc(labels, v));
      },
    });
  }
}

/** Registers every server metric on `registry`. */
export function registerServerMetrics(
  registry: client.Registry,
  pool: ServerPool,
  balancer: Balancer,
): void {
  const registers = [registry];
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
  const each = perServer.bind(null, registry, pool);
  each(
    "gauge",
    "lb_server_in_flight",
    "Requests being forwarded to each backend now.",
    (s) => s.inflight,
  );
  each("gauge", "lb_server_weight", "Each backend's configured weight.", (s) => s.weight);
  each(
    "gauge",
    "lb_server_latency_ewma_seconds",
    "Each backend's time to first byte, exponentially weighted moving average.",
    (s) => s.latency.value / 1000,
  );
  each(
    "counter",
    "lb_ejections_total",
    "Times each backend was ejected by outlier detection.",
    (s) => s.ejections,
  );
  each(
    "counter",
    "lb_upstream_errors_total",
    "Tries that failed, by backend (connection errors, timeouts, cut responses).",
    (s) => s.errors,
  );
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
  new client.Counter({
    name: "lb_health_checks_total",
    help: "Active health checks, by backend and result (pass or fail).",
    labelNames: ["backend", "result"] as const,
    registers,
    collect() {
      this.reset();
      for (const s of pool.servers) {
        this.inc({ backend: s.id, result: "pass" }, s.health.passedTotal);
        this.inc({ backend: s.id, result: "fail" }, s.health.failedTotal);
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
}
