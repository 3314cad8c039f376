/**
 * The active health loop (HAProxy's checks): per server, `GET health.path` every
 * `health.interval` (±10 % jitter so checks do not align), healthy when the status is in
 * `health.expectStatus`; `ServerPool.recordHealth` applies rise/fall and emits the state
 * events that lb logs. Passive ejection (outlier detection) lives in outlier.ts.
 *
 * Each check opens a fresh connection (`Connection: close`, no pooling), like HAProxy: it
 * proves that a new connection can be made, and a pooled socket the server closed while
 * idle can never turn into a false failure. A check never overlaps the previous one for
 * the same server: the next is scheduled only once the previous has finished.
 *
 * @example
 * ```ts
 * const checks = startHealthChecks(pool, config.health, logger);
 * // … later, on shutdown:
 * await checks.stop();
 * ```
 */
import type { Config } from "../config/config.ts";
import { Http1Conn, latin1Bytes, requestHead } from "../proxy/http1.ts";
import type { Logger } from "../log.ts";
import type { Server, ServerPool } from "./pool.ts";

export interface HealthCheckOptions {
  /** Uniform numbers in [0, 1) for the jitter. Default `Math.random`. */
  random?: () => number;
}

export interface HealthChecks {
  /** Clears every timer and aborts checks in flight; resolves once they have all ended. */
  stop(): Promise<void>;
}

/** What one check found: whether it passed, and the status code or error for the log. */
export interface CheckResult {
  ok: boolean;
  detail: string;
}

/** Whether `status` falls in one of the `[from, to]` ranges. */
export function statusExpected(status: number, ranges: readonly [number, number][]): boolean {
  return ranges.some(([a, b]) => status >= a && status <= b);
}

/**
 * Runs one health check against `server`: `GET path` on a new connection, bounded by
 * `timeout` ms for the whole exchange (connect, headers and body). Never rejects.
 */
export async function checkOnce(
  server: Server,
  cfg: Config["health"],
  signal: AbortSignal,
): Promise<CheckResult> {
  let why = "";
  let conn: Http1Conn | undefined;
  const connecting = new AbortController();
  const stop = (detail: string) => {
    if (why) return;
    why = detail;
    connecting.abort();
    conn?.close();
  };
  const timer = setTimeout(() => stop(`no answer within ${cfg.timeout}ms`), cfg.timeout);
  const onAbort = () => stop("check cancelled");
  signal.addEventListener("abort", onAbort);
  if (signal.aborted) onAbort();
  try {
    const tcp = await Deno.connect({
      hostname: server.hostname,
      port: server.port,
      signal: connecting.signal,
    });
    conn = new Http1Conn(tcp);
    if (why) return { ok: false, detail: why };
    const host = server.hostname.includes(":") ? `[${server.hostname}]` : server.hostname;
    await conn.write(latin1Bytes(requestHead(
      "GET",
      cfg.path,
      {
        host: `${host}:${server.port}`,
        "user-agent": "lb-health-check",
        connection: "close",
      },
      false,
      0,
    )));
    const head = await conn.readHead("GET");
    // Health bodies are tiny: read it to the end so the server sees a clean exchange,
    // within the same timeout. A body that breaks off does not change the verdict.
    try {
      while ((await conn.readBody()) !== null) { /* discard */ }
    } catch {
      if (why) return { ok: false, detail: why };
    }
    return { ok: statusExpected(head.status, cfg.expectStatus), detail: `status ${head.status}` };
  } catch (e) {
    if (why) return { ok: false, detail: why };
    if (e instanceof Deno.errors.ConnectionRefused) {
      return { ok: false, detail: "connection refused" };
    }
    return { ok: false, detail: e instanceof Error ? e.message : String(e) };
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
    conn?.close();
  }
}

interface Checker {
  timer?: ReturnType<typeof setTimeout>;
  abort: AbortController;
  /** The check in flight, if any. */
  running?: Promise<void>;
  stopped: boolean;
}

/**
 * Starts active health checks for every server in `pool`, and for servers added later;
 * checks of removed servers stop. With `cfg.enabled` false it does nothing.
 */
export function startHealthChecks(
  pool: ServerPool,
  cfg: Config["health"],
  logger: Logger,
  opts: HealthCheckOptions = {},
): HealthChecks {
  if (!cfg.enabled) return { stop: () => Promise.resolve() };
  const random = opts.random ?? Math.random;
  const checkers = new Map<Server, Checker>();
  /** Checks of removed servers still winding down, so `stop` can wait for them. */
  const halting = new Set<Promise<void>>();
  const jittered = () => cfg.interval * (0.9 + 0.2 * random());

  const schedule = (s: Server, c: Checker, ms: number) => {
    if (c.stopped) return;
    c.timer = setTimeout(() => {
      c.timer = undefined;
      c.running = run(s, c);
    }, ms);
  };

  const run = async (s: Server, c: Checker) => {
    try {
      const r = await checkOnce(s, cfg, c.abort.signal);
      if (c.stopped) return;
      pool.recordHealth(s, r.ok, r.detail, cfg.rise, cfg.fall);
    } catch (e) {
      // recordHealth runs listeners; one that throws must not end this server's checks.
      logger.error(`health check of ${s.id} failed: ${(e as Error)?.message ?? e}`, {
        server: s.id,
      });
    } finally {
      c.running = undefined;
      schedule(s, c, jittered());
    }
  };

  const start = (s: Server) => {
    const c: Checker = { abort: new AbortController(), stopped: false };
    checkers.set(s, c);
    // The first check comes soon (servers that start unhealthy wait for rise checks), spread
    // over a tenth of the interval so a large pool does not check everything at once.
    schedule(s, c, cfg.interval * 0.1 * random());
  };

  const halt = (s: Server, c: Checker): Promise<void> => {
    c.stopped = true;
    clearTimeout(c.timer);
    c.abort.abort();
    checkers.delete(s);
    return c.running ?? Promise.resolve();
  };

  const sync = () => {
    const live = new Set(pool.servers);
    for (const [s, c] of checkers) {
      if (live.has(s)) continue;
      const p = halt(s, c).then(() => void halting.delete(p));
      halting.add(p);
    }
    for (const s of live) if (!checkers.has(s)) start(s);
  };

  for (const s of pool.servers) start(s);
  const unsubscribe = pool.subscribe((e) => {
    if (e.type === "membership") sync();
  });

  let stopping: Promise<void> | undefined;
  return {
    stop() {
      return stopping ??= (async () => {
        unsubscribe();
        await Promise.all([...[...checkers].map(([s, c]) => halt(s, c)), ...halting]);
      })();
    },
  };
}
