/**
 * Prometheus metrics for one lb, in its own registry (never prom-client's global one, so
 * several lbs can run side by side in one process).
 *
 * Per request, lb only bumps a counter, a histogram and two try counters, through label
 * children cached by key. Everything that describes the servers (metrics_servers.ts) and
 * the process (metrics_process.ts) is read when Prometheus scrapes, in `collect()` hooks.
 */
import client from "prom-client";
import type { RequestRecord } from "../log.ts";
import type { Pools } from "../routing/pools.ts";
import type { Certificates } from "../tls/certificate.ts";
import type { WebSocketCounts, WebSockets } from "../proxy/websocket.ts";
import { registerProcessMetrics } from "./metrics_process.ts";
import { registerServerMetrics } from "./metrics_servers.ts";
import { totalsText } from "./metrics_totals.ts";
import { RequestSeries } from "./metrics_requests.ts";
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
  /** 5xx answers a backend sent (not lb's own 502/504 after a failed try), by pool and id. */
  responses5xx(pool: string, id: string): number;
  /** The Prometheus text exposition. */
  text(): Promise<string>;
  readonly contentType: string;
}

export interface MetricsOptions {
  pools: Pools;
  version: string;
  /** The listeners' certificates (for their expiry). */
  certificates?: Certificates;
  /** Open WebSockets and their bytes. */
  websockets?: WebSockets;
  /**
   * The other `--workers` processes' metrics (prom-client JSON): `text()` then shows the
   * whole instance (metrics_totals.ts).
   */
  others?: () => Promise<unknown[][]>;
}

/** `code_class` by status / 100 (no string is built per request). */
const CODE_CLASSES = ["0xx", "1xx", "2xx", "3xx", "4xx", "5xx"];

export function createMetrics(opts: MetricsOptions): LbMetrics {
  const registry = new client.Registry();
  const perRequest = registerRequestMetrics(registry, opts.version);
  // Every pool's try counters exist (at 0) from the start, as a pool-less counter would.
  for (const p of opts.pools.list) perRequest.poolChildren(p.name);
  registerServerMetrics(registry, opts.pools);
  if (opts.websockets) registerWebSocketMetrics(registry, opts.websockets);
  const certificates = opts.certificates;
  if (certificates) {
    new client.Gauge({
      name: "lb_tls_certificate_expiry_seconds",
      help: "Seconds until each listener's certificate expires (negative: expired).",
      labelNames: ["listener"] as const,
      registers: [registry],
      collect() {
        this.reset();
        const now = Date.now();
        for (const c of certificates.list()) {
          this.set({ listener: c.listener }, Math.round((c.notAfter.getTime() - now) / 1000));
        }
      },
    });
  }
  registerProcessMetrics(registry);
  // 1 per process; summed over a --workers instance, it says how many processes reported.
  new client.Gauge({
    name: "lb_processes",
    help: "Processes of this lb instance whose metrics this scrape adds up (--workers).",
    registers: [registry],
  }).set(1);
  const reloads = new client.Counter({
    name: "lb_config_reloads_total",
    help: "Config reloads, by result (success or failure).",
    labelNames: ["result"] as const,
    registers: [registry],
  });
  reloads.inc({ result: "success" }, 0);
  reloads.inc({ result: "failure" }, 0);
  return {
    registry,
    contentType: registry.contentType,
    observe: perRequest.observe,
    responses5xx: perRequest.responses5xx,
    reloaded(ok) {
      reloads.inc({ result: ok ? "success" : "failure" });
    },
    async text() {
      if (!opts.others) return await registry.metrics();
      const [own, others] = await Promise.all([registry.getMetricsAsJSON(), opts.others()]);
      return await totalsText([own, ...others]);
    },
  };
}

