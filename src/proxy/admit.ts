/**
 * The admit stage: who the client is (the socket peer, or behind trusted proxies the
 * nearest untrusted X-Forwarded-For hop), the request id, the headers to send upstream,
 * the hostile-input guard, the route (route.ts: pool, rate limit, rewrites) and the
 * concurrency caps. A refused request is answered here and never reaches a backend.
 */
import type { ProxyContext } from "./context.ts";
import { fail } from "./fail.ts";
import { Failure } from "./failures.ts";
import { Flight } from "./flight.ts";
import { upstreamRequestHeaders } from "./headers.ts";
import { BodySource } from "./request_body.ts";
import { route } from "./route.ts";

/** Deno.serve's handler info (the client's address). */
export type ConnInfo = { remoteAddr: Deno.NetAddr };

const REQUEST_ID = /^[A-Za-z0-9._:@\/+=-]{1,128}$/;

/**
 * A Flight for a request lb will forward, or lb's answer to one it refuses; later only when
 * its route's rate limit is shared (it asks Redis).
 */
export function admit(
  px: ProxyContext,
  req: Request,
  info: ConnInfo,
): Flight | Response | Promise<Flight | Response> {
  // A getter that builds a new object on every read in Deno.serve: read once.
  const addr = info.remoteAddr;
  const peer = addr.hostname;
  const trusted = px.isTrusted(peer);
  const clientIp = trusted ? nearestUntrusted(req, peer, px.isTrusted) : peer;
  const sent = req.headers.get("x-request-id");
  const requestId = sent !== null && REQUEST_ID.test(sent) ? sent : crypto.randomUUID();
  const fwd = {
    peer,
    trusted,
    requestId,
    proto: px.secure ? "https" : "http",
    underscores: px.config.underscoreHeaders,
    underscored: 0,
  };
  const headers = upstreamRequestHeaders(req.headers, fwd);
  const f = new Flight(px, req, clientIp, requestId, targetOf(req.url), headers);
  if (fwd.underscored > 0) f.rec.droppedHeaders = fwd.underscored;
  const refused = underscoreRefusal(px, fwd.underscored) ?? px.guard(req, addr, headers);
  if (refused) return fail(px, f, refused);
  const routed = route(px, f, req);
  // Only a shared rate limit (Redis) makes routing wait.
  if (routed instanceof Promise) return routed.then((r) => enter(px, f, req, r));
  return enter(px, f, req, routed);
}

/** After the route stage: the concurrency caps, then the request is counted in. */
function enter(
  px: ProxyContext,
  f: Flight,
  req: Request,
  refused: Failure | undefined,
): Flight | Response {
  refused ??= px.limiter.enter(f.clientIp);
  if (refused) return fail(px, f, refused);
  f.count();
  if (req.body && f.method !== "GET" && f.method !== "HEAD") {
    const declared = f.headers["content-length"];
    const length = declared === undefined ? -1 : Number(declared);
    const keep = f.pool.settings.retry.bufferLimit;
    f.body = new BodySource(req.body, keep, px.config.limits.maxBodyBytes, length);
  }
  return f;
}

/** The path and query exactly as the client sent them (absolute-form targets lose their authority). */
export function targetOf(url: string): string {
  const i = url.indexOf("/", url.indexOf("//") + 2);
  return i === -1 ? "/" : url.slice(i);
}

/** Behind trusted proxies: the nearest address in X-Forwarded-For that is not itself one. */
function nearestUntrusted(req: Request, peer: string, isTrusted: (ip: string) => boolean): string {
  const xff = req.headers.get("x-forwarded-for");
  let client = peer;
  if (!xff) return client;
  const hops = xff.split(",");
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i].trim();
    if (hop) client = hop;
    if (!isTrusted(hop)) break;
  }
  return client;
}

/** With `underscoreHeaders: reject`, a header name with `_` refuses the request. */
function underscoreRefusal(px: ProxyContext, underscored: number): Failure | undefined {
  if (underscored === 0 || px.config.underscoreHeaders !== "reject") return undefined;
  return new Failure(
    "bad_request",
    "header names with underscores are refused (underscoreHeaders: reject)",
  );
}
