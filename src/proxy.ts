/**
 * Forward one try of a request to one server, and stream the answer back.
 *
 * The upstream client is `node:http`, not `fetch`: Deno's fetch decompresses every gzip or
 * br response whose request did not say `Accept-Encoding: identity` and offers no way to
 * turn that off (denoland/deno#12291), so a proxy built on it cannot pass bytes through
 * unchanged. node:http sends exactly the headers it is given (no invented Accept,
 * User-Agent or Accept-Encoding), keeps the client's Host, returns raw headers with
 * repeated Set-Cookie intact, rejects bad framing from backends with a parse error,
 * reports a body cut short, and lets lb hold back a request body until the connection is
 * up, so a refused connection never consumes a byte of it.
 */
import http, { type IncomingMessage, type OutgoingHttpHeaders } from "node:http";
import type { Socket } from "node:net";
import { type BodySource, BodyTooLargeError, ClientBodyError } from "./body.ts";
import type { Server } from "./state.ts";

export interface UpstreamOptions {
  /** Time to establish a new connection (ms). */
  connectTimeout: number;
  /** Time to response headers (ms), connecting included. */
  headerTimeout: number;
  /** Longest silence on the upstream socket once headers arrived, either direction (ms). */
  idleTimeout: number;
  /** Idle keep-alive connections are closed after this (ms). */
  poolIdleTimeout: number;
}

/** Why a try failed, which decides whether it may be retried. */
export type TryFailure =
  /** No connection: nothing reached the server. Safe to retry for every method. */
  | "connect"
  /** A reused keep-alive connection was closed by the server before any response byte. */
  | "stale"
  /** The connection broke after it was up, before any response byte. */
  | "reset"
  /** No response headers within the header timeout, or the socket fell silent. */
  | "timeout"
  /** The server's response could not be parsed (bad framing). */
  | "protocol"
  /** The client's body exceeded limits.maxBodyBytes. */
  | "too-large"
  /** The client went away. */
  | "client"
  /** The client's body was malformed (e.g. bad chunked framing in the middle). */
  | "bad-request";

export type TryResult =
  | { ok: true; res: IncomingMessage }
  | { ok: false; failure: TryFailure; message: string };

const CONNECT_CODES = new Set([
  "ECONNREFUSED",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EADDRNOTAVAIL",
]);

/** When a pooled socket became idle (performance.now()). */
const IDLE_SINCE = Symbol("lb.idleSince");
type IdleSocket = Socket & { [IDLE_SINCE]?: number };

type NodeTimeout = ReturnType<typeof setTimeout> & { refresh(): unknown; unref(): unknown };

/** A timer that is re-armed with `refresh()` and handed from request to request. */
interface PooledTimer {
  handle: NodeTimeout;
  /** What to run when it fires; null while it waits in the pool. */
  fire: (() => void) | null;
  pool: TimerPool | null;
}

/**
 * Timers of one fixed delay, reused. Creating and clearing a timer costs about 1.2 µs in
 * Deno 2.9, re-arming one with `refresh()` about 0.1 µs; with two deadlines per request that
 * difference was several percent of lb's CPU. A timer returned to the pool is not cleared
 * (a cleared timer cannot be refreshed): it may still fire, and then does nothing.
 */
class TimerPool {
  #free: PooledTimer[] = [];
  #all: PooledTimer[] = [];

  constructor(readonly ms: number) {}

  acquire(fire: () => void): PooledTimer {
    let t = this.#free.pop();
    if (t === undefined) {
      const created: PooledTimer = { handle: undefined!, fire: null, pool: this };
      created.handle = setTimeout(() => created.fire?.(), this.ms) as NodeTimeout;
      // Pooled timers never keep the process alive by themselves; a request in flight does.
      created.handle.unref();
      this.#all.push(created);
      t = created;
    } else t.handle.refresh();
    t.fire = fire;
    return t;
  }

  release(t: PooledTimer): void {
    t.fire = null;
    this.#free.push(t);
  }

  close(): void {
    for (const t of this.#all) clearTimeout(t.handle);
    this.#all = [];
    this.#free = [];
  }
}

/**
 * One deadline at a time for one request: a connect or header deadline (`arm`), or an idle
 * deadline (`idle`) for which body chunks only bump a counter; when the timer fires it
 * re-arms itself if there was activity since, so a streaming body costs no timer work per
 * chunk.
 */
class Watchdog {
  #timer: PooledTimer | undefined;
  activity = 0;

  constructor(readonly timers: (ms: number) => TimerPool | undefined) {}

  arm(ms: number, fire: () => void): void {
    this.clear();
    const pool = this.timers(ms);
    if (pool) this.#timer = pool.acquire(fire);
    else {
      // An unusual delay (a request's remaining overall deadline): a plain one-off timer.
      const t: PooledTimer = {
        handle: setTimeout(() => t.fire?.(), ms) as NodeTimeout,
        fire,
        pool: null,
      };
      this.#timer = t;
    }
  }

