/**
 * The admin app, served on its own listener (never the traffic port):
 *
 * | path | what | token (when one is set) |
 * | --- | --- | --- |
 * | `GET /healthz` | the balancer itself | no |
 * | `GET /` | the dashboard page (it asks for the token and keeps it in sessionStorage) | no |
 * | `/api/…` | the JSON API (api.ts) | `Authorization: Bearer` |
 * | `GET /metrics` | Prometheus text | `Authorization: Bearer` |
 * | `GET /events` | Server-Sent Events | `Authorization: Bearer`, or `?access_token=` (RFC 6750 §2.3), because a browser's EventSource cannot send headers |
 *
 * Without a token the listener is loopback-only (lb refuses to start otherwise), and every
 * route but /healthz also requires a local Host name, so a web page cannot reach the API
 * through DNS rebinding. Changes need POST/PATCH/PUT/DELETE with a JSON body type, and a
 * cross-site Origin is refused, so a page cannot forge them either.
 */
import { type Context, Hono } from "hono";
import type { Balancer } from "../balancing/balancer.ts";
import type { Config } from "../config/config.ts";
import type { Logger } from "../log.ts";
import { createApi, errorJson } from "./api.ts";
import { bearerToken, isLocalHostHeader, tokenMatches } from "./auth.ts";
import type { Control } from "../control/control.ts";
import { DASHBOARD_CSP, DASHBOARD_HTML } from "./dashboard.ts";
import { EventHub } from "./events.ts";
import type { LbMetrics } from "./metrics.ts";

export interface AdminDeps {
  config: Config;
  balancer: Balancer;
  logger: Logger;
  version: string;
  startedAt: number;
  control: Control;
  metrics: LbMetrics;
  /** Bearer token for /api, /metrics and /events; undefined: none (loopback only). */
  token?: string;
  /** Snapshot period of /events (ms). Default 1000. */
  eventsIntervalMs?: number;
}

export interface AdminApp {
  readonly app: Hono;
  readonly events: EventHub;
  fetch(req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Response | Promise<Response>;
  /** Ends /events streams and stops the sampling timer (before the listener shuts down). */
  close(): void;
}

type ConnInfo = { remoteAddr?: Deno.NetAddr } | undefined;

/** The client's address, for "who" in admin event lines. */
function clientOf(c: Context): string {
  return (c.env as ConnInfo)?.remoteAddr?.hostname ?? "unknown";
}

const MUTATING = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export function createAdminApp(deps: AdminDeps): AdminApp {
  const { token, control } = deps;
  const events = new EventHub({
    control,
    version: deps.version,
    startedAt: deps.startedAt,
    intervalMs: deps.eventsIntervalMs,
  });
  const app = new Hono();

  app.use("*", async (c, next) => {
    await next();
    c.header("x-content-type-options", "nosniff");
    c.header("referrer-policy", "no-referrer");
    if (!c.res.headers.has("cache-control")) c.header("cache-control", "no-store");
  });

  app.get("/healthz", (c) =>
    c.json({
      status: "ok",
      version: deps.version,
      uptimeSeconds: Math.round((Date.now() - deps.startedAt) / 1000),
      strategy: deps.balancer.strategy.name,
      servers: deps.balancer.pool.servers.length,
    }));

  app.use("*", async (c, next) => {
    if (!token && !isLocalHostHeader(c.req.header("host"))) {
      return errorJson(
        c,
        403,
        "forbidden",
        "without an admin token, the admin listener only answers requests for localhost or 127.0.0.1",
      );
    }
    const origin = c.req.header("origin");
    if (MUTATING.has(c.req.method) && origin !== undefined) {
      let same = false;
      try {
        same = new URL(origin).host === c.req.header("host");
      } catch {
        same = false;
      }
      if (!same) {
        return errorJson(c, 403, "forbidden", "cross-site admin requests are refused");
      }
    }
    return await next();
  });

  const needsToken = (queryToken: boolean) => async (c: Context, next: () => Promise<void>) => {
    if (!token) return await next();
    const presented = bearerToken(c.req.header("authorization")) ??
      (queryToken ? c.req.query("access_token") : undefined);
    if (!tokenMatches(presented, token)) {
      return errorJson(
        c,
        401,
        "unauthorized",
        presented === undefined
          ? "this admin route needs the header Authorization: Bearer <token>"
          : "wrong admin token",
        undefined,
        { "www-authenticate": 'Bearer realm="lb admin"' },
      );
    }
    return await next();
  };
  app.use("/api/*", needsToken(false));
  app.use("/api", needsToken(false));
  app.use("/metrics", needsToken(false));
  app.use("/events", needsToken(true));

  app.get("/", (c) => {
    c.header("content-security-policy", DASHBOARD_CSP);
    c.header("cache-control", "no-cache");
    return c.html(DASHBOARD_HTML);
  });
  app.get("/metrics", async (c) => {
    const text = await deps.metrics.text();
    return c.body(text, 200, { "content-type": deps.metrics.contentType });
  });
  app.get("/events", () => events.response());
  app.route(
    "/api",
    createApi({
      control,
      initiallyHealthy: (cfg) => cfg.health.assumeHealthy || !cfg.health.enabled,
      who: clientOf,
    }),
  );

  app.notFound((c) => errorJson(c, 404, "not_found", "no such admin route"));
  app.onError((err, c) => {
    deps.logger.error(`admin: ${err instanceof Error ? err.message : String(err)}`);
    return errorJson(c, 500, "internal", "the admin API failed");
  });
  return {
    app,
    events,
    fetch: (req, info) => app.fetch(req, info),
    close: () => events.close(),
  };
}
