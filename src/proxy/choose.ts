/**
 * The choose stage: the server of the request's pool for this try. The first try of a
 * request with a valid sticky cookie goes to the server it names while that one is
 * available; otherwise the strategy picks from the servers this request has not tried, and
 * in panic mode (every server unavailable, none merely full) from all servers in service.
 */
import { isAvailable, panicAllowed } from "../balancing/availability.ts";
import type { Server } from "../balancing/server.ts";
import type { PickContext } from "../balancing/strategies/types.ts";
import type { PoolRuntime } from "../routing/pool_runtime.ts";
import { cookieValue } from "../routing/sticky.ts";
import type { Flight } from "./flight.ts";

export function choose(f: Flight): Server | undefined {
  const { pool } = f;
  f.now = Date.now();
  if (pool.sticky !== undefined && f.tried === undefined && f.req !== undefined) {
    const { server, token } = pool.sticky.serverFor(f.req.headers.get("cookie"));
    f.stickyToken = token;
    if (server !== undefined && isAvailable(server, f.now)) return server;
  }
  f.exclude = f.tried;
  return pickIn(pool, f);
}

/** The strategy's pick in `pool`, falling back to panic mode when the pool allows it. */
export function pickIn(pool: PoolRuntime, ctx: PickContext): Server | undefined {
  ctx.panic = false;
  const server = pool.balancer.pick(ctx);
  if (server || !pool.settings.panicMode || !panicAllowed(pool.servers.servers, ctx.now)) {
    return server;
  }
  ctx.panic = true;
  return pool.balancer.pick(ctx);
}

/** The hash key of a request for consistent-hash and maglev (`hash.key`). */
export function requestKey(
  headers: Headers,
  key: string,
  clientIp: string,
  path: string,
): string {
  if (key === "ip") return clientIp;
  if (key === "path") {
    const q = path.indexOf("?");
    return q === -1 ? path : path.slice(0, q);
  }
  const colon = key.indexOf(":");
  const kind = key.slice(0, colon);
  const name = key.slice(colon + 1);
  if (kind === "header") return headers.get(name) ?? "";
  if (kind === "cookie") return cookieValue(headers.get("cookie"), name);
  if (kind === "query") {
    const q = path.indexOf("?");
    return q === -1 ? "" : new URLSearchParams(path.slice(q + 1)).get(name) ?? "";
  }
  return clientIp;
}