  /** From now on: fire `expire` after `ms` without activity. */
  idle(ms: number, expire: () => void): void {
    let seen = this.activity;
    this.arm(ms, () => {
      if (this.activity === seen) return expire();
      seen = this.activity;
      this.#timer?.handle.refresh();
    });
  }

  clear(): void {
    const t = this.#timer;
    if (t === undefined) return;
    this.#timer = undefined;
    if (t.pool) t.pool.release(t);
    else {
      t.fire = null;
      clearTimeout(t.handle);
    }
  }
}

/**
 * The upstream side of one lb instance: a keep-alive connection pool, and the timeouts of
 * every try and response body.
 *
 * The pool's idle timeout is enforced by one pruning timer rather than node's per-socket
 * timeouts (which the agent's own `timeout` option would reset on every reuse): node timers
 * were a measurable share of the per-request cost.
 */
export class Upstream {
  readonly agent: http.Agent;
  #pruneTimer: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  #pools: Map<number, TimerPool>;
  readonly #timers = (ms: number) => this.#pools.get(ms);

  constructor(readonly opts: UpstreamOptions) {
    this.agent = new http.Agent({ keepAlive: true, scheduling: "lifo" });
    this.#pools = new Map(
      [opts.connectTimeout, opts.headerTimeout, opts.idleTimeout].map((
        ms,
      ) => [ms, new TimerPool(ms)]),
    );
    // Idle pooled connections are closed after poolIdleTimeout, which must stay below the
    // backends' own keep-alive timeout (else: random stale-connection errors).
    this.agent.on("free", (sock: Socket) => {
      (sock as IdleSocket)[IDLE_SINCE] = performance.now();
      if (this.#pruneTimer === undefined && !this.#closed) {
        const every = Math.max(50, Math.min(1000, opts.poolIdleTimeout / 4));
        this.#pruneTimer = setInterval(() => this.#prune(), every);
      }
    });
  }

  #prune(): void {
    const now = performance.now();
    let left = 0;
    for (const list of Object.values(this.agent.freeSockets)) {
      for (const sock of list ?? []) {
        if (now - ((sock as IdleSocket)[IDLE_SINCE] ?? now) >= this.opts.poolIdleTimeout) {
          sock.destroy();
        } else left++;
      }
    }
    if (left === 0) {
      clearInterval(this.#pruneTimer);
      this.#pruneTimer = undefined;
    }
  }

  /** Stops the pruning timer and closes every pooled connection. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#pruneTimer);
    this.#pruneTimer = undefined;
    for (const pool of this.#pools.values()) pool.close();
    this.agent.destroy();
  }

  /**
   * Sends one try to `server`. Resolves when response headers arrive or the try fails;
   * never rejects. The request body (if any) is written only once the connection is up.
   */
  try(
    server: Server,
    method: string,
    path: string,
    headers: OutgoingHttpHeaders,
    body: BodySource | null,
    signal: AbortSignal,
    headerTimeout = this.opts.headerTimeout,
  ): Promise<TryResult> {
    const opts = this.opts;
    return new Promise((resolve) => {
      let settled = false;
      let connected = false;
      let reused = false;
      let sockets = 0;
      let newConnection = false;
      const creq = http.request({
        host: server.hostname,
        port: server.port,
        method,
        path,
        headers,
        agent: this.agent,
        setHost: false,
      });
      const started = performance.now();
      const watchdog = new Watchdog(this.#timers);
      const expired = () =>
        connected ? fail("timeout", `no response headers within ${headerTimeout}ms`) : fail(
          "connect",
          `no connection to ${server.url} within ${Math.round(performance.now() - started)}ms`,
        );
      const finish = (r: TryResult) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener("abort", onAbort);
        watchdog.clear();
        if (!r.ok) creq.destroy();
        resolve(r);
      };
      const fail = (failure: TryFailure, message: string) =>
        finish({ ok: false, failure, message });
      const onAbort = () => fail("client", "client went away");
      signal.addEventListener("abort", onAbort);
      watchdog.arm(headerTimeout, expired);

      creq.on("socket", (sock: Socket) => {
        // Deno's node:http silently re-sends a request on a new connection when a reused one
        // dies before any response byte, and says so only by a second "socket" event. lb's
        // own retry rules (and its body buffer) decide instead.
        if (++sockets > 1) {
          fail("stale", `kept-alive connection to ${server.url} was closed`);
          return;
        }
        reused = creq.reusedSocket;
        const start = () => {
          if (settled) return;
          if (newConnection && opts.connectTimeout < headerTimeout) {
            // Connected: back to the header deadline, counted from the start of the try.
            watchdog.arm(Math.max(1, started + headerTimeout - performance.now()), expired);
          }
          connected = true;
          if (body) {
            pump(body, creq).catch((e) => {
              if (e instanceof BodyTooLargeError) fail("too-large", e.message);
              else if (e instanceof ClientBodyError) {
                fail(e.malformed ? "bad-request" : "client", e.message);
              }
              // Write errors surface as creq "error" events.
            });
          }
        };
        if (sock.connecting) {
          // A new connection gets the (usually shorter) connect deadline first.
          newConnection = true;
          if (opts.connectTimeout < headerTimeout) watchdog.arm(opts.connectTimeout, expired);
          sock.once("connect", start);
        } else start();
      });
      creq.on("response", (res) => {
        if (settled) res.destroy();
        else finish({ ok: true, res });
      });
      creq.on("error", (e: Error & { code?: string }) => {
        if (settled) return;
        const code = e.code ?? "";
        if (!connected || CONNECT_CODES.has(code)) {
          fail("connect", `cannot connect to ${server.url}: ${code || e.message}`);
        } else if (code.startsWith("HPE_")) {
          fail("protocol", `invalid response from ${server.url}: ${e.message}`);
        } else if (reused) {
          fail("stale", `kept-alive connection to ${server.url} was closed: ${code || e.message}`);
        } else fail("reset", `connection to ${server.url} failed: ${code || e.message}`);
      });
      if (!body) creq.end();
    });
  }

