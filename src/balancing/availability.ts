/**
 * Whether a server may take a request: the availability rules in one place, beside the
 * pool that owns the state they read. Strategies, the request path, metrics and the admin
 * API all ask here.
 */
import type { Server, ServerStateName } from "./server.ts";
import type { PickContext } from "./strategies/types.ts";

/** At its connection cap (`maxConnections`) while otherwise in service. */
export function isFull(s: Server): boolean {
  return s.maxConnections > 0 && s.inflight >= s.maxConnections && s.enabled && !s.draining;
}

/** Available: enabled, not draining, healthy, not ejected, not full. */
export function isAvailable(s: Server, now: number): boolean {
  return s.enabled && !s.draining && s.healthy && s.ejectedUntil <= now &&
    (s.maxConnections === 0 || s.inflight < s.maxConnections);
}

/**
 * Panic mode (Envoy's): when no server is available and none is merely full, a request may
 * go to any server in service, since a health verdict may be what is wrong. A full server
 * means the pool is busy, not broken: then lb answers 503 instead.
 */
export function panicAllowed(servers: readonly Server[], now: number): boolean {
  for (const s of servers) if (isAvailable(s, now) || isFull(s)) return false;
  return true;
}

/** Whether a strategy may pick `s` for this request: available (or panic), and not excluded. */
export function eligible(s: Server, ctx: PickContext): boolean {
  if (ctx.exclude !== undefined && ctx.exclude.has(s)) return false;
  return ctx.panic ? !s.removed && s.enabled && !s.draining : isAvailable(s, ctx.now);
}

/** Whether some available server is not in `tried` (asked only when about to retry). */
export function untriedServerLeft(
  servers: readonly Server[],
  tried: ReadonlySet<Server>,
  now: number,
): boolean {
  for (const s of servers) if (!tried.has(s) && isAvailable(s, now)) return true;
  return false;
}

/** The state name the admin API and metrics report. */
export function stateOf(s: Server, now: number): ServerStateName {
  if (!s.enabled) return "disabled";
  if (s.draining) return "draining";
  if (s.ejectedUntil > now) return "ejected";
  return s.healthy ? "healthy" : "unhealthy";
}
