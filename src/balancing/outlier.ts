/**
 * Passive health (outlier detection, after Envoy): consecutive failures on real traffic
 * eject a server for baseEjection × times ejected (capped), never more than
 * maxEjectionPercent of the servers at once.
 */
import type { Config } from "../config/schema.ts";
import type { ServerPool } from "./pool.ts";
import type { Server } from "./server.ts";

/** Called by the proxy path after a failed try; ejects `s` when it has failed often enough. */
export function maybeEject(
  pool: ServerPool,
  s: Server,
  cfg: Config["outlier"],
  now: number,
): boolean {
  if (!cfg.enabled || s.consecutiveFailures < cfg.consecutive || s.ejectedUntil > now) return false;
  const servers = pool.servers;
  let ejected = 0;
  for (const x of servers) if (x.ejectedUntil > now) ejected++;
  // Like Envoy, one server may always be ejected, whatever the percentage.
  if (ejected > 0 && ((ejected + 1) * 100) / servers.length > cfg.maxEjectionPercent) return false;
  const ms = Math.min(cfg.baseEjection * (s.ejections + 1), cfg.maxEjection);
  pool.eject(
    s,
    now + ms,
    `${s.consecutiveFailures} consecutive failures; ejected for ${Math.round(ms / 1000)}s`,
    now,
  );
  return true;
}
