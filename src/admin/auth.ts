/**
 * Who may use the admin listener: the bearer token, compared in constant time, and the
 * rule that a listener reachable from other machines must have one.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { Config } from "../config/schema.ts";

/** The admin token: `admin.token` from the config, else the `LB_ADMIN_TOKEN` environment variable. */
export function resolveAdminToken(config: Config): string | undefined {
  if (config.admin.token) return config.admin.token;
  try {
    const env = Deno.env.get("LB_ADMIN_TOKEN");
    return env ? env : undefined;
  } catch {
    return undefined; // no --allow-env: no token from the environment
  }
}

/** Whether `host` (a listen address) only accepts connections from this machine. */
export function isLoopback(host: string): boolean {
  const h = host.startsWith("[") ? host.slice(1, -1) : host;
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) ||
    /^::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/i.test(h);
}

/**
 * Throws a user-facing Error when the admin listener would be reachable from other
 * machines without a token: anyone who can connect could then add, drain or remove servers.
 */
export function assertAdminSafe(config: Config, token: string | undefined): void {
  if (token !== undefined && token.length < 16) {
    throw new Error(
      "refusing to start: LB_ADMIN_TOKEN must be at least 16 characters (like admin.token)",
    );
  }
  if (!config.admin.enabled || token || isLoopback(config.admin.host)) return;
  throw new Error(
    `refusing to start: the admin listener on ${config.admin.host}:${config.admin.port} is ` +
      `reachable from other machines and has no token; set admin.token (or LB_ADMIN_TOKEN), ` +
      `or bind admin.host to 127.0.0.1`,
  );
}

const digest = (s: string) => createHash("sha256").update(s).digest();

/**
 * Checks a presented token against the expected one in constant time. Both sides are
 * hashed first, so the comparison takes the same time whatever the lengths.
 */
export function tokenMatches(presented: string | undefined, expected: string): boolean {
  if (presented === undefined) return false;
  return timingSafeEqual(digest(presented), digest(expected));
}

/** The token from an `Authorization: Bearer <token>` header (scheme case-insensitive, RFC 9110 §11.1). */
export function bearerToken(header: string | undefined | null): string | undefined {
  if (!header) return undefined;
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return m ? m[1] : undefined;
}

/**
 * Without a token, only Host names that point at this machine are accepted: a web page on
 * another site cannot reach a loopback admin listener through DNS rebinding, because its
 * requests carry the attacker's host name.
 */
export function isLocalHostHeader(host: string | undefined | null): boolean {
  if (!host) return false;
  const name = host.startsWith("[") ? host.slice(1, host.indexOf("]")) : host.replace(/:\d+$/, "");
  return isLoopback(name.toLowerCase()) || name.toLowerCase() === "localhost";
}
