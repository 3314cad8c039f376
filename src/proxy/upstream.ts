/**
 * The upstream side of one lb: one try of a request to one server, and the response's body.
 *
 * The client is lb's own HTTP/1.1 client on `Deno.connect`, with TLS for https:// backends
 * (upstream_connect.ts; why not fetch or node:http is explained in http1.ts): it sends
 * exactly the headers it is given and frames the body itself (upstream_send.ts), returns
 * the response's field lines as received (repeated Set-Cookie intact), refuses bad framing
 * from backends, reports a body cut short, and writes a request body only once the
 * connection is up (TLS handshake done), so a refused connection or certificate never
 * consumes a byte of it and the request can go to another server.
 *
 * Connections are kept alive per backend (upstream_pool.ts). Every try has deadlines:
 * connect (the TLS handshake included), response headers (from the end of the upload), and
 * silence while uploading or mid-body. A try that fails resolves a {@link Failure} whose
 * kind says what happened.
 */
import type { Server } from "../balancing/server.ts";
import { Failure } from "./failures.ts";
import { ConnectionClosed, Http1Conn, ProtocolError, type ResponseHead } from "./http1.ts";
import type { BodySource } from "./request_body.ts";
import { type BodyReading, collectBody, discardBody, streamBody } from "./upstream_body.ts";
import { ConnectionPool, Exchange } from "./upstream_pool.ts";
import { sendRequest, uploadTimeout } from "./upstream_send.ts";
import { Connector, tlsProblem } from "./upstream_connect.ts";
import { DEFAULT_TLS, sameTls, type TlsClientSettings } from "./upstream_tls.ts";
import { TimerPool, Watchdog } from "./timers.ts";

export interface UpstreamOptions {
  /** Time to establish a new connection (ms). */
  connectTimeout: number;
  /** Time to response headers once the request is sent (ms). */
  headerTimeout: number;
  /** Longest silence on the upstream connection, uploading or mid-body (ms). */
  idleTimeout: number;
  /** Idle keep-alive connections are closed after this (ms). */
  poolIdleTimeout: number;
  /** TLS to https:// backends (default: Deno's roots, the URL's host, no client certificate). */
  tls?: TlsClientSettings;
}

export type TryResult = { ok: true; res: UpstreamResponse } | { ok: false; failure: Failure };

/** A response whose head has arrived. Read its body with collect(), stream() or discard(). */
export class UpstreamResponse {
  readonly status: number;
  /** Field lines as received: [name, value, …]. */
  readonly rawHeaders: string[];
  /** The declared Content-Length; undefined for chunked, close-delimited or no body. */
  readonly contentLength: number | undefined;

  constructor(head: ResponseHead, readonly exchange: Exchange) {
    this.status = head.status;
    this.rawHeaders = head.rawHeaders;
    this.contentLength = head.framing === "length" ? head.length : undefined;
  }
}

/** One request to send: what the try stage hands to {@link Upstream.try}. */
export interface Outgoing {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: BodySource | null;
  /** Aborts when the client goes away. */
  signal: AbortSignal;
}

const clientGone = () => new Failure("client_gone", "client went away");

export class Upstream {
  readonly pool: ConnectionPool;
  readonly #timerPools: Map<number, TimerPool>;
  readonly #reading: BodyReading;
  #connector: Connector;
  /** Counts TLS settings changes: connections made under earlier ones are never reused. */
  #tlsGeneration = 0;

  constructor(readonly opts: UpstreamOptions) {
    this.#connector = new Connector(opts.tls ?? DEFAULT_TLS);
    this.pool = new ConnectionPool(opts.poolIdleTimeout);
    const delays = [opts.connectTimeout, opts.headerTimeout, opts.idleTimeout];
    this.#timerPools = new Map(delays.map((ms) => [ms, new TimerPool(ms)]));
    const timers = (ms: number) => this.#timerPools.get(ms);
    this.#reading = { pool: this.pool, timers, idleTimeout: opts.idleTimeout };
  }

  /** Opens new connections with the current TLS settings (the health checks use it too). */
  get connector(): Connector {
    return this.#connector;
  }

