/**
 * The route stage: which route the request takes (the first that matches, routing/router.ts)
 * and so which pool; the route's rate limit; the path the backend sees (prefix stripped) and
 * the route's request header rules. A request no route matches, or over its route's rate
 * limit, is refused here and never reaches a backend.
 */
import type { ProxyContext } from "./context.ts";
import { Failure } from "./failures.ts";
import type { Flight } from "./flight.ts";
import type { Server } from "../balancing/server.ts";
import type { RouteTarget } from "../routing/pools.ts";
import type { RateDecision } from "../routing/rate_limit.ts";

/**
 * Routes `f`; the Failure that refuses it, or undefined. The host is the one the backend will
 * see (the guard has put an absolute-form target's authority in it), so a request cannot be
 * routed by one name and answered for another. Only a route with a shared rate limit can make
 * this wait (for Redis): every other request is routed synchronously.
 */
export function route(
  px: ProxyContext,
  f: Flight,
  req: Request,
): Failure | undefined | Promise<Failure | undefined> {
  const host = f.headers["host"] ?? null;
  const m = px.pools.router.match(f.method, host, f.path, req.headers);
  if (m === undefined) {
    return new Failure("no_route", `no route matches ${f.method} ${host ?? ""}${f.path}`);
  }
  const t = m.route.target;
  f.routeTo(m.route, t.pool);
  if (t.limiter !== undefined) {
    const refused = rateLimit(f, req, t);
    if (refused instanceof Promise) return refused.then((r) => r ?? rewrite(f, m.path, t));
    if (refused) return refused;
  }
  return rewrite(f, m.path, t);
}

/** The path the backend sees and the route's request header rules. */
function rewrite(f: Flight, path: string, t: RouteTarget): undefined {
  f.path = path;
  const h = f.headers;
  for (const name of t.removeRequest) delete h[name];
  for (const [name, value] of t.setRequest) h[name] = value;
  return undefined;
}

/**
 * Takes a token from the route's bucket for this request's key; a Failure when there is none.
 * A shared limit answers later when it asks Redis.
 */
function rateLimit(
  f: Flight,
  req: Request,
  t: RouteTarget,
): Failure | undefined | Promise<Failure | undefined> {
  const key = f.route!.config.rateLimit!.key;
  const who = key === "ip"
    ? f.clientIp
    : key === "route"
    ? ""
    : req.headers.get(key.slice(7)) ?? "";
  if (t.shared !== undefined) {
    const d = t.shared.take(who, performance.now());
    return d instanceof Promise ? d.then((d) => decide(f, t, d)) : decide(f, t, d);
  }
  return decide(f, t, t.limiter!.take(who, performance.now()));
}

/** Keeps the decision for the answer's RateLimit fields; the 429 Failure when it refuses. */
function decide(f: Flight, t: RouteTarget, d: RateDecision): Failure | undefined {
  f.rate = d;
  if (d.allowed) return undefined;
  const limiter = t.limiter!;
  return new Failure("rate_limited", `over the rate limit of route ${f.rec.route}`, {
    "retry-after": String(d.retryAfterSeconds),
    "ratelimit-policy": limiter.policyHeader,
    "ratelimit": limiter.header(d),
  });
}

/**
 * The backend's answer as the route shapes it: the route's response header rules, the
 * sticky cookie when the client has none for this server, and the route's RateLimit fields.
 */
export function answerHeaders(f: Flight, server: Server, headers: [string, string][]): void {
  const t = f.route!.target;
  const drop = t.dropResponse;
  if (drop.size > 0) {
    let j = 0;
    for (let i = 0; i < headers.length; i++) {
      if (!drop.has(headers[i][0])) headers[j++] = headers[i];
    }
    headers.length = j;
    for (const pair of t.setResponse) headers.push([pair[0], pair[1]]);
  }
  const sticky = f.pool.sticky;
  if (sticky !== undefined && sticky.tokenOf(server) !== f.stickyToken) {
    const cookie = sticky.setCookie(server, f.px.secure);
    if (cookie !== undefined) headers.push(["set-cookie", cookie]);
  }
  if (f.px.hsts !== undefined) setHeader(headers, "strict-transport-security", f.px.hsts);
  if (t.limiter !== undefined && f.rate !== undefined) {
    headers.push(["ratelimit-policy", t.limiter.policyHeader], [
      "ratelimit",
      t.limiter.header(f.rate),
    ]);
  }
}

/** Sets `name` (lower case) to `value` in a [name, value] list, replacing any it had. */
function setHeader(headers: [string, string][], name: string, value: string): void {
  let j = 0;
  for (let i = 0; i < headers.length; i++) if (headers[i][0] !== name) headers[j++] = headers[i];
  headers.length = j;
  headers.push([name, value]);
}