/** The metrics each finished request updates, through label children cached by key. */
function registerRequestMetrics(registry: client.Registry, version: string) {
  const registers = [registry];
  registerBuildInfo(registry, version);
  const series = new RequestSeries(DURATION_BUCKETS);
  series.register(registry, {
    requests: "Requests answered, by pool and route (none: no route matched), the backend " +
      "that answered (none: no backend was tried), method and status class.",
    duration: "Time from receiving a request to sending the last byte of its answer, by " +
      "pool, route and backend.",
  });
  const poolChildren = tryCounters(registers);
  const dropped = new client.Counter({
    name: "lb_dropped_request_headers_total",
    help:
      "Request headers lb left out, by reason (underscore: a name with _, see underscoreHeaders).",
    labelNames: ["reason"] as const,
    registers,
  });
  dropped.inc({ reason: "underscore" }, 0);
  const limited = new client.Counter({
    name: "lb_rate_limited_total",
    help: "Requests refused with 429 by a route's rate limit, by route.",
    labelNames: ["route"] as const,
    registers,
  });
  const fivexx = new Map<string, number>();
  return {
    observe(rec: RequestRecord) {
      const method = METHODS.has(rec.method) ? rec.method : "OTHER";
      const c = series.cells(
        rec.pool ?? "none",
        rec.route ?? "none",
        rec.backend ?? "none",
        method,
        CODE_CLASSES[Math.floor(rec.status / 100)] ?? "other",
      );
      series.observe(c, rec.durationMs / 1000);
      if (rec.tries > 0) {
        const p = poolChildren(rec.pool ?? "none");
        p.tries += rec.tries;
        if (rec.tries > 1) p.retries += rec.tries - 1;
      }
      if (rec.droppedHeaders) dropped.inc({ reason: "underscore" }, rec.droppedHeaders);
      // lb's own error answers carry rec.error; the pool already counted those failures.
      if (rec.status >= 500 && rec.backend && !rec.error) {
        const key = `${rec.pool}\n${rec.backend}`;
        fivexx.set(key, (fivexx.get(key) ?? 0) + 1);
      }
      if (rec.status === 429 && rec.error && rec.route) limited.inc({ route: rec.route });
    },
    responses5xx: (pool: string, id: string) => fivexx.get(`${pool}\n${id}`) ?? 0,
    poolChildren,
  };
}

/** Tries and retries by pool, through label children cached by pool name. */
/** `lb_build_info{version}`: always 1. */
function registerBuildInfo(registry: client.Registry, version: string): void {
  new client.Gauge({
    name: "lb_build_info",
    help: "Always 1; the labels say which lb is running.",
    labelNames: ["version"],
    registers: [registry],
    collect() {
      this.set({ version }, 1);
    },
  });
}

function tryCounters(registers: client.Registry[]) {
  // Plain numbers per pool, handed to prom-client when it scrapes (no label work per request).
  const perPool = new Map<string, { tries: number; retries: number }>();
  const counter = (
    name: string,
    help: string,
    read: (c: { tries: number; retries: number }) => number,
  ) =>
    new client.Counter({
      name,
      help,
      labelNames: ["pool"] as const,
      registers,
      collect() {
        this.reset();
        for (const [pool, c] of perPool) this.inc({ pool }, read(c));
      },
    });
  counter(
    "lb_upstream_tries_total",
    "Requests sent to backends, counting each retry, by pool.",
    (c) => c.tries,
  );
  counter("lb_retries_total", "Tries beyond the first for a request, by pool.", (c) => c.retries);
  const poolChildren = (pool: string) => {
    let c = perPool.get(pool);
    if (!c) perPool.set(pool, c = { tries: 0, retries: 0 });
    return c;
  };
  return poolChildren;
}

/** WebSockets open now, bytes each way and closes for a slow reader, by pool and backend. */
function registerWebSocketMetrics(registry: client.Registry, ws: WebSockets): void {
  const registers = [registry];
  const each = (fill: (labels: { pool: string; backend: string }, c: WebSocketCounts) => void) => {
    for (const [key, c] of ws.counts) {
      const [pool, backend] = key.split("\n");
      fill({ pool, backend }, c);
    }
  };
  new client.Gauge({
    name: "lb_websockets_open",
    help: "WebSockets open now, by pool and backend.",
    labelNames: ["pool", "backend"] as const,
    registers,
    collect() {
      this.reset();
      each((l, c) => this.set(l, c.open));
    },
  });
  new client.Counter({
    name: "lb_websocket_bytes_total",
    help: "WebSocket message bytes relayed, by pool, backend and direction (in: from clients).",
    labelNames: ["pool", "backend", "direction"] as const,
    registers,
    collect() {
      this.reset();
      each((l, c) => {
        this.inc({ ...l, direction: "in" }, c.bytesIn);
        this.inc({ ...l, direction: "out" }, c.bytesOut);
      });
    },
  });
  new client.Counter({
    name: "lb_websocket_overflows_total",
    help: "WebSockets closed (1013) because a peer stopped reading, by pool and backend.",
    labelNames: ["pool", "backend"] as const,
    registers,
    collect() {
      this.reset();
      each((l, c) => this.inc(l, c.overflows));
    },
  });
}
