/**
 * The try stage: one attempt of a request on one server, and its report to the pool
 * (in-flight, latency, success or failure, outlier detection). What follows a try is
 * decided from the failure table: answer, try another server, or give up.
 */
import { maybeEject } from "../balancing/outlier.ts";
import type { Server } from "../balancing/server.ts";
import type { PoolRuntime } from "../routing/pool_runtime.ts";
import type { ProxyContext } from "./context.ts";
import { fail } from "./fail.ts";
import { Failure, mayRetry, reachedServer } from "./failures.ts";
import type { Flight } from "./flight.ts";
import { respond } from "./respond.ts";
import type { UpstreamResponse } from "./upstream.ts";
import { untriedServerLeft } from "../balancing/availability.ts";

/** After a try: the answer, another try (`again`, or `free` when it costs no attempt), or stop. */
export type TryNext = Response | "again" | "free" | "stop";

/** Reports how a try ended: in-flight down, a latency sample, and failures to outlier detection. */
export function report(pool: PoolRuntime, s: Server, ok: boolean, latencyMs?: number): void {
  const now = Date.now();
  pool.servers.endRequest(s, ok, latencyMs, now);
  if (!ok) maybeEject(pool.servers, s, pool.settings.outlier, now);
}

/** Sends `f` to `server` once; `attempt` counts from 1. */
export async function tryOnce(
  px: ProxyContext,
  f: Flight,
  server: Server,
  attempt: number,
): Promise<TryNext> {
  (f.tried ??= new Set()).add(server);
  f.rec.tries = attempt;
  f.rec.backend = server.id;
  const { pool } = f;
  const header = pool.settings.timeouts.header;
  const t0 = performance.now();
  const headerTimeout = f.deadline === Infinity
    ? header
    : Math.max(1, Math.min(header, f.deadline - t0));
  pool.servers.beginRequest(server);
  const r = await pool.upstream.try(server, f, headerTimeout, t0);
  releaseRetry(f);
  if (r.ok) return answered(px, f, server, r.res, performance.now() - t0, attempt);
  return failed(px, f, server, r.failure);
}

/**
 * A response head arrived. A status in `retry.on` goes to another server while one is left
 * and the budget allows (else the server's own answer, with its Retry-After, reaches the
 * client); anything else is the answer.
 */
function answered(
  px: ProxyContext,
  f: Flight,
  server: Server,
  res: UpstreamResponse,
  ttfb: number,
  attempt: number,
): TryNext | Promise<TryNext> {
  const status = res.status;
  const { pool } = f;
  const ok = !(status >= 500 && pool.settings.outlier.on5xx);
  const retry = pool.retryOn.has(status) && attempt < pool.settings.retry.attempts &&
    mayRetry("bad_status", f.method, f.body) &&
    untriedServerLeft(pool.servers.servers, f.tried!, Date.now()) && takeRetry(f);
  if (!retry) return respond(px, f, server, res, ttfb, ok);
  pool.upstream.discard(res); // drained when small, so the connection can be reused
  report(pool, server, ok, ttfb);
  f.last = { failure: new Failure("bad_status", `answered status ${status}`), server };
  return "again";
}

/**
 * Takes a retry from the budget for the next try, at the moment the retry is decided (a
 * check now and a take later would let other requests spend it in between). False when it
 * is spent.
 */
function takeRetry(f: Flight): boolean {
  if (!f.pool.budget.acquire()) return false;
  f.budgeted = true;
  return true;
}

/** Gives back the retry the last try held, if it held one. */
export function releaseRetry(f: Flight): void {
  if (!f.budgeted) return;
  f.budgeted = false;
  f.pool.budget.release();
}

/** The try failed before any response byte. */
function failed(px: ProxyContext, f: Flight, server: Server, failure: Failure): TryNext {
  report(f.pool, server, !failure.blamesServer);
  f.last = { failure, server };
  if (failure.rule.fault === "client") return fail(px, f, failure, server);
  // A stale pooled connection is the pool's luck, not the server's: retried once per
  // request without spending an attempt.
  if (
    failure.kind === "stale_connection" && !f.staleRetried &&
    mayRetry(failure.kind, f.method, f.body)
  ) {
    f.staleRetried = true;
    f.tried!.delete(server);
    return "free";
  }
  if (!mayRetry(failure.kind, f.method, f.body)) return "stop";
  // A try refused at connect reached no server, so trying the next one adds no load: such
  // failover does not spend the retry budget, which bounds amplification.
  if (!reachedServer(failure.kind) || takeRetry(f)) return "again";
  f.last = { failure: new Failure(failure.kind, `${failure.message}; retry budget spent`), server };
  return "stop";
}