  /**
   * Reads a small response body whole (its Content-Length is known and small), as nginx's
   * proxy_buffering does: handing Deno.serve one finished buffer skips the stream machinery,
   * and a body cut short becomes a clean 502 instead of an aborted connection. Resolves the
   * bytes, or an error message when the body broke off or fell silent.
   */
  collect(res: IncomingMessage, length: number): Promise<Uint8Array<ArrayBuffer> | string> {
    return new Promise((resolve) => {
      const watchdog = new Watchdog(this.#timers);
      const chunks: Uint8Array[] = [];
      let got = 0;
      let done = false;
      const finish = (r: Uint8Array<ArrayBuffer> | string) => {
        if (done) return;
        done = true;
        watchdog.clear();
        resolve(r);
      };
      watchdog.idle(this.opts.idleTimeout, () => {
        finish("upstream idle timeout");
        res.destroy();
      });
      res.on("data", (chunk: Uint8Array) => {
        watchdog.activity++;
        chunks.push(chunk);
        got += chunk.byteLength;
      });
      res.on("end", () => {
        if (!res.complete || got !== length) return finish("upstream closed mid-body");
        if (chunks.length === 1) return finish(chunks[0] as Uint8Array<ArrayBuffer>);
        const body = new Uint8Array(got);
        let at = 0;
        for (const c of chunks) {
          body.set(c, at);
          at += c.byteLength;
        }
        finish(body);
      });
      res.on("error", () => finish("upstream closed mid-body"));
      res.on("close", () => finish("upstream closed mid-body"));
    });
  }

  /**
   * The upstream response body as a web stream with backpressure. `onEnd` runs once, with
   * whether the body arrived complete and how many bytes passed. A body cut short, or silent
   * for longer than the idle timeout, makes the stream error, so Deno aborts the client
   * connection instead of presenting a truncated body as complete.
   */
  stream(
    res: IncomingMessage,
    onEnd: (complete: boolean, bytes: number, why?: string) => void,
  ): ReadableStream<Uint8Array> {
    let bytes = 0;
    let ended = false;
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const watchdog = new Watchdog(this.#timers);
    const end = (complete: boolean, why?: string) => {
      if (ended) return;
      ended = true;
      watchdog.clear();
      if (complete) controller.close();
      else if (why !== "client went away") controller.error(cutShort(why!));
      onEnd(complete, bytes, why);
    };
    watchdog.idle(this.opts.idleTimeout, () => {
      end(false, "upstream idle timeout");
      res.destroy();
    });
    return new ReadableStream<Uint8Array>({
      start(c) {
        controller = c;
        res.on("data", (chunk: Uint8Array) => {
          bytes += chunk.byteLength;
          watchdog.activity++;
          c.enqueue(chunk);
          if (c.desiredSize !== null && c.desiredSize <= 0) res.pause();
        });
        res.on(
          "end",
          () => end(res.complete, res.complete ? undefined : "upstream closed mid-body"),
        );
        res.on("error", () => end(false, "upstream closed mid-body"));
        res.on("close", () => {
          if (!res.complete) end(false, "upstream closed mid-body");
        });
      },
      pull() {
        // The client is reading: a paused upstream is waiting on us, not silent.
        watchdog.activity++;
        res.resume();
      },
      cancel() {
        res.destroy();
        end(false, "client went away");
      },
    }, { highWaterMark: 4 });
  }
}

/** Writes the body to the upstream request with backpressure, then ends it. */
async function pump(body: BodySource, creq: http.ClientRequest): Promise<void> {
  for (let i = 0;; i++) {
    const chunk = await body.chunkAt(i);
    if (creq.destroyed) return;
    if (chunk === null) break;
    if (!creq.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          creq.off("drain", done);
          creq.off("close", done);
          resolve();
        };
        creq.on("drain", done);
        creq.on("close", done);
      });
      if (creq.destroyed) return;
    }
  }
  creq.end();
}

/**
 * The error a cut-short response stream ends with. Deno.serve prints it as it aborts the
 * client connection, so it carries one readable line instead of a stack trace.
 */
function cutShort(why: string): Error {
  const e = new Error(why);
  e.stack = `lb: ${why}; aborting the client connection so the body is not taken as complete`;
  return e;
}
