/**
 * Forward one try of a request to one server, and stream the answer back.
 *
 * The upstream client is lb's own HTTP/1.1 client on `Deno.connect` (http1.ts; why not
 * fetch or node:http is explained there): it sends exactly the headers it is given and
 * frames the body itself, returns the response's field lines as received (repeated
 * Set-Cookie intact), refuses bad framing from backends, reports a body cut short, and
 * writes a request body only once the connection is up, so a refused connection never
 * consumes a byte of it and the request can go to another server.
 *
 * `Upstream` keeps a pool of idle keep-alive connections per backend (last in, first out),
 * and the deadlines of every try: connect, response headers, and silence mid-body.
 */
import { type BodySource, BodyTooLargeError, ClientBodyError } from "./request_body.ts";
import {
  ConnectionClosed,
  Http1Conn,
  latin1Bytes,
  ProtocolError,
  requestHead,
  type ResponseHead,
} from "./http1.ts";
import type { Server } from "../balancing/pool.ts";
import { TimerPool, Watchdog } from "./timers.ts";

export interface UpstreamOptions {
  /** Time to establish a new connection (ms). */
  connectTimeout: number;
  /** Time to response headers (ms), connecting included. */
  headerTimeout: number;
  /** Longest silence on the upstream connection once headers arrived (ms). */
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
  /** No response headers within the header timeout. */
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
  | { ok: true; res: UpstreamResponse }
  | { ok: false; failure: TryFailure; message: string };

/** Idle connections kept per backend at most; more are closed as they come back. */
const MAX_IDLE_PER_BACKEND = 1024;
/** A request body up to this size (by its Content-Length) is written with the head. */
const COALESCE_LIMIT = 16 * 1024;
/** A response body up to this size is read to the end to keep its connection (discard). */
const DRAIN_LIMIT = 64 * 1024;

/** One request on one connection: the state that decides whether the connection is reused. */
class Exchange {
  /** Settles when the request (head and body) has been written, or its writing stopped. */
  sending: Promise<void> = Promise.resolve();
  /** The whole request went out. */
  sent = false;
  /** The last piece of the request body is being written. */
  lastWrite = false;
  /** The client's body failed (too large, malformed, client gone). */
  bodyError: Error | undefined;
  released = false;
  /** Runs once the whole request has been written. */
  onSent: (() => void) | undefined;

  constructor(readonly key: string, readonly conn: Http1Conn, readonly watchdog: Watchdog) {}
}

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

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * The upstream side of one lb instance: keep-alive connections per backend, and the
 * timeouts of every try and response body.
 */
export class Upstream {
  #idle = new Map<string, Http1Conn[]>();
  /** Connections carrying an exchange, closed by close(). */
  #busy = new Set<Http1Conn>();
  #pruneTimer: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  #pools: Map<number, TimerPool>;
  readonly #timers = (ms: number) => this.#pools.get(ms);

  constructor(readonly opts: UpstreamOptions) {
    this.#pools = new Map(
      [opts.connectTimeout, opts.headerTimeout, opts.idleTimeout].map((ms) => [
        ms,
        new TimerPool(ms),
      ]),
    );
  }

