/**
 * Metrics read from the server-state maps when Prometheus scrapes (the `collect()` hooks):
 * state, weight, in-flight, latency, ejections, errors and health checks per server of each
 * pool, each pool's strategy, and each route's rate-limit buckets. Nothing here costs
 * anything per request.
 */
import client from "prom-client";
import { stateOf } from "../balancing/availability.ts";
import type { Server, ServerStateName } from "../balancing/server.ts";
import type { Pools } from "../routing/pools.ts";

const STATES: ServerStateName[] = ["healthy", "unhealthy", "ejected", "draining", "disabled"];

type Kind = "gauge" | "counter";

/** A per-backend metric whose value is read from each server at scrape time. */
function perServer(
  registry: client.Registry,
  pools: Pools,
  kind: Kind,
  name: string,
  help: string,
  value: (s: Server) => number,
): void {
  const common = { name, help, labelNames: ["pool", "backend"] as const, registers: [registry] };
  const fill = (put: (labels: { pool: string; backend: string }, v: number) => void) => {
    for (const p of pools.withRetiring) {
      for (const s of p.servers.servers) put({ pool: p.name, backend: s.id }, value(s));
    }
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
export function registerServerMetrics(registry: client.Registry, pools: Pools): void {
  const registers = [registry];
  new client.Gauge({
    name: "lb_requests_in_flight",
    help: "Requests being forwarded to backends now, by pool.",
    labelNames: ["pool"] as const,
    registers,
    collect() {
      this.reset();
      for (const p of pools.withRetiring) {
        let n = 0;
        for (const s of p.servers.servers) n += s.inflight;
        this.set({ pool: p.name }, n);
      }
    },
  });
  const each = perServer.bind(null, registry, pools);
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
    labelNames: ["pool", "backend", "state"] as const,
    registers,
    collect() {
      this.reset();
      const now = Date.now();
      for (const p of pools.withRetiring) {
        for (const s of p.servers.servers) {
          const current = stateOf(s, now);
          for (const state of STATES) {
            this.set({ pool: p.name, backend: s.id, state }, state === current ? 1 : 0);
          }
        }
      }
    },
  });
  new client.Counter({
    name: "lb_health_checks_total",
    help: "Active health checks, by backend and result (pass or fail).",
    labelNames: ["pool", "backend", "result"] as const,
    registers,
    collect() {
      this.reset();
      for (const p of pools.withRetiring) {
        for (const s of p.servers.servers) {
          this.inc({ pool: p.name, backend: s.id, result: "pass" }, s.health.passedTotal);
          this.inc({ pool: p.name, backend: s.id, result: "fail" }, s.health.failedTotal);
        }
      }
    },
  });
  new client.Gauge({
    name: "lb_strategy_info",
    help: "Always 1; the labels name each pool's balancing strategy.",
    labelNames: ["pool", "strategy"] as const,
    registers,
    collect() {
      this.reset();
      for (const p of pools.list) this.set({ pool: p.name, strategy: p.balancer.strategy.name }, 1);
    },
  });
  new client.Gauge({
    name: "lb_rate_limit_keys",
    help: "Rate-limit buckets each route holds now (bounded by its rateLimit.maxKeys).",
    labelNames: ["route"] as const,
    registers,
    collect() {
      this.reset();
      for (const r of pools.router.routes) {
        const limiter = r.target.limiter;
        if (limiter) this.set({ route: r.config.name }, limiter.size);
      }
    },
  });
}
