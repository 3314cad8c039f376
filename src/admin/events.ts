/**
 * `GET /events`: Server-Sent Events for the dashboard and for anyone with `curl -N`.
 *
 * - `history` once on connect: per-second samples of the last minutes (requests, errors,
 *   latency, in-flight per server), so a freshly opened dashboard has a chart at once;
 * - `snapshot` every second and after every admin change: the pools, their strategies and
 *   every server;
 * - `state` as it happens: a server's state changed (health, ejection, drain…).
 *
 * One timer per lb takes the samples; clients only add a stream. A client that stops
 * reading is dropped instead of buffering without bound.
 */
import type { Control } from "../control/control.ts";
import type { PoolRuntime } from "../routing/pool_runtime.ts";
import {
  type CertificateView,
  type ServerView,
  serverView,
  type ViewSources,
} from "./server_view.ts";

import type { ClusterView } from "./cluster_view.ts";

export interface Snapshot {
  time: number;
  version: string;
  uptimeSeconds: number;
  /** The first pool's strategy (the one strategy of a config without pools). */
  strategy: { name: string; options: Record<string, unknown> };
  /** Every pool's servers, in pool order; each view names its pool. */
  servers: ServerView[];
  pools: PoolSummary[];
  /** Each TLS listener's certificate: subject, names, expiry. */
  tls: CertificateView[];
  /**
   * Changes each time the routing table is replaced (a reload with other routes), so a page
   * knows when to fetch `/api/routes` again instead of polling it. Counts from 1 per lb.
   */
  routesVersion: number;
  /** The cluster this lb is part of (`{enabled: false}` without one). */
  cluster: ClusterView;
}

export interface PoolSummary {
  name: string;
  strategy: { name: string; options: Record<string, unknown> };
  sticky: { cookie: string } | null;
  servers: number;
}

/**
 * One per-second sample: `[pool/id, requests, errors, latencyEwmaMs, inflight]` per server,
 * where errors counts failed tries and 5xx answers together.
 */
export interface Sample {
  t: number;
  s: [string, number, number, number, number][];
}

export interface EventHubOptions {
  control: Control;
  version: string;
  startedAt: number;
  /** Snapshot and sample period (ms). Default 1000. */
  intervalMs?: number;
  /** Samples kept for `history`. Default 300 (five minutes at 1 s). */
  historySize?: number;
  /** Where server views find drains and 5xx counts. Default: the control's drains, no 5xx. */
  sources?: ViewSources;
  /** The listeners' certificates. */
  tls?: () => CertificateView[];
  /** The cluster and its members. */
  cluster?: () => ClusterView;
}

const enc = new TextEncoder();
/** Chunks a client may leave unread before it is dropped. */
const MAX_QUEUED = 64;
/** Open /events streams at once; more are refused with 503. */
export const MAX_CLIENTS = 64;

export class EventHub {
  #opts: EventHubOptions;
  #sources: ViewSources;
  #clients = new Set<ReadableStreamDefaultController<Uint8Array>>();
  #history: Sample[] = [];
  #timer: ReturnType<typeof setInterval>;
  #unsubscribe: (() => void)[] = [];
  /** The pools whose state events this hub follows (reload adds and removes pools). */
  #following = new Map<PoolRuntime, () => void>();
  #pending = false;
  #closed = false;
  /** The routing table the last snapshot saw, and how many tables there have been. */
  #router: unknown;
  #routesVersion = 0;

