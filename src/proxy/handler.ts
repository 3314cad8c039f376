/**
 * The traffic app: a Hono app whose one route forwards every request to the server the
 * strategy picks, retrying failed tries on other servers within the retry budget.
 */
import { Hono } from "hono";
import type { Balancer } from "../balancing/balancer.ts";
import { BodySource } from "./request_body.ts";
import { cidrMatcher } from "./cidr.ts";
import { ConcurrencyLimiter } from "./concurrency.ts";
import type { Config } from "../config/config.ts";
import { createGuard } from "./guard.ts";
import { downstreamResponseHeaders, upstreamRequestHeaders } from "./headers.ts";
import type { Logger, RequestRecord } from "../log.ts";
import { maybeEject } from "../balancing/outlier.ts";
import type { TryFailure, Upstream } from "./upstream.ts";
import { backoffMs, mayRetry, RetryBudget, sleep } from "./retry.ts";
import { isAvailable, type Server } from "../balancing/pool.ts";
import type { PickContext } from "../balancing/strategies/registry.ts";

export interface TrafficDeps {
  config: Config;
  balancer: Balancer;
  upstream: Upstream;
  logger: Logger;
  /** Called once per request when it is over (metrics, events). */
  onRequest?: (rec: RequestRecord) => void;
  random?: () => number;
}

/** Deno.serve's handler info, as Hono hands it to us in `c.env`. */
type ConnInfo = { remoteAddr: Deno.NetAddr };

/** lb's own error answers: JSON with a stable shape. */
export function errorResponse(
  status: number,
  code: string,
  message: string,
  requestId: string,
  extra?: HeadersInit,
): Response {
  const headers = new Headers(extra);
  headers.set("content-type", "application/json");
  headers.set("x-request-id", requestId);
  headers.set("via", "1.1 lb");
  return new Response(JSON.stringify({ error: { status, code, message }, requestId }) + "\n", {
    status,
    headers,
  });
}

/** Responses with a Content-Length up to this are read whole before answering. */
const BUFFER_SMALL_BODY = 64 * 1024;

const REQUEST_ID = /^[A-Za-z0-9._:@\/+=-]{1,128}$/;

/** The path and query exactly as the client sent them (absolute-form targets lose their authority). */
export function targetOf(url: string): string {
  const i = url.indexOf("/", url.indexOf("//") + 2);
  return i === -1 ? "/" : url.slice(i);
}

