/**
 * Reading a response body from a backend: whole (small bodies, `collect`), as a stream with
 * backpressure (`stream`), or not at all (`discard`). Each ends the exchange, which returns
 * the connection to the pool when the body was read to its end.
 */
import { Failure } from "./failures.ts";
import type { ConnectionPool } from "./upstream_pool.ts";
import { ProtocolError } from "./http1.ts";
import { type TimerPool, Watchdog } from "./timers.ts";
import type { UpstreamResponse } from "./upstream.ts";

/** A response body up to this size is read to the end to keep its connection (discard). */
const DRAIN_LIMIT = 64 * 1024;

/** What reading a body needs from the Upstream it came through. */
export interface BodyReading {
  pool: ConnectionPool;
  timers: (ms: number) => TimerPool | undefined;
  /** Longest silence mid-body (ms). */
  idleTimeout: number;
}

/** Why a body read failed: silence past the idle timeout, bad framing, or a cut. */
function bodyFailure(silent: boolean, e: unknown): Failure {
  if (silent) return new Failure("response_idle", "upstream idle timeout");
  if (e instanceof ProtocolError) {
    return new Failure("bad_response_body", `invalid response body: ${e.message}`);
  }
  return new Failure("response_cut", "upstream closed mid-body");
}

/** Lets go of a response whose body lb will not forward (a retried status, or no body). */
export function discardBody(u: BodyReading, res: UpstreamResponse): void {
  const ex = res.exchange;
  if (ex.conn.bodyDone) return u.pool.release(ex, true);
  if (res.contentLength === undefined || res.contentLength > DRAIN_LIMIT) {
    return u.pool.release(ex, false);
  }
  // A small body: read it to the end in the background so the connection can be reused.
  collectBody(u, res, res.contentLength).then(() => {});
}

/**
 * Reads a small response body whole (its Content-Length is known and small), as nginx's
 * proxy_buffering does: handing Deno.serve one finished buffer skips the stream machinery,
 * and a body cut short becomes a clean 502 instead of an aborted connection. Resolves the
 * bytes, or the Failure when the body broke off or fell silent.
 */
export async function collectBody(
  u: BodyReading,
  res: UpstreamResponse,
  length: number,
): Promise<Uint8Array<ArrayBuffer> | Failure> {
  const ex = res.exchange;
  const c = ex.conn;
  const whole = c.takeBufferedBody();
  if (whole !== null) {
    u.pool.release(ex, true);
    return whole;
  }
  const watchdog = new Watchdog(u.timers);
  let silent = false;
  watchdog.idle(u.idleTimeout, () => {
    silent = true;
    c.close();
  });
  try {
    const first = (await c.readBody()) ?? new Uint8Array(0);
    let out = first;
    if (first.byteLength < length) {
      out = new Uint8Array(length);
      out.set(first);
      let at = first.byteLength;
      for (let piece; (piece = await c.readBody()) !== null; at += piece.byteLength) {
        watchdog.activity++;
        out.set(piece, at);
      }
    }
    u.pool.release(ex, true);
    return out;
  } catch (e) {
    u.pool.release(ex, false);
    return bodyFailure(silent, e);
  } finally {
    watchdog.clear();
  }
}

/**
 * The response body as a web stream with backpressure: the backend is read only as fast as
 * the client takes the bytes. `onEnd` runs once, with how many bytes passed and, unless the
 * body arrived complete, the Failure that ended it (`client_gone` when the client left). A
 * body cut short, or silent past the idle timeout, makes the stream error, so Deno aborts
 * the client connection instead of presenting a truncated body as complete.
 */
export function streamBody(
  u: BodyReading,
  res: UpstreamResponse,
  onEnd: (bytes: number, failure?: Failure) => void,
): ReadableStream<Uint8Array> {
  const ex = res.exchange;
  const c = ex.conn;
  let bytes = 0;
  let ended = false;
  let silent = false;
  const watchdog = new Watchdog(u.timers);
  const end = (failure?: Failure) => {
    if (ended) return false;
    ended = true;
    watchdog.clear();
    u.pool.release(ex, failure === undefined);
    onEnd(bytes, failure);
    return true;
  };
  watchdog.idle(u.idleTimeout, () => {
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
          end();
          return controller.close();
        }
        bytes += piece.byteLength;
        controller.enqueue(piece);
      } catch (e) {
        const failure = bodyFailure(silent, e);
        if (end(failure)) controller.error(cutShort(failure.message));
      }
    },
    cancel() {
      if (ended) return;
      c.close();
      end(new Failure("client_gone", "client went away"));
    },
  }, { highWaterMark: 2 });
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
