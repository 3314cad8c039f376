/**
 * The active health loop (HAProxy's checks): per server, `GET health.path` every
 * `health.interval` (±10 % jitter so checks do not align), healthy when the status is in
 * `health.expectStatus`; `ServerPool.recordHealth` applies rise/fall and emits the state
 * events that lb logs. Passive ejection (outlier detection) lives in outlier.ts.
 *
 * Each check opens a fresh connection (`Connection: close`, no pooling), like HAProxy: it
 * proves that a new connection can be made, and a pooled socket the server closed while
 * idle can never turn into a false failure. An https:// backend is checked over TLS with
 * its pool's settings, the ones its traffic uses: a certificate lb refuses fails the check.
 * A check never overlaps the previous one for the same server: the next is scheduled only
 * once the previous has finished.
 *
 * In a cluster a {@link HealthShare} (cluster/health_share.ts) splits the work: this loop
 * checks only the servers the share says it should (those this instance owns, and those
 * whose owner's result is missing), hands it each result to publish, and records the
 * results other instances published, which the share reads, as checks of its own.
 *
 * @example
 * ```ts
 * const checks = startHealthChecks(pool, config.health, logger);
 * // … later, on shutdown:
 * await checks.stop();
 * ```
 */
import type { Config } from "../config/schema.ts";
import { Http1Conn, latin1Bytes, requestHead } from "../proxy/http1.ts";
import { Connector } from "../proxy/upstream_connect.ts";
import type { Logger } from "../log.ts";
import type { ServerPool } from "./pool.ts";
import type { Server } from "./server.ts";

export interface HealthCheckOptions {
  /** Uniform numbers in [0, 1) for the jitter. Default `Math.random`. */
  random?: () => number;
  /** Opens each check's connection: the pool's current TLS settings. Default: no files. */
  connector?: () => Connector;
  /** Shares checks with other instances; default: this instance checks every server. */
  share?: HealthShare;
}

/**
 * Health checks shared by a cluster: each server is checked by one instance, which
 * publishes its results; the others record those. Implemented in cluster/health_share.ts.
 */
export interface HealthShare {
  /** Called once as the loop starts: the share records others' results through `feed`. */
  start(feed: HealthFeed): void;
  /** Whether this instance checks `s` itself now (asked before each of its checks). */
  checks(s: Server): boolean;
  /** A check this instance made of `s` (published when it owns `s`). */
  publish(s: Server, r: CheckResult): void;
  /** Stops reading and publishing; resolves once nothing is in flight. */
  stop(): Promise<void>;
}

/** What the health loop gives its {@link HealthShare}. */
export interface HealthFeed {
  /** The pool's `health.interval` and `health.timeout` (ms). */
  interval: number;
  timeout: number;
  /** The pool's servers now. */
  servers(): readonly Server[];
  /** Records a result another instance published, as one check (rise/fall apply). */
  record(s: Server, r: CheckResult): void;
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

const NO_FILES = new Connector();

/**
 * Runs one health check against `server`: `GET path` on a new connection (made by
 * `connector`), bounded by `timeout` ms for the whole exchange (connect, TLS handshake,
 * headers and body). Never rejects.
 */
export async function checkOnce(
  server: Server,
  cfg: Config["health"],
  signal: AbortSignal,
  connector: Connector = NO_FILES,
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
    conn = new Http1Conn(await connector.open(server, connecting.signal));
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
  const connector = opts.connector ?? (() => NO_FILES);
  const { share } = opts;
  const loop = new HealthLoop(pool, cfg, logger, opts.random ?? Math.random, connector, share);
  share?.start({
    interval: cfg.interval,
    timeout: cfg.timeout,
    servers: () => pool.servers,
    record: (s, r) => loop.record(s, r),
  });
  for (const s of pool.servers) loop.start(s);
  const unsubscribe = pool.subscribe((e) => {
    if (e.type === "membership") loop.sync();
  });
  let stopping: Promise<void> | undefined;
  return {
    stop() {
      unsubscribe();
      return stopping ??= Promise.all([loop.stopAll(), share?.stop()]).then(() => {});
    },
  };
}

/** One checker per server, each scheduling its next check when the last has finished. */
class HealthLoop {
  readonly #checkers = new Map<Server, Checker>();
  /** Checks of removed servers still winding down, so `stopAll` can wait for them. */
  readonly #halting = new Set<Promise<void>>();

  constructor(
    readonly pool: ServerPool,
    readonly cfg: Config["health"],
    readonly logger: Logger,
    readonly random: () => number,
    readonly connector: () => Connector,
    readonly share: HealthShare | undefined,
  ) {}

  /**
   * The first check comes soon (servers that start unhealthy wait for rise checks), spread
   * over a tenth of the interval so a large pool does not check everything at once.
   */
  start(s: Server): void {
    const c: Checker = { abort: new AbortController(), stopped: false };
    this.#checkers.set(s, c);
    this.#schedule(s, c, this.cfg.interval * 0.1 * this.random());
  }

  /** Starts checkers for new servers and stops those of removed ones. */
  sync(): void {
    const live = new Set(this.pool.servers);
    for (const [s, c] of this.#checkers) {
      if (live.has(s)) continue;
      const p = this.#halt(s, c).then(() => void this.#halting.delete(p));
      this.#halting.add(p);
    }
    for (const s of live) if (!this.#checkers.has(s)) this.start(s);
  }

  /** Clears every timer and aborts checks in flight; resolves once they have all ended. */
  async stopAll(): Promise<void> {
    const halts = [...this.#checkers].map(([s, c]) => this.#halt(s, c));
    await Promise.all([...halts, ...this.#halting]);
  }

  /** Interval with ±10 % jitter, so checks of many servers do not align. */
  #jittered(): number {
    return this.cfg.interval * (0.9 + 0.2 * this.random());
  }

  #schedule(s: Server, c: Checker, ms: number): void {
    if (c.stopped) return;
    c.timer = setTimeout(() => {
      c.timer = undefined;
      c.running = this.#run(s, c);
    }, ms);
  }

  /** Records a check's result (this loop's or, through the share, another instance's). */
  record(s: Server, r: CheckResult): void {
    if (s.removed) return;
    const { cfg } = this;
    try {
      this.pool.recordHealth(s, r.ok, r.detail, cfg.rise, cfg.fall);
    } catch (e) {
      // recordHealth runs listeners; one that throws must not end this server's checks.
      const why = e instanceof Error ? e.message : String(e);
      this.logger.error(`health check of ${s.id} failed: ${why}`, { server: s.id });
    }
  }

  async #run(s: Server, c: Checker): Promise<void> {
    const { share } = this;
    try {
      // Another instance checks it: its results arrive through the share's feed.
      if (share !== undefined && !share.checks(s)) return;
      const r = await checkOnce(s, this.cfg, c.abort.signal, this.connector());
      if (c.stopped) return;
      this.record(s, r);
      share?.publish(s, r);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      this.logger.error(`health check of ${s.id} failed: ${why}`, { server: s.id });
    } finally {
      c.running = undefined;
      this.#schedule(s, c, this.#jittered());
    }
  }

  #halt(s: Server, c: Checker): Promise<void> {
    c.stopped = true;
    clearTimeout(c.timer);
    c.abort.abort();
    this.#checkers.delete(s);
    return c.running ?? Promise.resolve();
  }
}