/** Builds the request handler (exported on its own so tests and the benchmark can measure it). */
export function createProxyHandler(
  deps: TrafficDeps,
): (req: Request, info: ConnInfo) => Promise<Response> {
  const { config, balancer, upstream, logger } = deps;
  const pool = balancer.pool;
  const random = deps.random ?? Math.random;
  const isTrusted = cidrMatcher(config.trustedProxies);
  const budget = new RetryBudget(config.retry.budgetPercent, config.retry.minConcurrent);
  const hashKey = config.hash.key;
  const retryOn = new Set(config.retry.on);
  const guard = createGuard(config.limits);
  const limiter = new ConcurrencyLimiter(config.limits);
  /**
   * Reports how a try ended to the state map: in-flight down, latency sample, success or
   * failure; a failure also feeds outlier detection.
   */
  const report = (s: Server, ok: boolean, latencyMs: number | undefined) => {
    const now = Date.now();
    pool.endRequest(s, ok, latencyMs, now);
    if (!ok) maybeEject(pool, s, config.outlier, now);
  };

  return async function handle(req: Request, info: ConnInfo): Promise<Response> {
    const started = performance.now();
    const peer = info.remoteAddr.hostname;
    const trusted = isTrusted(peer);
    let clientIp = peer;
    if (trusted) {
      // The nearest address in X-Forwarded-For that is not itself a trusted proxy.
      const xff = req.headers.get("x-forwarded-for");
      if (xff) {
        const hops = xff.split(",");
        for (let i = hops.length - 1; i >= 0; i--) {
          const hop = hops[i].trim();
          if (hop) clientIp = hop;
          if (!isTrusted(hop)) break;
        }
      }
    }
    const sent = req.headers.get("x-request-id");
    const requestId = sent !== null && REQUEST_ID.test(sent) ? sent : crypto.randomUUID();
    const method = req.method;
    const path = targetOf(req.url);
    const rec: RequestRecord = {
      time: Date.now(),
      requestId,
      client: clientIp,
      method,
      path,
      status: 0,
      tries: 0,
      durationMs: 0,
      bytesIn: 0,
      bytesOut: 0,
    };
    let counted = false;
    const leave = () => {
      if (counted) {
        counted = false;
        limiter.leave(clientIp);
      }
    };
    let body: BodySource | null = null;
    const done = (status: number, error?: string) => {
      leave();
      rec.status = status;
      rec.durationMs = performance.now() - started;
      if (error) rec.error = error;
      if (body) rec.bytesIn = body.bytes;
      logger.access(rec);
      deps.onRequest?.(rec);
    };

    const headers = upstreamRequestHeaders(req.headers, {
      peer,
      trusted,
      requestId,
      proto: "http",
    });
    // Hostile-input checks (guard.ts; amends `headers` in place) and concurrency caps.
    // The limiter counts a request until done() runs, when its response has ended.
    const refused = guard(req, info.remoteAddr, headers) ?? limiter.enter(clientIp);
    if (!refused) counted = true;
    else {
      done(refused.status, refused.message);
      return errorResponse(
        refused.status,
        refused.code,
        refused.message,
        requestId,
        refused.headers,
      );
    }
    if (req.body && method !== "GET" && method !== "HEAD") {
      const declared = headers["content-length"];
      body = new BodySource(
        req.body,
        config.retry.bufferLimit,
        config.limits.maxBodyBytes,
        declared === undefined ? -1 : Number(declared),
      );
    }
    const signal = req.signal;
    const deadline = config.timeouts.request > 0 ? started + config.timeouts.request : Infinity;
    let tried: Set<Server> | undefined;
    let staleRetried = false;
    const ctx: PickContext = {
      now: Date.now(),
      random,
      key: () => requestKey(req, balancer.options.hash?.key ?? hashKey, clientIp, path),
    };

    budget.active++;
    try {
      let lastFailure:
        | { failure: TryFailure | "status"; message: string; server: Server }
        | undefined;
      for (let attempt = 1; attempt <= config.retry.attempts; attempt++) {
        ctx.now = Date.now();
        ctx.exclude = tried;
        ctx.panic = false;
        let server = balancer.pick(ctx);
        if (
          !server && config.panicMode &&
          !pool.servers.some((s) => isAvailable(s, ctx.now) || full(s))
        ) {
          ctx.panic = true;
          server = balancer.pick(ctx);
        }
        if (!server) break;
        const isRetry = attempt > 1;
        // A try refused at connect reached no server, so trying the next one adds no load:
        // such failover does not spend the retry budget, which bounds amplification.
        const budgeted = isRetry && lastFailure?.failure !== "connect";
        if (isRetry) {
          if (budgeted && !budget.acquire()) {
            lastFailure = {
              ...lastFailure!,
              message: `${lastFailure!.message}; retry budget spent`,
            };
            break;
          }
          const wait = backoffMs(
            attempt - 1,
            config.retry.backoffBase,
            config.retry.backoffMax,
            random,
          );
          if (performance.now() + wait >= deadline) {
            if (budgeted) budget.release();
            break;
          }
          await sleep(wait, signal);
        }
        (tried ??= new Set()).add(server);
        rec.tries = attempt;
        rec.backend = server.id;
        const headerTimeout = deadline === Infinity
          ? config.timeouts.header
          : Math.max(1, Math.min(config.timeouts.header, deadline - performance.now()));
        pool.beginRequest(server);
        const t0 = performance.now();
        const r = await upstream.try(server, method, path, headers, body, signal, headerTimeout);
        if (budgeted) budget.release();

        if (r.ok) {
          const status = r.res.status;
          const ttfb = performance.now() - t0;
          const bad5xx = status >= 500 && config.outlier.on5xx;
          if (
            retryOn.has(status) && attempt < config.retry.attempts &&
            mayRetry("status", method, body) &&
            // With the budget spent, or no other server left to try, the server's own answer
            // (and its Retry-After) goes to the client rather than being drained and replaced.
            budget.available && untriedServerLeft(pool.servers, tried, Date.now())
          ) {
            upstream.discard(r.res); // drained when small, so the connection can be reused
            report(server, !bad5xx, ttfb);
            lastFailure = { failure: "status", message: `status ${status}`, server };
            continue;
          }
          const resHeaders = downstreamResponseHeaders(r.res.rawHeaders, requestId);
          // (Interim 1xx answers never get here: http1.ts skips them.)
          const noBody = method === "HEAD" || status === 204 || status === 304;
          if (noBody) {
            upstream.discard(r.res);
            report(server, !bad5xx, ttfb);
            done(status);
            return new Response(null, { status, headers: resHeaders });
          }
          const declared = r.res.contentLength;
          if (declared !== undefined && declared <= BUFFER_SMALL_BODY) {
            // Small and of known length: read it whole, then answer (nginx's proxy_buffering).
            const got = await upstream.collect(r.res, declared);
            if (typeof got === "string") {
              report(server, false, ttfb);
              const msg = `${server.id}: ${got}`;
              done(502, msg);
              logger.error(`${method} ${path} failed: ${msg}`, { requestId, backend: server.id });
              return errorResponse(502, "bad_gateway", msg, requestId);
            }
            report(server, !bad5xx, ttfb);
            rec.bytesOut = got.byteLength;
            done(status);
            body?.cancel();
            return new Response(got, {
              status,
              headers: resHeaders,
            });
          }
          const srv = server;
          const stream = upstream.stream(r.res, (complete, bytes, why) => {
            // A client that leaves mid-response is not the server's fault.
            const serverFault = !complete && why !== "client went away";
            report(srv, !serverFault && !bad5xx, ttfb);
            rec.bytesOut = bytes;
            done(
              complete ? status : why === "client went away" ? 499 : status,
              complete ? undefined : why,
            );
            body?.cancel();
          });
          return new Response(stream, {
            status,
            headers: resHeaders,
          });
        }

        // The try failed before any response byte.
        const serverFault = r.failure !== "client" && r.failure !== "too-large" &&
          r.failure !== "bad-request";
        // A stale pooled connection is the pool's fault, not the server's.
        report(server, !serverFault || r.failure === "stale", undefined);
        lastFailure = { failure: r.failure, message: r.message, server };
        if (r.failure === "client") {
          done(499, r.message);
          return errorResponse(499, "client_closed", r.message, requestId);
        }
        if (r.failure === "bad-request") {
          done(400, r.message);
          return errorResponse(400, "bad_request", r.message, requestId, { connection: "close" });
        }
        if (r.failure === "too-large") {
          done(413, r.message);
          return errorResponse(413, "payload_too_large", r.message, requestId, {
            connection: "close",
          });
        }
        // A stale pooled connection is the pool's fault, not the server's: retry it without
        // spending an attempt, once per request.
        if (r.failure === "stale" && !staleRetried && mayRetry("stale", method, body)) {
          staleRetried = true;
          attempt--;
          tried.delete(server);
          continue;
        }
        if (!mayRetry(r.failure, method, body)) break;
      }

      if (!lastFailure) {
        const allFull = pool.servers.some(full);
        const msg = allFull
          ? "every available server is at its connection limit"
          : "no server is available";
        done(503, msg);
        return errorResponse(503, "no_server", msg, requestId, { "retry-after": "1" });
      }
      if (lastFailure.failure === "status") {
        // Every try answered with a retryable status; nothing left to try, so report it.
        done(502, lastFailure.message);
        return errorResponse(
          502,
          "bad_gateway",
          `${lastFailure.server.id} answered ${lastFailure.message}`,
          requestId,
        );
      }
      const status = lastFailure.failure === "timeout" ? 504 : 502;
      const msg = `${lastFailure.server.id}: ${lastFailure.message}`;
      done(status, msg);
      logger.error(`${method} ${path} failed: ${msg}`, {
        requestId,
        backend: lastFailure.server.id,
      });
      return errorResponse(
        status,
        status === 504 ? "gateway_timeout" : "bad_gateway",
        msg,
        requestId,
      );
    } catch (e) {
      // A bug, not a request outcome: still count the request out before Hono answers 500.
      leave();
      throw e;
    } finally {
      budget.active--;
    }
  };
}