  /**
   * New TLS settings (a reload read other files): new connections use them, and no
   * connection made under the old ones is reused. False when nothing changed.
   */
  setTls(tls: TlsClientSettings): boolean {
    if (sameTls(tls, this.#connector.tls)) return false;
    this.#connector = new Connector(tls);
    this.#tlsGeneration++;
    this.pool.closeIdle();
    return true;
  }

  /**
   * The key of `server`'s kept-alive connections in the pool. The scheme is part of the
   * url; for TLS, so are the settings the connection was made with (a pool's own, so two
   * pools never share one; and which generation of them).
   */
  poolKey(server: Server): string {
    return server.tls && this.#tlsGeneration > 0
      ? `${server.url}#${this.#tlsGeneration}`
      : server.url;
  }

  /** Idle pooled connections, over all backends (tests watch the pool through it). */
  get idleConnections(): number {
    return this.pool.idleCount;
  }

  /** Closes every connection, idle or busy, and the timers. */
  close(): void {
    this.pool.close();
    for (const t of this.#timerPools.values()) t.close();
  }

  /**
   * Sends one try to `server`. Resolves when response headers arrive or the try fails;
   * never rejects. `headerTimeout` may be shorter than the configured one (an overall
   * request deadline).
   */
  try(
    server: Server,
    out: Outgoing,
    headerTimeout = this.opts.headerTimeout,
    started = performance.now(),
  ): Promise<TryResult> {
    if (out.signal.aborted) return Promise.resolve({ ok: false, failure: clientGone() });
    return new Attempt(this, server, out, headerTimeout, started).run();
  }

  discard(res: UpstreamResponse): void {
    discardBody(this.#reading, res);
  }

  collect(res: UpstreamResponse, length: number): Promise<Uint8Array<ArrayBuffer> | Failure> {
    return collectBody(this.#reading, res, length);
  }

  stream(res: UpstreamResponse, onEnd: (bytes: number, failure?: Failure) => void) {
    return streamBody(this.#reading, res, onEnd);
  }

  /**
   * Waits for the upload of `res`'s request to end, when the response came first: `sent`
   * (the whole body went out), `stopped` (the backend stopped taking it: it closed or reset
   * the connection), or the Failure that ended it: the client's body failed, or no upload
   * progress for the idle timeout (the connection is then closed). Never rejects.
   */
  uploaded(res: UpstreamResponse): Promise<"sent" | "stopped" | Failure> {
    const ex = res.exchange;
    if (ex.sent) return Promise.resolve("sent");
    return new Promise((resolve) => {
      // The try's watchdog, which the send's progress (client and backend) already feeds.
      ex.watchdog.idle(this.opts.idleTimeout, () => {
        ex.watchdog.clear();
        ex.conn.close();
        resolve(uploadTimeout(ex.upload.phase, this.opts.idleTimeout));
      });
      ex.writing.then(() => {
        ex.watchdog.clear();
        resolve(ex.upload.failure ?? (ex.sent ? "sent" : "stopped"));
      });
    });
  }

  /** @internal A watchdog on this upstream's pooled timers. */
  watchdog(): Watchdog {
    return new Watchdog(this.#reading.timers);
  }
}

/** Which deadline ended a try. */
interface Expiry {
  what?: "connect" | "header" | "upload";
}

/**
 * Arms `w` to note `what` in `expiry` and stop the try after `ms` (of silence, for `idle`).
 * A function of its own so that the timer's closure holds only these, never the Attempt
 * and through it the request: the pooled timer that holds the closure outlives the request.
 */
function expireAfter(
  w: Watchdog,
  ms: number,
  idle: boolean,
  expiry: Expiry,
  what: NonNullable<Expiry["what"]>,
  stop: AbortController | Http1Conn,
): void {
  const fire = () => {
    expiry.what = what;
    if (stop instanceof AbortController) stop.abort();
    else stop.close();
  };
  if (idle) w.idle(ms, fire);
  else w.arm(ms, fire);
}

/** The state of one try: its deadlines, and what ended it early. */
class Attempt {
  readonly watchdog: Watchdog;
  readonly expiry: Expiry = {};
  clientGone = false;
  /** The try is over (headers arrived or it failed): its deadlines no longer apply. */
  over = false;
  conn: Http1Conn | undefined;
  /** The exchange once the request is being written. */
  exchanged: Exchange | undefined;
  connecting: AbortController | undefined;

  constructor(
    readonly upstream: Upstream,
    readonly server: Server,
    readonly out: Outgoing,
    readonly headerTimeout: number,
    /** When the try began (performance.now()): its deadlines count from here. */
    readonly started: number,
  ) {
    this.watchdog = upstream.watchdog();
  }

  /**
   * The client went away. The listener stays on the request's signal after the try (taking it
   * off cost more than a finished try's check below), so a try that is over ignores it: its
   * connection may already carry another request.
   */
  readonly onAbort = () => {
    if (this.over) return;
    this.clientGone = true;
    this.connecting?.abort();
    this.conn?.close();
  };

  async run(): Promise<TryResult> {
    const { signal } = this.out;
    signal.addEventListener("abort", this.onAbort);
    try {
      const key = this.upstream.poolKey(this.server);
      const reused = this.upstream.pool.take(key);
      const conn = reused ?? await this.connect();
      if (conn instanceof Failure) return { ok: false, failure: conn };
      this.conn = conn;
      return await this.exchange(key, conn, reused !== undefined);
    } finally {
      this.over = true;
      this.watchdog.clear();
    }
  }

  /** A new connection (TLS handshake done) within the connect timeout, or why there is none. */
  async connect(): Promise<Http1Conn | Failure> {
    const { server, upstream } = this;
    const ac = this.connecting = new AbortController();
    const ms = Math.min(upstream.opts.connectTimeout, this.headerTimeout);
    expireAfter(this.watchdog, ms, false, this.expiry, "connect", ac);
    let raw: Deno.Conn;
    try {
      raw = await upstream.connector.open(server, ac.signal);
    } catch (e) {
      if (this.clientGone) return clientGone();
      if (this.expiry.what) {
        const took = Math.round(performance.now() - this.started);
        return new Failure("connect_timeout", `no connection to ${server.url} within ${took}ms`);
      }
      return new Failure("connect_failed", `cannot connect to ${server.url}: ${errorText(e)}`);
    }
    this.connecting = undefined;
    const conn = new Http1Conn(raw);
    if (upstream.pool.closed || this.clientGone) {
      conn.close();
      return clientGone();
    }
    return conn;
  }

  /** Writes the request on `c` and waits for the response head. */
  async exchange(key: string, c: Http1Conn, reused: boolean): Promise<TryResult> {
    const { upstream, out } = this;
    upstream.pool.hold(c);
    const ex = new Exchange(key, c, this.watchdog);
    this.armDeadlines(ex, reused);
    this.exchanged = ex;
    ex.writing = sendRequest(ex, out.method, out.path, out.headers, out.body);
    try {
      return { ok: true, res: new UpstreamResponse(await c.readHead(out.method), ex) };
    } catch (e) {
      upstream.pool.drop(c);
      return { ok: false, failure: this.failureOf(e, reused) };
    }
  }

  /**
   * The header deadline counts from the start of the try (connecting included) without a
   * body, and from the end of the upload with one: a long upload is bounded by its
   * progress instead (no silence longer than the idle timeout), as nginx's
   * proxy_send_timeout.
   */
  armDeadlines(ex: Exchange, reused: boolean): void {
    const c = ex.conn;
    const headerDeadline = (ms: number) =>
      expireAfter(this.watchdog, ms, false, this.expiry, "header", c);
    if (this.out.body === null) {
      if (reused) return headerDeadline(this.headerTimeout);
      return headerDeadline(Math.max(1, this.started + this.headerTimeout - performance.now()));
    }
    expireAfter(this.watchdog, this.upstream.opts.idleTimeout, true, this.expiry, "upload", c);
    ex.onSent = () => {
      if (!this.over) headerDeadline(this.headerTimeout);
    };
  }

  /** Why reading the response head failed. */
  failureOf(e: unknown, reused: boolean): Failure {
    const { url } = this.server;
    // A failed client body closes the connection after noting why, so it is known here.
    const upload = this.exchanged?.upload;
    if (upload?.failure) return upload.failure;
    if (this.clientGone) return clientGone();
    if (this.expiry.what === "upload") {
      return uploadTimeout(upload!.phase, this.upstream.opts.idleTimeout);
    }
    if (this.expiry.what) {
      return new Failure("header_timeout", `no response headers within ${this.headerTimeout}ms`);
    }
    if (e instanceof ProtocolError) {
      return new Failure("bad_response", `invalid response from ${url}: ${e.message}`);
    }
    if (e instanceof ConnectionClosed && !e.beforeResponse) {
      return new Failure("bad_response", `${url}: ${e.message}`);
    }
    if (!reused && this.server.tls && e instanceof Deno.errors.InvalidData) {
      // In TLS 1.3 a backend checks lb's client certificate after lb's side of the
      // handshake is done, so its refusal comes with the first read; it took no request.
      return new Failure(
        "connect_failed",
        `cannot connect to ${url}: TLS failed after the handshake: ${tlsProblem(e)}`,
      );
    }
    // Closed or reset before any response byte.
    return reused
      ? new Failure(
        "stale_connection",
        `kept-alive connection to ${url} was closed: ${errorText(e)}`,
      )
      : new Failure("reset_before_response", `connection to ${url} failed: ${errorText(e)}`);
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