  constructor(opts: EventHubOptions) {
    this.#opts = opts;
    this.#sources = opts.sources ??
      { removing: (s) => opts.control.drains.has(s), responses5xx: () => 0 };
    this.#timer = setInterval(() => this.#tick(), opts.intervalMs ?? 1000);
    this.#follow();
    this.#unsubscribe.push(opts.control.onChange(() => {
      this.#follow();
      this.#soon();
    }));
  }

  /** Follows the state events of every pool there is now, and no others. */
  #follow(): void {
    const pools = new Set(this.#opts.control.pools.list);
    for (const [p, stop] of this.#following) {
      if (!pools.has(p)) (stop(), this.#following.delete(p));
    }
    for (const p of pools) {
      if (this.#following.has(p)) continue;
      this.#following.set(
        p,
        p.servers.subscribe((e) => {
          if (e.type !== "state") return this.#soon();
          const { server, from, to, reason } = e;
          const time = Date.now();
          this.#broadcast("state", { time, pool: p.name, server: server.id, from, to, reason });
        }),
      );
    }
  }

  get clients(): number {
    return this.#clients.size;
  }

  snapshot(now = Date.now()): Snapshot {
    const { control } = this.#opts;
    const pools = control.pools.list;
    const strategyOf = (p: PoolRuntime) => {
      const st = control.strategy(p);
      return { name: st.name, options: { ...st.options } };
    };
    return {
      time: now,
      version: this.#opts.version,
      uptimeSeconds: Math.round((now - this.#opts.startedAt) / 1000),
      strategy: strategyOf(pools[0]),
      servers: pools.flatMap((p) =>
        p.servers.servers.map((s) => serverView(p.name, s, this.#sources, now))
      ),
      pools: pools.map((p) => ({
        name: p.name,
        strategy: strategyOf(p),
        sticky: p.sticky ? { cookie: p.sticky.cookie } : null,
        servers: p.servers.servers.length,
      })),
      tls: this.#opts.tls?.() ?? [],
      routesVersion: this.#routesVersionNow(),
      cluster: this.#opts.cluster?.() ?? { enabled: false },
    };
  }

  /** Reload replaces the router only when the routes differ, so a new router is a new table. */
  #routesVersionNow(): number {
    const router = this.#opts.control.pools.router;
    if (router !== this.#router) (this.#router = router, this.#routesVersion++);
    return this.#routesVersion;
  }

  #tick(): void {
    const now = Date.now();
    const s: Sample["s"] = [];
    for (const p of this.#opts.control.pools.list) {
      for (const x of p.servers.servers) {
        s.push([
          `${p.name}/${x.id}`,
          x.requests,
          x.errors + this.#sources.responses5xx(p.name, x),
          Math.round(x.latency.value * 100) / 100,
          x.inflight,
        ]);
      }
    }
    this.#history.push({ t: now, s });
    const max = this.#opts.historySize ?? 300;
    if (this.#history.length > max) this.#history.splice(0, this.#history.length - max);
    if (this.#clients.size) this.#broadcast("snapshot", this.snapshot(now));
  }

  /** A snapshot soon (once per burst of changes). */
  #soon(): void {
    if (this.#pending || !this.#clients.size) return;
    this.#pending = true;
    queueMicrotask(() => {
      this.#pending = false;
      if (!this.#closed) this.#broadcast("snapshot", this.snapshot());
    });
  }

  #frame(event: string, data: unknown): Uint8Array {
    return enc.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  #broadcast(event: string, data: unknown): void {
    if (!this.#clients.size) return;
    const frame = this.#frame(event, data);
    for (const c of this.#clients) this.#send(c, frame);
  }

  #send(c: ReadableStreamDefaultController<Uint8Array>, frame: Uint8Array): void {
    if ((c.desiredSize ?? 0) < -MAX_QUEUED) {
      this.#drop(c);
      return;
    }
    try {
      c.enqueue(frame);
    } catch {
      this.#clients.delete(c);
    }
  }

  #drop(c: ReadableStreamDefaultController<Uint8Array>): void {
    this.#clients.delete(c);
    try {
      c.close();
    } catch {
      // already closed or errored
    }
  }

  /** The `text/event-stream` response for one client (503 when too many are open). */
  response(): Response {
    if (this.#clients.size >= MAX_CLIENTS) {
      return Response.json({
        error: {
          status: 503,
          code: "too_many_streams",
          message: `at most ${MAX_CLIENTS} /events streams may be open at once`,
        },
      }, { status: 503, headers: { "retry-after": "5" } });
    }
    let controller: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start: (c) => {
        controller = c;
        if (this.#closed) {
          c.close();
          return;
        }
        this.#clients.add(c);
        c.enqueue(enc.encode("retry: 2000\n\n"));
        c.enqueue(this.#frame("history", this.#history));
        c.enqueue(this.#frame("snapshot", this.snapshot()));
      },
      cancel: () => {
        this.#clients.delete(controller);
      },
    });
    return new Response(body, {
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
      },
    });
  }

  /** Ends every client's stream and stops the timer. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    for (const u of this.#unsubscribe) u();
    for (const stop of this.#following.values()) stop();
    for (const c of [...this.#clients]) this.#drop(c);
  }
}