/** Whether some available server has not been tried yet (only asked when about to retry). */
function untriedServerLeft(servers: readonly Server[], tried: Set<Server>, now: number): boolean {
  for (const s of servers) if (!tried.has(s) && isAvailable(s, now)) return true;
  return false;
}

function full(s: Server): boolean {
  return s.maxConnections > 0 && s.inflight >= s.maxConnections && s.enabled && !s.draining;
}

/** The hash key of a request for consistent-hash and maglev (`hash.key`). */
export function requestKey(req: Request, key: string, clientIp: string, path: string): string {
  if (key === "ip") return clientIp;
  if (key === "path") {
    const q = path.indexOf("?");
    return q === -1 ? path : path.slice(0, q);
  }
  const colon = key.indexOf(":");
  const kind = key.slice(0, colon);
  const name = key.slice(colon + 1);
  if (kind === "header") return req.headers.get(name) ?? "";
  if (kind === "cookie") {
    const cookies = req.headers.get("cookie") ?? "";
    for (const part of cookies.split(";")) {
      const eq = part.indexOf("=");
      if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
    }
    return "";
  }
  if (kind === "query") {
    const q = path.indexOf("?");
    if (q === -1) return "";
    return new URLSearchParams(path.slice(q + 1)).get(name) ?? "";
  }
  return clientIp;
}

/** The traffic app: one catch-all route to the proxy handler. */
export function createTrafficApp(deps: TrafficDeps): Hono {
  const handle = createProxyHandler(deps);
  const app = new Hono();
  app.all("*", (c) => handle(c.req.raw, c.env as ConnInfo));
  app.onError((err, c) => {
    deps.logger.error(`unexpected error: ${err instanceof Error ? err.message : String(err)}`);
    return errorResponse(
      500,
      "internal",
      "lb failed to handle this request",
      c.req.header("x-request-id") ?? "-",
    );
  });
  return app;
}
