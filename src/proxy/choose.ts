/**
 * The choose stage: the server the strategy picks for this try, from the servers this
 * request has not tried; in panic mode (every server unavailable, none merely full) from
 * all servers in service.
 */
import { panicAllowed } from "../balancing/availability.ts";
import type { Server } from "../balancing/server.ts";
import type { ProxyContext } from "./context.ts";
import type { Flight } from "./flight.ts";

export function choose(px: ProxyContext, f: Flight): Server | undefined {
  f.now = Date.now();
  f.exclude = f.tried;
  f.panic = false;
  const server = px.balancer.pick(f);
  if (server || !px.config.panicMode || !panicAllowed(px.pool.servers, f.now)) return server;
  f.panic = true;
  return px.balancer.pick(f);
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
  if (kind === "cookie") return cookie(req.headers.get("cookie"), name);
  if (kind === "query") {
    const q = path.indexOf("?");
    return q === -1 ? "" : new URLSearchParams(path.slice(q + 1)).get(name) ?? "";
  }
  return clientIp;
}

/** The value of cookie `name` in a Cookie header, or "". */
function cookie(header: string | null, name: string): string {
  for (const part of (header ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return "";
}