  /** Idle pooled connections, over all backends (tests watch the pool through it). */
  get idleConnections(): number {
    let n = 0;
    for (const list of this.#idle.values()) n += list.length;
    return n;
  }

  /** Stops the pruning timer and closes every connection, idle or busy. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#pruneTimer);
    this.#pruneTimer = undefined;
    for (const list of this.#idle.values()) for (const c of list) c.close();
    this.#idle.clear();
    for (const c of this.#busy) c.close();
    this.#busy.clear();
    for (const pool of this.#pools.values()) pool.close();
  }

  #take(key: string): Http1Conn | undefined {
    const list = this.#idle.get(key);
    if (list === undefined) return undefined;
    let c = list.pop();
    while (c !== undefined && c.closed) c = list.pop();
    return c;
  }

  #park(key: string, c: Http1Conn): void {
    let list = this.#idle.get(key);
    if (list === undefined) this.#idle.set(key, list = []);
    if (this.#closed || list.length >= MAX_IDLE_PER_BACKEND) return c.close();
    c.idleSince = performance.now();
    list.push(c);
    c.watch(() => {
      const i = list.indexOf(c);
      if (i !== -1) list.splice(i, 1);
    });
    if (this.#pruneTimer === undefined) {
      const every = Math.max(50, Math.min(1000, this.opts.poolIdleTimeout / 4));
      this.#pruneTimer = setInterval(() => this.#prune(), every);
    }
  }

  /**
   * Idle connections are closed after poolIdleTimeout, which must stay below the
   * backends' own keep-alive timeout (else: random stale-connection errors).
   */
  #prune(): void {
    const now = performance.now();
    let left = 0;
    for (const [key, list] of this.#idle) {
      const keep = list.filter((c) => {
        if (c.closed) return false;
        if (now - c.idleSince < this.opts.poolIdleTimeout) return true;
        c.close();
        return false;
      });
      if (keep.length === 0) this.#idle.delete(key);
      else this.#idle.set(key, keep);
      left += keep.length;
    }
    if (left === 0) {
      clearInterval(this.#pruneTimer);
      this.#pruneTimer = undefined;
    }
  }

  /**
   * Ends an exchange: its connection goes back to the pool when the response was read to
   * the end (`clean`), the request was fully written and both sides allow keep-alive;
   * otherwise it is closed.
   */
  #release(ex: Exchange, clean: boolean): void {
    if (ex.released) return;
    ex.released = true;
    const c = ex.conn;
    const keep = () => ex.sent && c.reusable && !this.#closed;
    if (clean && !ex.sent && ex.lastWrite && c.reusable) {
      // The answer came while the body's last bytes were still being handed to the socket.
      ex.sending.then(() => this.#settle(ex.key, c, keep()));
      return;
    }
    // Otherwise a response that came before the whole body went out ends the connection.
    this.#settle(ex.key, c, clean && keep());
  }

  /** A connection whose exchange is over goes back to the pool, or is closed. */
  #settle(key: string, c: Http1Conn, reuse: boolean): void {
    this.#busy.delete(c);
    if (reuse) this.#park(key, c);
    else c.close();
  }

