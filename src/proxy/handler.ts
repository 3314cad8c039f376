/**
 * The traffic app: every request passes the stages of the request path, each in its own
 * file (see the README's architecture section):
 *
 *   admit (admit.ts) → choose (choose.ts) → try (attempt.ts) → respond (respond.ts)
 *                                              ↘ fail (fail.ts), from the failure table
 *
 * `forward` below is the retry loop that ties them together: a failed try goes to another
 * server, after a backoff and within the retry budget, while the failure table allows it.
 */
import { admit, type ConnInfo } from "./admit.ts";
import { releaseRetry, tryOnce } from "./attempt.ts";
import { choose } from "./choose.ts";
import { type ProxyContext, proxyContext, type TrafficDeps } from "./context.ts";
import { errorResponse, fail, noServer } from "./fail.ts";
import type { Flight } from "./flight.ts";
import { backoffMs, sleep } from "./retry.ts";
import { isWebSocketUpgrade, proxyWebSocket } from "./websocket.ts";

export type { TrafficDeps };

/** Builds the request handler (exported on its own so tests and the benchmark can measure it). */
export function createProxyHandler(
  deps: TrafficDeps,
): (req: Request, info: ConnInfo) => Promise<Response> {
  const px = proxyContext(deps);
  return (req, info) => {
    const admitted = admit(px, req, info);
    if (admitted instanceof Response) return Promise.resolve(admitted);
    if (admitted instanceof Promise) return admitted.then((a) => proceed(px, a, req));
    return proceed(px, admitted, req);
  };
}

/** An admitted request on its way to a backend (a refused one's answer as it is). */
function proceed(px: ProxyContext, f: Flight | Response, req: Request): Promise<Response> {
  if (f instanceof Response) return Promise.resolve(f);
  return isWebSocketUpgrade(req) ? proxyWebSocket(px, f, req) : forward(px, f);
}

/** The retry loop: choose a server, try it, and decide from the outcome what comes next. */
async function forward(px: ProxyContext, f: Flight): Promise<Response> {
  const { pool } = f;
  const { attempts } = pool.settings.retry;
  pool.budget.active++;
  try {
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const server = choose(f);
      if (server === undefined) break;
      if (attempt > 1 && !(await waitToRetry(px, f, attempt))) break;
      const next = await tryOnce(px, f, server, attempt);
      if (next instanceof Response) return next;
      if (next === "stop") break;
      if (next === "free") attempt--;
    }
    return f.last ? fail(px, f, f.last.failure, f.last.server) : fail(px, f, noServer(pool));
  } catch (e) {
    // A bug, not a request outcome: still count the request out before the 500.
    f.leave();
    throw e;
  } finally {
    releaseRetry(f);
    pool.budget.active--;
  }
}

/**
 * Before retry number `attempt - 1`: a full-jitter backoff, unless that would pass the
 * request's deadline (false: give up and answer with the last failure).
 */
async function waitToRetry(px: ProxyContext, f: Flight, attempt: number): Promise<boolean> {
  const { retry } = f.pool.settings;
  const wait = backoffMs(attempt - 1, retry.backoffBase, retry.backoffMax, px.random);
  if (performance.now() + wait >= f.deadline) return false;
  await sleep(wait, f.signal);
  return true;
}

/**
 * The traffic listener's handler: every request goes to the proxy handler; a bug in it (a
 * throw, not a request outcome) is logged in one line and answered 500 with lb's JSON error.
 * A plain `Deno.serve` handler rather than a Hono app: with one catch-all route Hono only
 * dispatched, and its context objects were ~2 KB of garbage per request (the admin listener,
 * which has routes, keeps Hono).
 */
export function createTrafficHandler(deps: TrafficDeps): Deno.ServeHandler<Deno.NetAddr> {
  const handle = createProxyHandler(deps);
  const onError = (err: unknown, req: Request): Response => {
    deps.logger.error(`unexpected error: ${err instanceof Error ? err.message : String(err)}`);
    const id = req.headers.get("x-request-id") ?? "-";
    return errorResponse(500, "internal", "lb failed to handle this request", id);
  };
  return (req, info) => {
    try {
      return handle(req, info).catch((e) => onError(e, req));
    } catch (e) {
      return onError(e, req);
    }
  };
}
