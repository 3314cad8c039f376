/**
 * `lb route` and `POST /api/explain`: what lb would do with a request, step by step — the
 * route that matches (and why), its pool, the path the backend would see, the headers the
 * route adds or removes each way, its rate limit, the sticky cookie, and the server the
 * strategy would pick now. It runs the same router, sticky check and strategy as the
 * request path, without sending anything and without taking a rate-limit token.
 */
import { isAvailable } from "../balancing/availability.ts";
import { stateOf } from "../balancing/availability.ts";
import { pickIn, requestKey } from "../proxy/choose.ts";
import type { Pools } from "./pools.ts";

/** The request to explain. */
export interface ExplainRequest {
  method: string;
  /** Host header value (null: none). */
  host: string | null;
  /** Path and query as a client would send them. */
  target: string;
  headers: Headers;
  /** The client's address, for `hash.key: ip` and `rateLimit.key: ip`. */
  clientIp: string;
}

export interface Explanation {
  request: { method: string; host: string | null; target: string };
  /** Undefined: no route matches, and lb would answer 404 no_route. */
  route?: { number: number; name: string; match: unknown };
  pool?: { name: string; strategy: string; available: number; servers: number };
  /** The path and query the backend would see. */
  path?: string;
  requestHeaders?: { set: Record<string, string>; remove: string[] };
  responseHeaders?: { set: Record<string, string>; remove: string[] };
  rateLimit?: {
    rate: number;
    perMs: number;
    burst: number;
    key: string;
    bucketKey: string;
    /** Kept in the cluster's Redis (`rateLimit.shared`). */
    shared: boolean;
  };
  sticky?: { cookie: string; sent: boolean; valid: boolean; server?: string };
  /** The server lb would send this request to now, and why that one. */
  server?: { id: string; url: string; state: string; why: string };
  /** Why no server would be tried (503 no_server). */
  noServer?: string;
}

/** Explains `req` against `pools` as they are now. */
export function explain(pools: Pools, req: ExplainRequest): Explanation {
  const out: Explanation = {
    request: { method: req.method, host: req.host, target: req.target },
  };
  const m = pools.router.match(req.method, req.host, req.target, req.headers);
  if (!m) return out;
  const { config, target: t } = m.route;
  const pool = t.pool;
  const now = Date.now();
  const servers = pool.servers.servers;
  out.route = { number: m.route.index + 1, name: config.name, match: config.match };
  out.pool = {
    name: pool.name,
    strategy: pool.balancer.strategy.name,
    available: servers.filter((s) => isAvailable(s, now)).length,
    servers: servers.length,
  };
  out.path = m.path;
  out.requestHeaders = config.headers.request;
  out.responseHeaders = config.headers.response;
  if (config.rateLimit) {
    const { rate, per, burst, key, shared } = config.rateLimit;
    const bucketKey = key === "ip"
      ? req.clientIp
      : key === "route"
      ? "(one bucket for the route)"
      : req.headers.get(key.slice(7)) ?? "";
    out.rateLimit = { rate, perMs: per, burst, key, bucketKey, shared };
  }
  let why = `picked by ${pool.balancer.strategy.name}`;
  if (pool.sticky) {
    const { server, token } = pool.sticky.serverFor(req.headers.get("cookie"));
    out.sticky = { cookie: pool.sticky.cookie, sent: token !== "", valid: server !== undefined };
    if (server) out.sticky.server = server.id;
    if (server && isAvailable(server, now)) {
      out.server = {
        id: server.id,
        url: server.url,
        state: stateOf(server, now),
        why: "sticky cookie",
      };
      return out;
    }
    if (server) why += ` (the cookie's server ${server.id} is ${stateOf(server, now)})`;
  }
  const key = pool.balancer.options.hash?.key ?? pool.settings.hash.key;
  const ctx = {
    now,
    random: Math.random,
    key: () => requestKey(req.headers, key, req.clientIp, req.target),
  };
  const s = pickIn(pool, ctx);
  if (s) out.server = { id: s.id, url: s.url, state: stateOf(s, now), why };
  else out.noServer = servers.length ? "no server is available" : "the pool has no servers";
  return out;
}

/** What `lb route` and `POST /api/explain` are given: a URL (or a path) and headers. */
export interface ExplainInput {
  method: string;
  /** `https://host/path?query`, or `/path?query` (then the Host comes from `headers`). */
  url: string;
  headers?: Record<string, string> | [string, string][];
  client?: string;
}

/** The request an input stands for; throws a user-facing Error for a URL lb cannot route. */
export function explainRequestOf(input: ExplainInput): ExplainRequest {
  const headers = new Headers(input.headers ?? []);
  let target = input.url;
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(target);
  if (scheme) {
    const rest = target.slice(scheme[0].length);
    const slash = rest.search(/[/?]/);
    const authority = slash === -1 ? rest : rest.slice(0, slash);
    target = slash === -1 ? "/" : rest.slice(slash);
    if (target.startsWith("?")) target = `/${target}`;
    if (!authority || /[\s@]/.test(authority)) throw new Error(`"${input.url}" has no host`);
    if (!headers.has("host")) headers.set("host", authority);
  }
  if (!target.startsWith("/")) {
    throw new Error(`"${input.url}" must be a URL like http://host/path, or a path like /path`);
  }
  return {
    method: input.method.toUpperCase(),
    host: headers.get("host"),
    target: target.replace(/#.*$/, ""),
    headers,
    clientIp: input.client ?? "127.0.0.1",
  };
}