  /**
   * Sends one try to `server`. Resolves when response headers arrive or the try fails;
   * never rejects. The request body (if any) is written only once the connection is up.
   */
  async try(
    server: Server,
    method: string,
    path: string,
    headers: Record<string, string>,
    body: BodySource | null,
    signal: AbortSignal,
    headerTimeout = this.opts.headerTimeout,
  ): Promise<TryResult> {
    if (signal.aborted) return { ok: false, failure: "client", message: "client went away" };
    const key = server.url;
    const started = performance.now();
    const watchdog = new Watchdog(this.#timers);
    let expired: "connect" | "header" | "upload" | undefined;
    let clientGone = false;
    /** The try is over (headers arrived or it failed): its deadlines no longer apply. */
    let over = false;
    let conn = this.#take(key);
    const reused = conn !== undefined;
    let connecting: AbortController | undefined;
    const onAbort = () => {
      clientGone = true;
      connecting?.abort();
      conn?.close();
    };
    signal.addEventListener("abort", onAbort);
    try {
      if (conn === undefined) {
        connecting = new AbortController();
        const ms = Math.min(this.opts.connectTimeout, headerTimeout);
        const ac = connecting;
        watchdog.arm(ms, () => {
          expired = "connect";
          ac.abort();
        });
        let tcp: Deno.TcpConn;
        try {
          tcp = await Deno.connect({
            hostname: server.hostname,
            port: server.port,
            signal: ac.signal,
          });
        } catch (e) {
          if (clientGone) return { ok: false, failure: "client", message: "client went away" };
          return {
            ok: false,
            failure: "connect",
            message: expired
              ? `no connection to ${server.url} within ${Math.round(performance.now() - started)}ms`
              : `cannot connect to ${server.url}: ${errorText(e)}`,
          };
        }
        connecting = undefined;
        tcp.setNoDelay(true);
        conn = new Http1Conn(tcp);
        if (this.#closed || clientGone) {
          conn.close();
          return { ok: false, failure: "client", message: "client went away" };
        }
      } else conn.claim();
      const c = conn;
      this.#busy.add(c);
      const ex = new Exchange(key, c, watchdog);
      // The header deadline counts from the start of the try, connecting included, and
      // from the end of the upload when there is a body: a long upload is bounded by its
      // progress (no silence longer than the idle timeout), as nginx's proxy_send_timeout.
      const headerDeadline = (ms: number) =>
        watchdog.arm(ms, () => {
          expired = "header";
          c.close();
        });
      if (body === null) {
        headerDeadline(
          reused ? headerTimeout : Math.max(1, started + headerTimeout - performance.now()),
        );
      } else {
        watchdog.idle(this.opts.idleTimeout, () => {
          expired = "upload";
          c.close();
        });
        ex.onSent = () => {
          if (!over) headerDeadline(headerTimeout);
        };
      }
      ex.sending = this.#send(ex, method, path, headers, body);

      let head: ResponseHead;
      try {
        head = await c.readHead(method);
      } catch (e) {
        this.#busy.delete(c);
        c.close();
        // A failed client body closes the connection after noting why, so it is known here.
        const be = ex.bodyError;
        if (be instanceof BodyTooLargeError) {
          return { ok: false, failure: "too-large", message: be.message };
        }
        if (be instanceof ClientBodyError) {
          return {
            ok: false,
            failure: be.malformed ? "bad-request" : "client",
            message: be.message,
          };
        }
        if (clientGone) return { ok: false, failure: "client", message: "client went away" };
        if (expired) {
          return {
            ok: false,
            failure: "timeout",
            message: expired === "upload"
              ? `the request body made no progress for ${this.opts.idleTimeout}ms`
              : `no response headers within ${headerTimeout}ms`,
          };
        }
        if (e instanceof ProtocolError) {
          return {
            ok: false,
            failure: "protocol",
            message: `invalid response from ${server.url}: ${e.message}`,
          };
        }
        if (e instanceof ConnectionClosed && !e.beforeResponse) {
          return { ok: false, failure: "protocol", message: `${server.url}: ${e.message}` };
        }
        // Closed or reset before any response byte.
        return reused
          ? {
            ok: false,
            failure: "stale",
            message: `kept-alive connection to ${server.url} was closed: ${errorText(e)}`,
          }
          : {
            ok: false,
            failure: "reset",
            message: `connection to ${server.url} failed: ${errorText(e)}`,
          };
      }
      return { ok: true, res: new UpstreamResponse(head, ex) };
    } finally {
      over = true;
      watchdog.clear();
      signal.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Writes the request: head, then the body with the framing lb chose (the client's
   * Content-Length, or chunked). Never rejects: a client body failure is kept in
   * `ex.bodyError` and closes the connection; a write failure (the backend closed) is left
   * for the response side to report.
   */
  async #send(
    ex: Exchange,
    method: string,
    path: string,
    headers: Record<string, string>,
    body: BodySource | null,
  ): Promise<void> {
    const c = ex.conn;
    try {
      if (body === null) {
        ex.lastWrite = true;
        await c.write(latin1Bytes(requestHead(method, path, headers, false, 0)));
        ex.sent = true;
        return;
      }
      const progress = ex.watchdog;
      const declared = headers["content-length"];
      const length = declared === undefined ? -1 : Number(declared);
      const head = latin1Bytes(requestHead(method, path, headers, true, length));
      let i = 0;
      if (length >= 0 && length <= COALESCE_LIMIT) {
        // A small body goes out in the same write as the head: one syscall instead of two,
        // and a backend that answers without reading the body still finds all of it there
        // (Deno.serve, for one, closes the connection after answering when it does not).
        const first = await body.chunkAt(0);
        if (c.closed) return;
        i = 1;
        if (first !== null && first.byteLength === length) {
          const both = new Uint8Array(head.byteLength + length);
          both.set(head);
          both.set(first, head.byteLength);
          ex.lastWrite = true; // Content-Length bytes are the whole body
          await c.write(both);
        } else {
          await c.write(head);
          if (first !== null && first.byteLength > 0) await c.write(first);
        }
        progress.activity++;
      } else await c.write(head);
      // Chunked framing: each chunk's closing CRLF goes out with the next size line.
      let open = false;
      for (;; i++) {
        const chunk = await body.chunkAt(i);
        if (c.closed) return;
        if (chunk === null) {
          ex.lastWrite = true;
          if (length < 0) await c.write(open ? LAST_CHUNK_AFTER_DATA : LAST_CHUNK);
          break;
        }
        if (chunk.byteLength === 0) continue;
        if (length >= 0) await c.write(chunk);
        else {
          const size = chunk.byteLength.toString(16);
          await c.write(latin1Bytes(open ? `\r\n${size}\r\n` : `${size}\r\n`));
          await c.write(chunk);
          open = true;
        }
        progress.activity++;
      }
      ex.sent = true;
      if (!c.closed) ex.onSent?.();
    } catch (e) {
      if (e instanceof BodyTooLargeError || e instanceof ClientBodyError) {
        ex.bodyError = e;
        c.close();
      }
      // Otherwise the backend closed or reset the connection: the read side reports it.
    }
  }

  /** Lets go of a response whose body lb will not forward (a retried status, or no body). */
  discard(res: UpstreamResponse): void {
    const ex = res.exchange;
    const c = ex.conn;
    if (c.bodyDone) return this.#release(ex, true);
    if (res.contentLength === undefined || res.contentLength > DRAIN_LIMIT) {
      return this.#release(ex, false);
    }
    // A small body: read it to the end in the background so the connection can be reused.
    this.collect(res, res.contentLength).then(() => {});
  }

  /**
   * Reads a small response body whole (its Content-Length is known and small), as nginx's
   * proxy_buffering does: handing Deno.serve one finished buffer skips the stream machinery,
   * and a body cut short becomes a clean 502 instead of an aborted connection. Resolves the
   * bytes, or an error message when the body broke off or fell silent.
   */
  async collect(res: UpstreamResponse, length: number): Promise<Uint8Array<ArrayBuffer> | string> {
    const ex = res.exchange;
    const c = ex.conn;
    const watchdog = new Watchdog(this.#timers);
    let silent = false;
    watchdog.idle(this.opts.idleTimeout, () => {
      silent = true;
      c.close();
    });
    try {
      let first = await c.readBody();
      if (first === null) first = new Uint8Array(0);
      let out = first;
      if (first.byteLength < length) {
        out = new Uint8Array(length);
        out.set(first);
        let at = first.byteLength;
        for (;;) {
          watchdog.activity++;
          const piece = await c.readBody();
          if (piece === null) break;
          out.set(piece, at);
          at += piece.byteLength;
        }
      }
      this.#release(ex, true);
      return out;
    } catch (e) {
      this.#release(ex, false);
      if (silent) return "upstream idle timeout";
      return e instanceof ProtocolError
        ? `invalid response body: ${e.message}`
        : "upstream closed mid-body";
    } finally {
      watchdog.clear();
    }
  }

  /**
   * The upstream response body as a web stream with backpressure: the backend is read only
   * as fast as the client takes the bytes. `onEnd` runs once, with whether the body arrived
   * complete and how many bytes passed. A body cut short, or silent for longer than the
   * idle timeout, makes the stream error, so Deno aborts the client connection instead of
   * presenting a truncated body as complete.
   */
  stream(
    res: UpstreamResponse,
    onEnd: (complete: boolean, bytes: number, why?: string) => void,
  ): ReadableStream<Uint8Array> {
    const ex = res.exchange;
    const c = ex.conn;
    let bytes = 0;
    let ended = false;
    let silent = false;
    const watchdog = new Watchdog(this.#timers);
    const end = (complete: boolean, why?: string) => {
      if (ended) return;
      ended = true;
      watchdog.clear();
      this.#release(ex, complete);
      onEnd(complete, bytes, why);
    };
    watchdog.idle(this.opts.idleTimeout, () => {
      silent = true;
      c.close();
    });
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        // The client is reading: a pause here is the client's, not the backend's silence.
        watchdog.activity++;
        try {
          const piece = await c.readBody();
          watchdog.activity++;
          if (ended) return;
          if (piece === null) {
            end(true);
            controller.close();
            return;
          }
          bytes += piece.byteLength;
          controller.enqueue(piece);
        } catch (e) {
          if (ended) return;
          const why = silent
            ? "upstream idle timeout"
            : e instanceof ProtocolError
            ? `invalid response body: ${e.message}`
            : "upstream closed mid-body";
          end(false, why);
          controller.error(cutShort(why));
        }
      },
      cancel() {
        if (ended) return;
        c.close();
        end(false, "client went away");
      },
    }, { highWaterMark: 2 });
  }
}

const LAST_CHUNK = latin1Bytes("0\r\n\r\n");
const LAST_CHUNK_AFTER_DATA = latin1Bytes("\r\n0\r\n\r\n");

/**
 * The error a cut-short response stream ends with. Deno.serve prints it as it aborts the
 * client connection, so it carries one readable line instead of a stack trace.
 */
function cutShort(why: string): Error {
  const e = new Error(why);
  e.stack = `lb: ${why}; aborting the client connection so the body is not taken as complete`;
  return e;
}
