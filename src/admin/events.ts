/**
 * `GET /events`: Server-Sent Events for the dashboard and for anyone with `curl -N`.
 *
 * - `history` once on connect: per-second samples of the last minutes (requests, errors,
 *   latency, in-flight per server), so a freshly opened dashboard has a chart at once;
 * - `snapshot` every second and after every admin change: the strategy and every server;
 * - `state` as it happens: a server's state changed (health, ejection, drain…).
 *
 * One timer per lb takes the samples; clients only add a stream. A client that stops
 * reading is dropped instead of buffering without bound.
 */
import type { ServerPool } from "../balancing/pool.ts";
import type { Control } from "../control/control.ts";
import { type ServerView, serverView, type ViewSources } from "./server_view.ts";

export interface Snapshot {
  time: number;
  version: string;
  uptimeSeconds: number;
  strategy: { name: string; options: Record<string, unknown> };
  servers: ServerView[];
}

/**
 * One per-second sample: `[id, requests, errors, latencyEwmaMs, inflight]` per server, where
 * errors counts failed tries and 5xx answers together.
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
}

const enc = new TextEncoder();
/** Chunks a client may leave unread before it is dropped. */
const MAX_QUEUED = 64;
/** Open /events streams at once; more are refused with 503. */
export const MAX_CLIENTS = 64;

export class EventHub {
  #opts: EventHubOptions;
  #pool: ServerPool;
  #sources: ViewSources;
  #clients = new Set<ReadableStreamDefaultController<Uint8Array>>();
  #history: Sample[] = [];
  #timer: ReturnType<typeof setInterval>;
  #unsubscribe: (() => void)[] = [];
  #pending = false;
  #closed = false;

  constructor(opts: EventHubOptions) {
    this.#opts = opts;
    this.#pool = opts.control.pool;
    this.#sources = opts.sources ??
      { removing: (s) => opts.control.drains.has(s), responses5xx: () => 0 };
    this.#timer = setInterval(() => this.#tick(), opts.intervalMs ?? 1000);
    this.#unsubscribe.push(
      this.#pool.subscribe((e) => {
        if (e.type === "state") {
          this.#broadcast("state", {
            time: Date.now(),
            server: e.server.id,
            from: e.from,
            to: e.to,
            reason: e.reason,
          });
        } else this.#soon();
      }),
      opts.control.onChange(() => this.#soon()),
    );
  }

  get clients(): number {
    return this.#clients.size;
  }

  snapshot(now = Date.now()): Snapshot {
    const { control } = this.#opts;
    const st = control.strategy();
    return {
      time: now,
      version: this.#opts.version,
      uptimeSeconds: Math.round((now - this.#opts.startedAt) / 1000),
      strategy: { name: st.name, options: { ...st.options } },
      servers: this.#pool.servers.map((s) => serverView(s, this.#sources, now)),
    };
  }

  #tick(): void {
    const now = Date.now();
    this.#history.push({
      t: now,
      s: this.#pool.servers.map((x) => [
        x.id,
        x.requests,
        x.errors + this.#sources.responses5xx(x),
        Math.round(x.latency.value * 100) / 100,
        x.inflight,
      ]),
    });
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
    for (const c of [...this.#clients]) this.#drop(c);
  }
}
