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
  | { ok: true; res: IncomingMessage; req: http.ClientRequest }
  | { ok: false; failure: TryFailure; message: string };

/** The pool of upstream connections (one per lb instance). */
export function createUpstreamAgent(opts: UpstreamOptions): http.Agent {
  // `timeout` on a keep-alive agent closes sockets idle in the pool after that long, which
  // must stay below the backends' own keep-alive timeout (else: random stale-socket 502s).
  return new http.Agent({ keepAlive: true, timeout: opts.poolIdleTimeout, scheduling: "lifo" });
}

const CONNECT_CODES = new Set([
  "ECONNREFUSED",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EADDRNOTAVAIL",
]);

/**
 * Sends one try to `server`. Resolves when response headers arrive or the try fails; never
 * rejects. The request body (if any) is written only once the connection is up.
 */
export function tryOnce(
  agent: http.Agent,
  server: Server,
  method: string,
  path: string,
  headers: OutgoingHttpHeaders,
  body: BodySource | null,
  opts: UpstreamOptions,
  signal: AbortSignal,
): Promise<TryResult> {
  return new Promise((resolve) => {
    let settled = false;
    let connected = false;
    let reused = false;
    let sockets = 0;
    let connectTimer: ReturnType<typeof setTimeout> | undefined;
    const creq = http.request({
      host: server.hostname,
      port: server.port,
      method,
      path,
      headers,
      agent,
      setHost: false,
    });
    const finish = (r: TryResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(headerTimer);
      if (connectTimer !== undefined) clearTimeout(connectTimer);
      signal.removeEventListener("abort", onAbort);
      if (!r.ok) creq.destroy();
      resolve(r);
    };
    const fail = (failure: TryFailure, message: string) => finish({ ok: false, failure, message });
    const onAbort = () => fail("client", "client went away");
    signal.addEventListener("abort", onAbort);
    const headerTimer = setTimeout(
      () => fail("timeout", `no response headers within ${opts.headerTimeout}ms`),
      opts.headerTimeout,
    );

    creq.on("socket", (sock: Socket) => {
      // Deno's node:http silently re-sends a request on a new connection when a reused one
      // dies before any response byte, and says so only by a second "socket" event. lb's own
      // retry rules (and its body buffer) decide instead.
      if (++sockets > 1) {
        fail("stale", `kept-alive connection to ${server.url} was closed`);
        return;
      }
      reused = creq.reusedSocket;
      const start = () => {
        connected = true;
        if (connectTimer !== undefined) clearTimeout(connectTimer);
        if (body) {
          pump(body, creq).catch((e) => {
            if (e instanceof BodyTooLargeError) fail("too-large", e.message);
            else if (e instanceof ClientBodyError) fail(e.malformed ? "bad-request" : "client", e.message);
            // Write errors surface as creq "error" events.
          });
        }
      };
      if (sock.connecting) {
        // Only new connections pay for this timer; reused ones are connected already.
        connectTimer = setTimeout(
          () => fail("connect", `no connection to ${server.url} within ${opts.connectTimeout}ms`),
          opts.connectTimeout,
        );
        sock.once("connect", start);
      } else start();
    });
    creq.on("response", (res) => {
      if (settled) {
        res.destroy();
        return;
      }
      creq.setTimeout(opts.idleTimeout, () => creq.destroy(new Error("upstream idle timeout")));
      finish({ ok: true, res, req: creq });
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

/**
 * The upstream response body as a web stream with backpressure. `onEnd` runs once, with
 * whether the body arrived complete and how many bytes passed. A body cut short makes the
 * stream error, so Deno aborts the client connection instead of presenting a truncated
 * body as complete.
 */
export function responseStream(
  res: IncomingMessage,
  onEnd: (complete: boolean, bytes: number, why?: string) => void,
): ReadableStream<Uint8Array> {
  let bytes = 0;
  let ended = false;
  const end = (complete: boolean, why?: string) => {
    if (ended) return;
    ended = true;
    onEnd(complete, bytes, why);
  };
  return new ReadableStream<Uint8Array>({
    start(controller) {
      res.on("data", (chunk: Uint8Array) => {
        bytes += chunk.byteLength;
        controller.enqueue(chunk);
        if (controller.desiredSize !== null && controller.desiredSize <= 0) res.pause();
      });
      res.on("end", () => {
        if (ended) return;
        if (res.complete) {
          controller.close();
          end(true);
        } else {
          controller.error(cutShort("upstream closed mid-body"));
          end(false, "upstream closed mid-body");
        }
      });
      const broken = (e?: Error) => {
        if (ended) return;
        controller.error(e ?? new Error("upstream body cut short"));
        end(
          false,
          e?.message === "upstream idle timeout"
            ? "upstream idle timeout"
            : "upstream closed mid-body",
        );
      };
      res.on("error", broken);
      res.on("close", () => {
        if (!res.complete) broken();
      });
    },
    pull() {
      res.resume();
    },
    cancel() {
      res.destroy();
      end(false, "client went away");
    },
  }, { highWaterMark: 4 });
}
